//! Logistic regression, binary and multinomial, fitted by L-BFGS: scikit-learn's
//! `LogisticRegression(C = 1 / l2, solver = "lbfgs")`.
//!
//! The objective is `Σ_i logloss_i + 0.5 · l2 · ||W||²` (the bias is not penalised). L-BFGS minimises it
//! divided by the number of samples, as scikit-learn (1.2 and later) does, so `tolerance` bounds the
//! largest component of the gradient of the *mean* objective and means what scikit-learn's `tol` means.

use super::lbfgs::{LbfgsConfig, minimise};
use super::linear::Linear;
use super::matrix::Matrix;
use super::{Step, check_non_negative};

/// Regularisation and stopping rule for [`logistic`].
#[derive(Clone, Debug)]
pub struct LogisticConfig {
    /// L2 penalty on the weights (not the bias): scikit-learn's `1 / C`. 0 means no penalty (the weights
    /// then grow until `max_iter` on separable data).
    pub l2: f64,
    /// The most L-BFGS iterations (> 0).
    pub max_iter: u32,
    /// Stop once every component of the gradient of the mean objective is below this (>= 0).
    pub tolerance: f64,
}

impl Default for LogisticConfig {
    /// scikit-learn's defaults: `C = 1`, `max_iter = 100`, `tol = 1e-4`.
    fn default() -> Self {
        LogisticConfig { l2: 1.0, max_iter: 100, tolerance: 1e-4 }
    }
}

/// Binary (n_classes == 2): one output column, P(class 1) = sigmoid(x·w + b). Multinomial
/// (n_classes > 2): n_classes columns, softmax. Minimises sum_i logloss_i + 0.5·l2·||W||² (bias not
/// penalised): scikit-learn's LogisticRegression(C = 1/l2) with lbfgs.
///
/// `labels[i]` is the class of row i of `x` and must be `< n_classes`; at least two classes must occur
/// (a multinomial class that never occurs just gets a very negative bias). The [`Step`]s are L-BFGS
/// iterations and their loss is the mean objective (mean log-loss plus `0.5 · l2 · ||W||² / n`).
pub fn logistic(
    x: &Matrix,
    labels: &[usize],
    n_classes: usize,
    config: &LogisticConfig,
    progress: &mut dyn FnMut(Step),
) -> Result<Linear, String> {
    validate(x, labels, n_classes, config)?;
    let n_outputs = if n_classes == 2 { 1 } else { n_classes };
    let problem = Problem { x, labels, n_outputs, l2: config.l2 };
    let mut objective = |theta: &[f64], gradient: &mut [f64]| problem.objective(theta, gradient);
    let lbfgs_config = LbfgsConfig { max_iter: config.max_iter, tolerance: config.tolerance, history: 10 };
    let theta = minimise(&mut objective, vec![0.0; (x.cols + 1) * n_outputs], &lbfgs_config, progress);
    let (weights, bias) = theta.split_at(x.cols * n_outputs);
    Ok(Linear { weights: Matrix { rows: x.cols, cols: n_outputs, data: weights.to_vec() }, bias: bias.to_vec() })
}

/// The class probabilities, `n × n_classes` always: `[1 - p, p]` for a binary model (one output column),
/// the softmax of the outputs otherwise. Rows sum to 1.
///
/// # Panics
/// When `x` does not have one column per model input (see [`Linear::check_input`]).
pub fn probabilities(model: &Linear, x: &Matrix) -> Matrix {
    let outputs = model.predict(x);
    if outputs.cols == 1 {
        let mut binary = Matrix::zeros(outputs.rows, 2);
        for i in 0..outputs.rows {
            let positive = sigmoid(outputs.get(i, 0));
            binary.set(i, 0, 1.0 - positive);
            binary.set(i, 1, positive);
        }
        return binary;
    }
    let mut probabilities = outputs;
    for i in 0..probabilities.rows {
        softmax_in_place(probabilities.row_mut(i));
    }
    probabilities
}

/// The most probable class of each row (the lowest index on ties).
///
/// # Panics
/// As [`probabilities`].
pub fn predict_labels(model: &Linear, x: &Matrix) -> Vec<usize> {
    let probabilities = probabilities(model, x);
    (0..probabilities.rows).map(|i| argmax(probabilities.row(i))).collect()
}

/// The index of the largest value (the first on ties; 0 for an empty slice).
pub(crate) fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (idx, value) in values.iter().enumerate() {
        if *value > values[best] {
            best = idx;
        }
    }
    best
}

