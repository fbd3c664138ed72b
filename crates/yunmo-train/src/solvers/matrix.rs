//! A dense row-major `f64` matrix with the few operations the trainers need, and a Cholesky solver for
//! symmetric positive definite systems.
//!
//! Non-goals: no views, no strides, no SIMD, no BLAS. The products use the cache-friendly i-k-j loop, which
//! is fast enough for the small and tall-thin matrices the trainers see.

/// Dense row-major f64 matrix.
///
/// Invariant (checked by [`Matrix::validate`], assumed by the other methods): `data.len() == rows * cols`,
/// and element `(i, j)` is `data[i * cols + j]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// The elements, row after row.
    pub data: Vec<f64>,
}

impl Matrix {
    /// A `rows × cols` matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Matrix {
        Matrix { rows, cols, data: vec![0.0; rows * cols] }
    }

    /// A matrix whose rows are `rows` (an empty slice gives a 0×0 matrix).
    ///
    /// # Panics
    /// When the rows do not all have the same length; use [`Matrix::try_from_rows`] for untrusted input.
    pub fn from_rows(rows: &[Vec<f64>]) -> Matrix {
        match Matrix::try_from_rows(rows) {
            Ok(matrix) => matrix,
            Err(message) => panic!("Matrix::from_rows: {message}"),
        }
    }

    /// Like [`Matrix::from_rows`], with an error naming the first row whose length differs from row 0's.
    pub fn try_from_rows(rows: &[Vec<f64>]) -> Result<Matrix, String> {
        let n_cols = rows.first().map_or(0, Vec::len);
        let mut data = Vec::with_capacity(rows.len() * n_cols);
        for (row_idx, row) in rows.iter().enumerate() {
            if row.len() != n_cols {
                return Err(format!("row {row_idx} has {} values but row 0 has {n_cols}", row.len()));
            }
            data.extend_from_slice(row);
        }
        Ok(Matrix { rows: rows.len(), cols: n_cols, data })
    }

    /// Row `i` as a slice of `cols` values.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Row `i` as a mutable slice of `cols` values.
    pub fn row_mut(&mut self, i: usize) -> &mut [f64] {
        let cols = self.cols;
        &mut self.data[i * cols..(i + 1) * cols]
    }

    /// Element `(i, j)`.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.cols + j]
    }

    /// Sets element `(i, j)` to `v`.
    pub fn set(&mut self, i: usize, j: usize, v: f64) {
        self.data[i * self.cols + j] = v;
    }

    /// A new matrix made of the rows `idx` (in that order, repeats allowed).
    pub fn select_rows(&self, idx: &[usize]) -> Matrix {
        let mut data = Vec::with_capacity(idx.len() * self.cols);
        for &row_idx in idx {
            data.extend_from_slice(self.row(row_idx));
        }
        Matrix { rows: idx.len(), cols: self.cols, data }
    }

    /// The product `self · other`, by the cache-friendly i-k-j loop.
    ///
    /// # Panics
    /// When `self.cols != other.rows`.
    pub fn matmul(&self, other: &Matrix) -> Matrix {
        assert_eq!(self.cols, other.rows, "matmul: {}×{} times {}×{}", self.rows, self.cols, other.rows, other.cols);
        let out_cols = other.cols;
        let mut out = Matrix::zeros(self.rows, out_cols);
        for i in 0..self.rows {
            let out_row = &mut out.data[i * out_cols..(i + 1) * out_cols];
            for (k, &a) in self.row(i).iter().enumerate() {
                let other_row = &other.data[k * out_cols..(k + 1) * out_cols];
                for (out_value, &b) in out_row.iter_mut().zip(other_row) {
                    *out_value += a * b;
                }
            }
        }
        out
    }

    /// The product `selfᵀ · other` without materialising the transpose: one pass over the rows of both.
    ///
    /// # Panics
    /// When `self.rows != other.rows`.
    pub fn transpose_matmul(&self, other: &Matrix) -> Matrix {
        assert_eq!(self.rows, other.rows, "transpose_matmul: ({}×{})ᵀ times {}×{}", self.rows, self.cols, other.rows, other.cols);
        let out_cols = other.cols;
        let mut out = Matrix::zeros(self.cols, out_cols);
        for i in 0..self.rows {
            let other_row = other.row(i);
            for (p, &a) in self.row(i).iter().enumerate() {
                let out_row = &mut out.data[p * out_cols..(p + 1) * out_cols];
                for (out_value, &b) in out_row.iter_mut().zip(other_row) {
                    *out_value += a * b;
                }
            }
        }
        out
    }

    /// The product `self · otherᵀ` without materialising the transpose (dot products of rows).
    ///
    /// # Panics
    /// When `self.cols != other.cols`.
    pub fn matmul_transpose(&self, other: &Matrix) -> Matrix {
        assert_eq!(self.cols, other.cols, "matmul_transpose: {}×{} times ({}×{})ᵀ", self.rows, self.cols, other.rows, other.cols);
        let mut out = Matrix::zeros(self.rows, other.rows);
        for i in 0..self.rows {
            let left_row = self.row(i);
            for j in 0..other.rows {
                out.data[i * other.rows + j] = dot(left_row, other.row(j));
            }
        }
        out
    }

    /// The transpose.
    pub fn transpose(&self) -> Matrix {
        let mut out = Matrix::zeros(self.cols, self.rows);
        for i in 0..self.rows {
            for (j, &value) in self.row(i).iter().enumerate() {
                out.data[j * self.rows + i] = value;
            }
        }
        out
    }

    /// Whether `data` holds exactly `rows * cols` values (the invariant every other method assumes).
    pub fn has_valid_shape(&self) -> bool {
        self.rows.checked_mul(self.cols) == Some(self.data.len())
    }

    /// Checks the shape invariant and that every element is finite; the error names `name` and the first
    /// offending element, e.g. `x[3, 1] is NaN`.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        if !self.has_valid_shape() {
            return Err(format!("{name} is declared {}×{} but holds {} values", self.rows, self.cols, self.data.len()));
        }
        if let Some(position) = self.data.iter().position(|value| !value.is_finite()) {
            let (i, j) = (position / self.cols.max(1), position % self.cols.max(1));
            return Err(format!("{name}[{i}, {j}] is {}; every value must be finite", self.data[position]));
        }
        Ok(())
    }
}

