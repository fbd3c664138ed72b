//! The linear model shared by several trainers, and ridge regression solved exactly.

use super::check_non_negative;
use super::matrix::{Matrix, solve_spd};

/// y = x · weights + bias. weights is d×m (m outputs), bias has m entries.
#[derive(Clone, Debug)]
pub struct Linear {
    /// `d × m`: row j holds feature j's weight for each of the m outputs.
    pub weights: Matrix,
    /// One intercept per output.
    pub bias: Vec<f64>,
}

impl Linear {
    /// The `n × m` outputs `x · weights + bias` for an `n × d` input.
    ///
    /// # Panics
    /// When `x.cols != weights.rows` or `bias.len() != weights.cols`; check with [`Linear::check_input`]
    /// first when `x` is untrusted.
    pub fn predict(&self, x: &Matrix) -> Matrix {
        assert_eq!(self.bias.len(), self.weights.cols, "Linear: {} biases for {} outputs", self.bias.len(), self.weights.cols);
        let mut outputs = x.matmul(&self.weights);
        for i in 0..outputs.rows {
            for (value, bias) in outputs.row_mut(i).iter_mut().zip(&self.bias) {
                *value += bias;
            }
        }
        outputs
    }

    /// Number of input features `d`.
    pub fn n_inputs(&self) -> usize {
        self.weights.rows
    }

    /// Number of outputs `m`.
    pub fn n_outputs(&self) -> usize {
        self.weights.cols
    }

    /// Checks that `x` is a valid matrix with one column per input feature.
    pub fn check_input(&self, x: &Matrix) -> Result<(), String> {
        x.validate("x")?;
        if x.cols != self.weights.rows {
            return Err(format!("x has {} columns but the model takes {} features", x.cols, self.weights.rows));
        }
        Ok(())
    }
}