/// `1 / (1 + e^-z)` without overflow.
pub(crate) fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let exp_z = z.exp();
        exp_z / (1.0 + exp_z)
    }
}

/// `ln(1 + e^z)` without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 { z + (-z).exp().ln_1p() } else { z.exp().ln_1p() }
}

/// `ln Σ e^{z_k}`, shifted by the maximum so nothing overflows (`-inf` for an empty slice).
pub(crate) fn log_sum_exp(values: &[f64]) -> f64 {
    let largest = values.iter().fold(f64::NEG_INFINITY, |largest, &value| largest.max(value));
    if !largest.is_finite() {
        return largest;
    }
    largest + values.iter().map(|value| (value - largest).exp()).sum::<f64>().ln()
}

/// Replaces logits by their softmax probabilities.
pub(crate) fn softmax_in_place(values: &mut [f64]) {
    let normaliser = log_sum_exp(values);
    for value in values.iter_mut() {
        *value = (*value - normaliser).exp();
    }
}

/// Checks the inputs of [`logistic`], naming the field and value at fault.
fn validate(x: &Matrix, labels: &[usize], n_classes: usize, config: &LogisticConfig) -> Result<(), String> {
    x.validate("x")?;
    check_non_negative("l2", config.l2)?;
    check_non_negative("tolerance", config.tolerance)?;
    if config.max_iter == 0 {
        return Err("max_iter must be > 0, got 0".to_string());
    }
    if n_classes < 2 {
        return Err(format!("n_classes must be at least 2, got {n_classes}"));
    }
    if x.rows == 0 {
        return Err("x has no rows; logistic regression needs samples".to_string());
    }
    if labels.len() != x.rows {
        return Err(format!("labels has {} values but x has {} rows", labels.len(), x.rows));
    }
    if let Some(position) = labels.iter().position(|&label| label >= n_classes) {
        return Err(format!("labels[{position}] is {} but n_classes is {n_classes}; labels must be < n_classes", labels[position]));
    }
    if labels.iter().all(|&label| label == labels[0]) {
        return Err(format!("every label is {}; at least two classes must occur", labels[0]));
    }
    Ok(())
}

/// The data and penalty of one fit; `theta` is the weights (`d × n_outputs`, row-major) then the biases.
struct Problem<'a> {
    x: &'a Matrix,
    labels: &'a [usize],
    n_outputs: usize,
    l2: f64,
}

impl Problem<'_> {
    /// The mean objective at `theta`; writes its gradient into `gradient`.
    fn objective(&self, theta: &[f64], gradient: &mut [f64]) -> f64 {
        let (n_features, n_outputs) = (self.x.cols, self.n_outputs);
        let (weights, bias) = theta.split_at(n_features * n_outputs);
        gradient.fill(0.0);
        let (weight_gradient, bias_gradient) = gradient.split_at_mut(n_features * n_outputs);
        let mut logits = vec![0.0; n_outputs];
        let mut total_loss = 0.0;
        for (i, &label) in self.labels.iter().enumerate() {
            let row = self.x.row(i);
            logits.copy_from_slice(bias);
            for (feature_idx, &feature) in row.iter().enumerate() {
                let weight_row = &weights[feature_idx * n_outputs..(feature_idx + 1) * n_outputs];
                for (logit, weight) in logits.iter_mut().zip(weight_row) {
                    *logit += feature * weight;
                }
            }
            // Turn the logits into d loss / d logit.
            if n_outputs == 1 {
                let target = if label == 1 { 1.0 } else { 0.0 };
                let logit = logits[0];
                total_loss += softplus(logit) - target * logit;
                logits[0] = sigmoid(logit) - target;
            } else {
                let normaliser = log_sum_exp(&logits);
                total_loss += normaliser - logits[label];
                for (class_idx, logit) in logits.iter_mut().enumerate() {
                    let indicator = if class_idx == label { 1.0 } else { 0.0 };
                    *logit = (*logit - normaliser).exp() - indicator;
                }
            }
            for (feature_idx, &feature) in row.iter().enumerate() {
                let gradient_row = &mut weight_gradient[feature_idx * n_outputs..(feature_idx + 1) * n_outputs];
                for (gradient_value, logit_gradient) in gradient_row.iter_mut().zip(&logits) {
                    *gradient_value += feature * logit_gradient;
                }
            }
            for (gradient_value, logit_gradient) in bias_gradient.iter_mut().zip(&logits) {
                *gradient_value += logit_gradient;
            }
        }
        let mut penalty = 0.0;
        for (gradient_value, weight) in weight_gradient.iter_mut().zip(weights) {
            penalty += weight * weight;
            *gradient_value += self.l2 * weight;
        }
        let scale = 1.0 / self.labels.len() as f64;
        for gradient_value in gradient.iter_mut() {
            *gradient_value *= scale;
        }
        (total_loss + 0.5 * self.l2 * penalty) * scale
    }
}

