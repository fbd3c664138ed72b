//! Helpers shared by the unit tests of the solvers.

use super::matrix::Matrix;

/// Whether `a` and `b` differ by at most `tolerance`.
pub(crate) fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance
}

/// Fisher's iris data (150 rows, 4 features, classes 0..3) with every feature standardised to mean 0 and
/// population standard deviation 1, as scikit-learn's `StandardScaler` does.
pub(crate) fn iris_standardised() -> (Matrix, Vec<usize>) {
    let text = include_str!("testdata/iris.csv");
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for line in text.lines().filter(|line| !line.starts_with('#') && !line.trim().is_empty()) {
        let fields: Vec<&str> = line.trim().split(',').collect();
        rows.push(fields[..4].iter().map(|field| field.parse::<f64>().expect("iris.csv holds numbers")).collect::<Vec<f64>>());
        labels.push(fields[4].parse::<usize>().expect("iris.csv holds class numbers"));
    }
    let mut x = Matrix::from_rows(&rows);
    standardise(&mut x);
    (x, labels)
}

/// Centres every column of `x` and scales it to population standard deviation 1.
pub(crate) fn standardise(x: &mut Matrix) {
    let n_rows = x.rows as f64;
    for j in 0..x.cols {
        let mean = (0..x.rows).map(|i| x.get(i, j)).sum::<f64>() / n_rows;
        let variance = (0..x.rows).map(|i| (x.get(i, j) - mean).powi(2)).sum::<f64>() / n_rows;
        let scale = if variance > 0.0 { variance.sqrt() } else { 1.0 };
        for i in 0..x.rows {
            let value = x.get(i, j);
            x.set(i, j, (value - mean) / scale);
        }
    }
}