/// Ridge regression: minimises `||y - X w - b||² + l2 ||w||²` with the intercept `b` not penalised,
/// exactly scikit-learn's `Ridge(alpha = l2)`.
///
/// X and y are centred, `(Xcᵀ Xc + l2 I) w = Xcᵀ yc` is solved by Cholesky and `b = ȳ - x̄ · w`. The
/// Gram matrix is built in one pass over the rows after one pass for the means (no transpose is
/// materialised), so a million rows of ten features take well under a second. With `l2 = 0` nothing is
/// added: X must have full column rank, and collinear or constant columns give an error naming the column.
/// Returns a [`Linear`] with one output.
pub fn ridge(x: &Matrix, y: &[f64], l2: f64) -> Result<Linear, String> {
    x.validate("x")?;
    check_non_negative("l2", l2)?;
    if x.rows == 0 {
        return Err("x has no rows; ridge needs at least one sample".to_string());
    }
    if y.len() != x.rows {
        return Err(format!("y has {} values but x has {} rows", y.len(), x.rows));
    }
    if let Some(position) = y.iter().position(|value| !value.is_finite()) {
        return Err(format!("y[{position}] is {}; every target must be finite", y[position]));
    }
    let (n_rows, n_features) = (x.rows, x.cols);
    let mut feature_means = vec![0.0; n_features];
    for i in 0..n_rows {
        for (mean, value) in feature_means.iter_mut().zip(x.row(i)) {
            *mean += value;
        }
    }
    for mean in &mut feature_means {
        *mean /= n_rows as f64;
    }
    let target_mean = y.iter().sum::<f64>() / n_rows as f64;

    // Upper triangle of Xcᵀ Xc and Xcᵀ yc, accumulated row by row from the centred row.
    let mut gram = Matrix::zeros(n_features, n_features);
    let mut cross = Matrix::zeros(n_features, 1);
    let mut centred = vec![0.0; n_features];
    for (i, target) in y.iter().enumerate() {
        for ((centred_value, value), mean) in centred.iter_mut().zip(x.row(i)).zip(&feature_means) {
            *centred_value = value - mean;
        }
        let centred_target = target - target_mean;
        for a in 0..n_features {
            let centred_a = centred[a];
            cross.data[a] += centred_a * centred_target;
            let gram_row = &mut gram.data[a * n_features..(a + 1) * n_features];
            for (gram_value, centred_b) in gram_row[a..].iter_mut().zip(&centred[a..]) {
                *gram_value += centred_a * centred_b;
            }
        }
    }
    for a in 0..n_features {
        gram.data[a * n_features + a] += l2;
        for b in 0..a {
            gram.data[a * n_features + b] = gram.data[b * n_features + a];
        }
    }
    let weights = solve_spd(&gram, &cross).map_err(|error| {
        format!(
            "ridge with l2 = {l2} cannot be solved: {error} (column = feature index); \
             with l2 = 0 the features must not be collinear or constant, use l2 > 0 or drop the feature"
        )
    })?;
    let bias = target_mean - feature_means.iter().zip(&weights.data).map(|(mean, weight)| mean * weight).sum::<f64>();
    Ok(Linear { weights, bias: vec![bias] })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn ordinary_least_squares_recovers_exact_linear_data() {
        // y = 3 + 2 x0 - x1 exactly.
        let rows = vec![vec![0.0, 1.0], vec![1.0, 0.0], vec![2.0, 5.0], vec![3.0, 2.0], vec![4.0, 4.0], vec![-1.0, 3.0]];
        let y: Vec<f64> = rows.iter().map(|row| 3.0 + 2.0 * row[0] - row[1]).collect();
        let model = ridge(&Matrix::from_rows(&rows), &y, 0.0).unwrap();
        assert!(close(model.weights.get(0, 0), 2.0, 1e-10), "{model:?}");
        assert!(close(model.weights.get(1, 0), -1.0, 1e-10), "{model:?}");
        assert!(close(model.bias[0], 3.0, 1e-10), "{model:?}");
        let predictions = model.predict(&Matrix::from_rows(&[vec![10.0, 1.0]]));
        assert!(close(predictions.get(0, 0), 22.0, 1e-9));
    }

    #[test]
    fn one_feature_ridge_matches_the_closed_form() {
        // x = 1..4, y = 2x: Sxx = 5, Sxy = 10 (centred), so w = 10 / (5 + 1) = 5/3 and b = 5 - 2.5 · 5/3 = 5/6.
        let x = Matrix::from_rows(&[vec![1.0], vec![2.0], vec![3.0], vec![4.0]]);
        let model = ridge(&x, &[2.0, 4.0, 6.0, 8.0], 1.0).unwrap();
        assert!(close(model.weights.get(0, 0), 5.0 / 3.0, 1e-12));
        assert!(close(model.bias[0], 5.0 / 6.0, 1e-12));
    }

    #[test]
    fn two_feature_ridge_matches_scikit_learn() {
        // sklearn.linear_model.Ridge(alpha=1.0).fit(X, y) gives
        // coef_ = [1.19895969, -0.37061118], intercept_ = 0.811443433029909.
        let x = Matrix::from_rows(&[vec![1.0, 2.0], vec![2.0, 1.0], vec![3.0, 5.0], vec![4.0, 3.0], vec![5.0, 8.0]]);
        let model = ridge(&x, &[1.0, 3.0, 2.0, 5.0, 4.0], 1.0).unwrap();
        assert!(close(model.weights.get(0, 0), 1.19895969, 1e-7), "{model:?}");
        assert!(close(model.weights.get(1, 0), -0.37061118, 1e-7), "{model:?}");
        assert!(close(model.bias[0], 0.811443433029909, 1e-9), "{model:?}");
    }

    #[test]
    fn collinear_columns_are_an_error_without_l2_and_fine_with_it() {
        // Column 1 is exactly twice column 0.
        let x = Matrix::from_rows(&[vec![1.0, 2.0], vec![2.0, 4.0], vec![3.0, 6.0], vec![5.0, 10.0]]);
        let y = [1.0, 2.0, 3.0, 4.0];
        let error = ridge(&x, &y, 0.0).unwrap_err();
        assert!(error.contains("collinear") && error.contains("column 1"), "{error}");
        assert!(ridge(&x, &y, 0.1).is_ok());
        // A constant column is singular too once centred.
        let constant = Matrix::from_rows(&[vec![1.0, 7.0], vec![2.0, 7.0], vec![3.0, 7.0]]);
        assert!(ridge(&constant, &[1.0, 2.0, 3.0], 0.0).is_err());
    }

    #[test]
    fn bad_input_is_named() {
        let x = Matrix::from_rows(&[vec![1.0], vec![2.0]]);
        assert!(ridge(&x, &[1.0], 0.0).unwrap_err().contains("y has 1 values"));
        assert!(ridge(&x, &[1.0, 2.0], -1.0).unwrap_err().contains("l2"));
        assert!(ridge(&x, &[1.0, f64::NAN], 0.0).unwrap_err().contains("y[1]"));
        assert!(ridge(&Matrix::zeros(0, 1), &[], 0.0).unwrap_err().contains("no rows"));
        let model = ridge(&x, &[1.0, 3.0], 0.0).unwrap();
        assert!(model.check_input(&Matrix::zeros(1, 2)).unwrap_err().contains("2 columns"));
    }

    #[test]
    fn no_features_predicts_the_mean() {
        let model = ridge(&Matrix::zeros(3, 0), &[1.0, 2.0, 6.0], 0.0).unwrap();
        assert_eq!(model.weights.rows, 0);
        assert!(close(model.bias[0], 3.0, 1e-12));
    }

    #[test]
    fn a_hundred_thousand_rows_solve_quickly_and_exactly() {
        // y = 1 + Σ (j + 1) x_j with pseudo-random x; the exact answer must come back.
        let n_rows = 100_000;
        let n_features = 10;
        let mut rng = super::super::rng::Rng::new(5);
        let mut x = Matrix::zeros(n_rows, n_features);
        let mut y = vec![0.0; n_rows];
        for i in 0..n_rows {
            let mut target = 1.0;
            for j in 0..n_features {
                let value = rng.normal();
                x.set(i, j, value);
                target += (j + 1) as f64 * value;
            }
            y[i] = target;
        }
        let model = ridge(&x, &y, 0.0).unwrap();
        for j in 0..n_features {
            assert!(close(model.weights.get(j, 0), (j + 1) as f64, 1e-8), "{model:?}");
        }
        assert!(close(model.bias[0], 1.0, 1e-8));
    }
}