#[cfg(test)]
mod tests {
    use super::super::rng::Rng;
    use super::super::test_support::{close, iris_standardised};
    use super::*;

    /// Accuracy of `model` on `(x, labels)`.
    fn training_accuracy(model: &Linear, x: &Matrix, labels: &[usize]) -> f64 {
        let predicted = predict_labels(model, x);
        predicted.iter().zip(labels).filter(|(a, b)| a == b).count() as f64 / labels.len() as f64
    }

    fn check_gradient_against_finite_differences(n_outputs: usize, n_classes: usize) {
        let mut rng = Rng::new(11);
        let (n_rows, n_features) = (9, 3);
        let mut x = Matrix::zeros(n_rows, n_features);
        for value in &mut x.data {
            *value = rng.normal();
        }
        let labels: Vec<usize> = (0..n_rows).map(|i| i % n_classes).collect();
        let problem = Problem { x: &x, labels: &labels, n_outputs, l2: 0.3 };
        let n_params = (n_features + 1) * n_outputs;
        let theta: Vec<f64> = (0..n_params).map(|_| rng.normal()).collect();
        let mut gradient = vec![0.0; n_params];
        problem.objective(&theta, &mut gradient);
        let mut scratch = vec![0.0; n_params];
        let step = 1e-6;
        for param_idx in 0..n_params {
            let mut plus = theta.clone();
            plus[param_idx] += step;
            let mut minus = theta.clone();
            minus[param_idx] -= step;
            let numeric = (problem.objective(&plus, &mut scratch) - problem.objective(&minus, &mut scratch)) / (2.0 * step);
            assert!(close(numeric, gradient[param_idx], 1e-7), "param {param_idx}: numeric {numeric}, analytic {}", gradient[param_idx]);
        }
    }

    #[test]
    fn binary_gradient_matches_finite_differences() {
        check_gradient_against_finite_differences(1, 2);
    }

    #[test]
    fn multinomial_gradient_matches_finite_differences() {
        check_gradient_against_finite_differences(3, 3);
    }

    #[test]
    fn separable_binary_data_is_classified_perfectly() {
        let x = Matrix::from_rows(&[vec![-3.0, 1.0], vec![-2.0, -1.0], vec![-2.5, 0.0], vec![2.0, 1.0], vec![3.0, -1.0], vec![2.5, 0.5]]);
        let labels = [0, 0, 0, 1, 1, 1];
        let model = logistic(&x, &labels, 2, &LogisticConfig { l2: 0.1, max_iter: 100, tolerance: 1e-6 }, &mut |_| {}).unwrap();
        assert_eq!(model.weights.cols, 1);
        assert!(model.weights.get(0, 0) > 0.0);
        assert_eq!(training_accuracy(&model, &x, &labels), 1.0);
        let probabilities = probabilities(&model, &x);
        assert_eq!((probabilities.rows, probabilities.cols), (6, 2));
        for i in 0..6 {
            assert!(close(probabilities.get(i, 0) + probabilities.get(i, 1), 1.0, 1e-12));
        }
        assert!(probabilities.get(0, 0) > 0.9 && probabilities.get(4, 1) > 0.9);
    }