/// The dot product of two slices of equal length (extra elements of the longer one are ignored).
pub fn dot(left: &[f64], right: &[f64]) -> f64 {
    left.iter().zip(right).map(|(a, b)| a * b).sum()
}

/// A pivot below this fraction of its original diagonal element means the matrix is numerically singular
/// (the column is, to about 10 significant digits, a combination of the columns before it).
const RELATIVE_PIVOT_FLOOR: f64 = 1e-10;

/// Solves the symmetric positive definite system A x = b by Cholesky (A n×n, b n×m); Err(String) naming
/// the failure when A is not positive definite.
///
/// Only the lower triangle of `a` is read. A is rejected as not positive definite when a pivot is not
/// finite, is `<= 0`, or is below `1e-10` times its diagonal element (numerically singular: for a Gram
/// matrix this means collinear or constant columns). The error names the column, e.g.
/// `matrix is not positive definite: pivot of column 2 is 3.1e-15 (diagonal 4.0e0); the column is collinear with earlier ones or constant`.
pub fn solve_spd(a: &Matrix, b: &Matrix) -> Result<Matrix, String> {
    a.validate("a")?;
    b.validate("b")?;
    if a.rows != a.cols {
        return Err(format!("a must be square, got {}×{}", a.rows, a.cols));
    }
    if b.rows != a.rows {
        return Err(format!("b has {} rows but a is {}×{}", b.rows, a.rows, a.cols));
    }
    let n = a.rows;
    // The lower-triangular factor L with A = L·Lᵀ, row-major n×n (the upper triangle stays zero).
    let mut factor = vec![0.0; n * n];
    for j in 0..n {
        let diagonal = a.get(j, j);
        let pivot = diagonal - factor[j * n..j * n + j].iter().map(|value| value * value).sum::<f64>();
        if !pivot.is_finite() || pivot <= 0.0 || pivot <= RELATIVE_PIVOT_FLOOR * diagonal.abs() {
            return Err(format!(
                "matrix is not positive definite: pivot of column {j} is {pivot:.3e} (diagonal {diagonal:.3e}); \
                 the column is collinear with earlier ones or constant"
            ));
        }
        let pivot_root = pivot.sqrt();
        factor[j * n + j] = pivot_root;
        for i in j + 1..n {
            let (upper, lower) = factor.split_at_mut(i * n);
            let row_j = &upper[j * n..j * n + j];
            let row_i = &mut lower[..n];
            let value = a.get(i, j) - dot(&row_i[..j], row_j);
            row_i[j] = value / pivot_root;
        }
    }
    let n_rhs = b.cols;
    let mut solution = Matrix::zeros(n, n_rhs);
    let mut column = vec![0.0; n];
    for rhs in 0..n_rhs {
        // Forward substitution: L z = b.
        for i in 0..n {
            let row_i = &factor[i * n..i * n + i];
            column[i] = (b.get(i, rhs) - dot(row_i, &column[..i])) / factor[i * n + i];
        }
        // Back substitution: Lᵀ x = z, reading L by columns.
        for i in (0..n).rev() {
            let mut value = column[i];
            for k in i + 1..n {
                value -= factor[k * n + i] * column[k];
            }
            column[i] = value / factor[i * n + i];
        }
        for (i, value) in column.iter().enumerate() {
            solution.set(i, rhs, *value);
        }
    }
    Ok(solution)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn matmul_matches_a_hand_computed_product() {
        // [1 2; 3 4] · [5 6; 7 8] = [19 22; 43 50].
        let a = Matrix::from_rows(&[vec![1.0, 2.0], vec![3.0, 4.0]]);
        let b = Matrix::from_rows(&[vec![5.0, 6.0], vec![7.0, 8.0]]);
        assert_eq!(a.matmul(&b), Matrix::from_rows(&[vec![19.0, 22.0], vec![43.0, 50.0]]));
    }

    #[test]
    fn transposed_products_match_the_explicit_transpose() {
        let a = Matrix::from_rows(&[vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]]);
        let b = Matrix::from_rows(&[vec![1.0, -1.0], vec![2.0, 0.5]]);
        let c = Matrix::from_rows(&[vec![0.0, 1.0, 2.0], vec![3.0, -1.0, 1.0], vec![1.0, 1.0, 1.0]]);
        assert_eq!(a.transpose_matmul(&b), a.transpose().matmul(&b));
        assert_eq!(a.matmul_transpose(&c), a.matmul(&c.transpose()));
        // aᵀ is 3×2: [1 4; 2 5; 3 6].
        assert_eq!(a.transpose(), Matrix::from_rows(&[vec![1.0, 4.0], vec![2.0, 5.0], vec![3.0, 6.0]]));
    }

    #[test]
    fn accessors_and_row_selection() {
        let mut a = Matrix::from_rows(&[vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 6.0]]);
        assert_eq!(a.row(1), &[3.0, 4.0]);
        a.set(2, 0, 9.0);
        assert_eq!(a.get(2, 0), 9.0);
        let picked = a.select_rows(&[2, 0, 2]);
        assert_eq!(picked, Matrix::from_rows(&[vec![9.0, 6.0], vec![1.0, 2.0], vec![9.0, 6.0]]));
    }

    #[test]
    fn ragged_rows_and_bad_values_are_named() {
        let error = Matrix::try_from_rows(&[vec![1.0, 2.0], vec![3.0]]).unwrap_err();
        assert!(error.contains("row 1"), "{error}");
        let bad = Matrix { rows: 2, cols: 2, data: vec![1.0, 2.0, f64::NAN, 4.0] };
        let error = bad.validate("x").unwrap_err();
        assert!(error.contains("x[1, 0]"), "{error}");
        let short = Matrix { rows: 2, cols: 2, data: vec![1.0] };
        assert!(short.validate("x").unwrap_err().contains("2×2"));
    }

    #[test]
    fn cholesky_solves_a_known_system() {
        // A = [4 2 0; 2 5 1; 0 1 3], x = [1, -2, 3] gives b = A x = [0, -5, 7].
        let a = Matrix::from_rows(&[vec![4.0, 2.0, 0.0], vec![2.0, 5.0, 1.0], vec![0.0, 1.0, 3.0]]);
        let b = Matrix::from_rows(&[vec![0.0, 4.0], vec![-5.0, 2.0], vec![7.0, 0.0]]);
        let x = solve_spd(&a, &b).unwrap();
        assert!(close(x.get(0, 0), 1.0, 1e-12) && close(x.get(1, 0), -2.0, 1e-12) && close(x.get(2, 0), 3.0, 1e-12), "{x:?}");
        // Second right-hand side: check A x = b directly.
        let back = a.matmul(&x);
        for i in 0..3 {
            assert!(close(back.get(i, 1), b.get(i, 1), 1e-12));
        }
    }

    #[test]
    fn singular_and_indefinite_matrices_are_rejected_with_the_column() {
        // Column 1 is twice column 0: the Gram matrix [1 2; 2 4] is singular.
        let singular = Matrix::from_rows(&[vec![1.0, 2.0], vec![2.0, 4.0]]);
        let error = solve_spd(&singular, &Matrix::zeros(2, 1)).unwrap_err();
        assert!(error.contains("not positive definite") && error.contains("column 1"), "{error}");
        let indefinite = Matrix::from_rows(&[vec![1.0, 0.0], vec![0.0, -1.0]]);
        assert!(solve_spd(&indefinite, &Matrix::zeros(2, 1)).is_err());
        assert!(solve_spd(&Matrix::zeros(2, 3), &Matrix::zeros(2, 1)).unwrap_err().contains("square"));
        assert!(solve_spd(&Matrix::zeros(0, 0), &Matrix::zeros(0, 1)).is_ok());
    }
}