    #[test]
    fn iris_multinomial_matches_scikit_learn() {
        // StandardScaler + LogisticRegression(C=1.0, tol=1e-8, max_iter=1000) on iris (scikit-learn 1.9):
        // training accuracy 0.9733333 (146 of 150), and these coefficients and intercepts.
        let expected_coefficients = [
            [-1.074065855, 1.1601150177, -1.930691939, -1.8115561312],
            [0.5878100605, -0.361840588, -0.3634308606, -0.8262697552],
            [0.4862557944, -0.7982744298, 2.2941227997, 2.6378258864],
        ];
        let expected_intercepts = [-0.2052410045, 2.0748397919, -1.8695987874];
        let (x, labels) = iris_standardised();
        let mut reports = Vec::new();
        let config = LogisticConfig { l2: 1.0, max_iter: 1000, tolerance: 1e-8 };
        let model = logistic(&x, &labels, 3, &config, &mut |step| reports.push(step)).unwrap();
        assert_eq!((model.weights.rows, model.weights.cols), (4, 3));
        for (class_idx, class_coefficients) in expected_coefficients.iter().enumerate() {
            for (feature_idx, expected) in class_coefficients.iter().enumerate() {
                let actual = model.weights.get(feature_idx, class_idx);
                assert!(close(actual, *expected, 1e-3), "class {class_idx} feature {feature_idx}: {actual} vs {expected}");
            }
            assert!(close(model.bias[class_idx], expected_intercepts[class_idx], 1e-3), "{:?}", model.bias);
        }
        assert!(close(training_accuracy(&model, &x, &labels), 146.0 / 150.0, 1e-12));
        assert!(!reports.is_empty() && reports.len() <= 101);
        assert_eq!(reports.last().map(|step| step.done), Some(1000));
    }

    #[test]
    fn iris_with_default_settings_reaches_the_reference_accuracy() {
        // scikit-learn's defaults (C=1, tol=1e-4, max_iter=100) also give 0.9733 on standardised iris.
        let (x, labels) = iris_standardised();
        let model = logistic(&x, &labels, 3, &LogisticConfig::default(), &mut |_| {}).unwrap();
        assert!(close(training_accuracy(&model, &x, &labels), 146.0 / 150.0, 1e-12));
    }

    #[test]
    fn iris_binary_matches_scikit_learn() {
        // Versicolor (class 1) against the rest, LogisticRegression(C=1.0, tol=1e-8, max_iter=1000):
        // coef_ = [0.1363907992, -1.2746243954, 0.7977775939, -0.9170281799], intercept_ = -0.9386934898, accuracy 0.7333.
        let expected = [0.1363907992, -1.2746243954, 0.7977775939, -0.9170281799];
        let (x, labels) = iris_standardised();
        let binary_labels: Vec<usize> = labels.iter().map(|&label| usize::from(label == 1)).collect();
        let config = LogisticConfig { l2: 1.0, max_iter: 1000, tolerance: 1e-8 };
        let model = logistic(&x, &binary_labels, 2, &config, &mut |_| {}).unwrap();
        for (feature_idx, expected_weight) in expected.iter().enumerate() {
            assert!(close(model.weights.get(feature_idx, 0), *expected_weight, 1e-4), "{model:?}");
        }
        assert!(close(model.bias[0], -0.9386934898, 1e-4), "{model:?}");
        assert!(close(training_accuracy(&model, &x, &binary_labels), 110.0 / 150.0, 1e-12));
    }

    #[test]
    fn bad_input_is_named() {
        let x = Matrix::from_rows(&[vec![0.0], vec![1.0], vec![2.0]]);
        let config = LogisticConfig::default();
        let error = logistic(&x, &[0, 1, 3], 3, &config, &mut |_| {}).unwrap_err();
        assert!(error.contains("labels[2] is 3"), "{error}");
        assert!(logistic(&x, &[0, 1], 2, &config, &mut |_| {}).unwrap_err().contains("labels has 2 values"));
        assert!(logistic(&x, &[0, 0, 0], 2, &config, &mut |_| {}).unwrap_err().contains("two classes"));
        assert!(logistic(&x, &[0, 0, 0], 1, &config, &mut |_| {}).unwrap_err().contains("n_classes"));
        let negative = LogisticConfig { l2: -1.0, ..LogisticConfig::default() };
        assert!(logistic(&x, &[0, 1, 0], 2, &negative, &mut |_| {}).unwrap_err().contains("l2"));
        let no_iterations = LogisticConfig { max_iter: 0, ..LogisticConfig::default() };
        assert!(logistic(&x, &[0, 1, 0], 2, &no_iterations, &mut |_| {}).unwrap_err().contains("max_iter"));
    }

    #[test]
    fn stable_helpers_do_not_overflow() {
        assert!(close(log_sum_exp(&[1000.0, 1000.0]), 1000.0 + 2f64.ln(), 1e-9));
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert!(close(softplus(1000.0), 1000.0, 1e-9));
        let mut logits = [1000.0, 0.0, -1000.0];
        softmax_in_place(&mut logits);
        assert!(close(logits[0], 1.0, 1e-12) && logits[2] == 0.0);
        assert_eq!(argmax(&[0.1, 0.7, 0.7]), 1);
    }
}
