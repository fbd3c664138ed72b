//! Evaluation metrics, each defined as scikit-learn defines it (the function docs name the counterpart).
//!
//! Every metric returns `f64` and never panics: input that has no answer (slices of different lengths, no
//! samples, a label out of range, a shape that does not match) gives `NaN`, which the caller reports as
//! "not available".

use super::matrix::Matrix;

/// Probabilities are clipped to `[LOG_LOSS_CLIP, 1 - LOG_LOSS_CLIP]` before taking logarithms.
const LOG_LOSS_CLIP: f64 = 1e-15;

/// Whether two slices are a valid pair of equal-length, non-empty samples.
fn paired<A, B>(first: &[A], second: &[B]) -> bool {
    !first.is_empty() && first.len() == second.len()
}

/// The coefficient of determination `1 - Σ(y - ŷ)² / Σ(y - ȳ)²` (scikit-learn's `r2_score`). When every
/// true value is the same it is 1 for a perfect prediction and 0 otherwise, as scikit-learn's default
/// `force_finite = True` makes it. `NaN` for empty or unequal slices.
pub fn r2(y_true: &[f64], y_pred: &[f64]) -> f64 {
    if !paired(y_true, y_pred) {
        return f64::NAN;
    }
    let mean = y_true.iter().sum::<f64>() / y_true.len() as f64;
    let residual: f64 = y_true.iter().zip(y_pred).map(|(truth, prediction)| (truth - prediction).powi(2)).sum();
    let total: f64 = y_true.iter().map(|truth| (truth - mean).powi(2)).sum();
    if total == 0.0 {
        return if residual == 0.0 { 1.0 } else { 0.0 };
    }
    1.0 - residual / total
}

/// The root mean squared error `sqrt(mean((y - ŷ)²))` (scikit-learn's `root_mean_squared_error`). `NaN`
/// for empty or unequal slices.
pub fn rmse(y_true: &[f64], y_pred: &[f64]) -> f64 {
    if !paired(y_true, y_pred) {
        return f64::NAN;
    }
    let sum: f64 = y_true.iter().zip(y_pred).map(|(truth, prediction)| (truth - prediction).powi(2)).sum();
    (sum / y_true.len() as f64).sqrt()
}

/// The mean absolute error `mean(|y - ŷ|)` (scikit-learn's `mean_absolute_error`). `NaN` for empty or
/// unequal slices.
pub fn mae(y_true: &[f64], y_pred: &[f64]) -> f64 {
    if !paired(y_true, y_pred) {
        return f64::NAN;
    }
    y_true.iter().zip(y_pred).map(|(truth, prediction)| (truth - prediction).abs()).sum::<f64>() / y_true.len() as f64
}

/// The fraction of rows whose predicted class equals the label (scikit-learn's `accuracy_score`). `NaN`
/// for empty or unequal slices.
pub fn accuracy(labels: &[usize], predicted: &[usize]) -> f64 {
    if !paired(labels, predicted) {
        return f64::NAN;
    }
    labels.iter().zip(predicted).filter(|(label, prediction)| label == prediction).count() as f64 / labels.len() as f64
}

/// The F1 score `2 TP / (2 TP + FP + FN)`.
///
/// Binary (`n_classes == 2`): the F1 of class 1, scikit-learn's `f1_score(average = "binary")`.
/// Multiclass: the unweighted mean over the classes `0..n_classes`, scikit-learn's
/// `f1_score(average = "macro", labels = range(n_classes))`. A class with no true and no predicted rows
/// scores 0, as scikit-learn's default `zero_division` makes it; note that scikit-learn *without* the
/// `labels` argument would leave such a class out of the mean. `NaN` for empty or unequal slices,
/// `n_classes < 2`, or a class `>= n_classes`.
pub fn f1(labels: &[usize], predicted: &[usize], n_classes: usize) -> f64 {
    if !paired(labels, predicted) || n_classes < 2 || labels.iter().chain(predicted).any(|&class| class >= n_classes) {
        return f64::NAN;
    }
    let mut true_positives = vec![0usize; n_classes];
    let mut false_positives = vec![0usize; n_classes];
    let mut false_negatives = vec![0usize; n_classes];
    for (&label, &prediction) in labels.iter().zip(predicted) {
        if label == prediction {
            true_positives[label] += 1;
        } else {
            false_positives[prediction] += 1;
            false_negatives[label] += 1;
        }
    }
    let class_f1 = |class: usize| {
        let denominator = 2 * true_positives[class] + false_positives[class] + false_negatives[class];
        if denominator == 0 { 0.0 } else { (2 * true_positives[class]) as f64 / denominator as f64 }
    };
    if n_classes == 2 {
        return class_f1(1);
    }
    (0..n_classes).map(class_f1).sum::<f64>() / n_classes as f64
}

/// The area under the ROC curve.
///
/// Binary (`probabilities` has 2 columns, or 1 column holding P(class 1)): the AUC of P(class 1) for
/// labels 0 and 1, the Mann-Whitney statistic with tied scores given their average rank (each tied
/// positive/negative pair counts one half), scikit-learn's `roc_auc_score`. Multiclass (more columns):
/// the unweighted mean over classes of the one-vs-rest AUC of each column, scikit-learn's
/// `roc_auc_score(multi_class = "ovr", average = "macro")`. `NaN` when a class is absent (no positives or
/// no negatives for some AUC), for a label without a column, a `NaN` score, or a shape mismatch.
pub fn roc_auc(labels: &[usize], probabilities: &Matrix) -> f64 {
    if labels.is_empty() || probabilities.rows != labels.len() || probabilities.cols == 0 || !probabilities.has_valid_shape() {
        return f64::NAN;
    }
    if probabilities.cols <= 2 {
        if labels.iter().any(|&label| label > 1) {
            return f64::NAN;
        }
        let score_column = probabilities.cols - 1;
        let scores: Vec<f64> = (0..probabilities.rows).map(|i| probabilities.get(i, score_column)).collect();
        let positives: Vec<bool> = labels.iter().map(|&label| label == 1).collect();
        return binary_auc(&scores, &positives);
    }
    if labels.iter().any(|&label| label >= probabilities.cols) {
        return f64::NAN;
    }
    let n_classes = probabilities.cols;
    let mut total = 0.0;
    for class in 0..n_classes {
        let scores: Vec<f64> = (0..probabilities.rows).map(|i| probabilities.get(i, class)).collect();
        let positives: Vec<bool> = labels.iter().map(|&label| label == class).collect();
        total += binary_auc(&scores, &positives);
    }
    total / n_classes as f64
}

/// The AUC of `scores` for the rows flagged in `positives`, from average ranks:
/// `(Σ ranks of positives - n₊(n₊ + 1)/2) / (n₊ n₋)`. `NaN` without positives or negatives or with a
/// `NaN` score.
fn binary_auc(scores: &[f64], positives: &[bool]) -> f64 {
    let n_positive = positives.iter().filter(|&&positive| positive).count();
    let n_negative = positives.len() - n_positive;
    if n_positive == 0 || n_negative == 0 || scores.iter().any(|score| score.is_nan()) {
        return f64::NAN;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut positive_rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        // Ranks start + 1 ..= end share their average.
        let average_rank = (start + 1 + end) as f64 / 2.0;
        let tied_positives = order[start..end].iter().filter(|&&row| positives[row]).count();
        positive_rank_sum += average_rank * tied_positives as f64;
        start = end;
    }
    let (n_positive, n_negative) = (n_positive as f64, n_negative as f64);
    (positive_rank_sum - n_positive * (n_positive + 1.0) / 2.0) / (n_positive * n_negative)
}

/// The mean negative log-likelihood `-mean(ln p[i, label_i])` with each probability first clipped to
/// `[1e-15, 1 - 1e-15]` (scikit-learn's `log_loss`, without its renormalisation of rows). `probabilities`
/// is `n × n_classes` (as [`crate::solvers::logistic::probabilities`] returns). `NaN` for a shape
/// mismatch, no rows, or a label without a column.
pub fn log_loss(labels: &[usize], probabilities: &Matrix) -> f64 {
    if labels.is_empty() || probabilities.rows != labels.len() || !probabilities.has_valid_shape() {
        return f64::NAN;
    }
    if labels.iter().any(|&label| label >= probabilities.cols) {
        return f64::NAN;
    }
    let total: f64 =
        labels.iter().enumerate().map(|(i, &label)| -probabilities.get(i, label).clamp(LOG_LOSS_CLIP, 1.0 - LOG_LOSS_CLIP).ln()).sum();
    total / labels.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solvers::test_support::close;

    /// A two-column probability matrix `[1 - s, s]` from scores of class 1.
    fn binary_probabilities(scores: &[f64]) -> Matrix {
        Matrix::from_rows(&scores.iter().map(|&score| vec![1.0 - score, score]).collect::<Vec<_>>())
    }

    #[test]
    fn regression_metrics_match_hand_values() {
        // y = [3, -0.5, 2, 7], ŷ = [2.5, 0, 2, 8]: squared errors [0.25, 0.25, 0, 1], mean 0.375;
        // absolute errors mean 0.5; ȳ = 2.875, Σ(y - ȳ)² = 29.1875, R² = 1 - 1.5 / 29.1875 = 0.9486081370449679
        // (scikit-learn's r2_score docs).
        let y_true = [3.0, -0.5, 2.0, 7.0];
        let y_pred = [2.5, 0.0, 2.0, 8.0];
        assert!(close(r2(&y_true, &y_pred), 0.9486081370449679, 1e-15));
        assert!(close(rmse(&y_true, &y_pred), 0.375f64.sqrt(), 1e-15));
        assert!(close(mae(&y_true, &y_pred), 0.5, 1e-15));
        // Constant truth: 1 when perfect, 0 otherwise (scikit-learn's force_finite).
        assert_eq!(r2(&[2.0, 2.0], &[2.0, 2.0]), 1.0);
        assert_eq!(r2(&[2.0, 2.0], &[2.0, 3.0]), 0.0);
        assert!(r2(&[1.0], &[]).is_nan() && rmse(&[], &[]).is_nan() && mae(&[1.0, 2.0], &[1.0]).is_nan());
    }

    #[test]
    fn accuracy_counts_matches() {
        assert_eq!(accuracy(&[0, 1, 2, 2], &[0, 2, 2, 2]), 0.75);
        assert!(accuracy(&[0], &[0, 1]).is_nan());
    }

    #[test]
    fn f1_matches_hand_values() {
        // Binary: TP = 2, FP = 0, FN = 1, F1 = 4 / 5.
        assert!(close(f1(&[0, 1, 1, 0, 1], &[0, 1, 0, 0, 1], 2), 0.8, 1e-15));
        // scikit-learn's f1_score docs: macro F1 of [0,1,2,0,1,2] against [0,2,1,0,0,1] is 0.26666666666666666
        // (class 0: TP 2, FP 1, FN 0 → 0.8; classes 1 and 2: 0).
        assert!(close(f1(&[0, 1, 2, 0, 1, 2], &[0, 2, 1, 0, 0, 1], 3), 0.26666666666666666, 1e-15));
        // Class 2 never occurs: it scores 0, so (2/3 + 4/5 + 0) / 3 = 22/45, what scikit-learn gives with
        // labels=[0, 1, 2] (without labels it would average over classes 0 and 1 only: 0.7333).
        assert!(close(f1(&[0, 1, 0, 1], &[0, 1, 1, 1], 3), 22.0 / 45.0, 1e-15));
        // Binary with no positive anywhere: 0 (zero_division).
        assert_eq!(f1(&[0, 0], &[0, 0], 2), 0.0);
        assert!(f1(&[0, 3], &[0, 1], 3).is_nan());
        assert!(f1(&[0, 1], &[0, 1], 1).is_nan());
    }

    #[test]
    fn binary_auc_matches_hand_values() {
        // scikit-learn's roc_auc_score docs: labels [0, 0, 1, 1], scores [0.1, 0.4, 0.35, 0.8] → 0.75.
        assert!(close(roc_auc(&[0, 0, 1, 1], &binary_probabilities(&[0.1, 0.4, 0.35, 0.8])), 0.75, 1e-15));
        // Ties: labels [0, 1, 0, 1], scores [0.5, 0.5, 0.2, 0.9]. Pairs (positive, negative):
        // (0.5, 0.5) ½, (0.5, 0.2) 1, (0.9, 0.5) 1, (0.9, 0.2) 1 → 3.5 / 4 = 0.875.
        assert!(close(roc_auc(&[0, 1, 0, 1], &binary_probabilities(&[0.5, 0.5, 0.2, 0.9])), 0.875, 1e-15));
        // A single column is read as P(class 1).
        let single = Matrix::from_rows(&[vec![0.1], vec![0.4], vec![0.35], vec![0.8]]);
        assert!(close(roc_auc(&[0, 0, 1, 1], &single), 0.75, 1e-15));
        // One class only, or a label without a column: NaN.
        assert!(roc_auc(&[1, 1], &binary_probabilities(&[0.2, 0.3])).is_nan());
        assert!(roc_auc(&[0, 2], &binary_probabilities(&[0.2, 0.3])).is_nan());
        assert!(roc_auc(&[0, 1], &binary_probabilities(&[0.2, f64::NAN])).is_nan());
    }

    #[test]
    fn multiclass_auc_is_the_macro_one_vs_rest_mean() {
        // scikit-learn: roc_auc_score(y, P, multi_class='ovr', average='macro') = 0.9791666666666666
        // (per class 1.0, 1.0 and 0.9375).
        let labels = [0, 1, 2, 2, 1, 0];
        let probabilities = Matrix::from_rows(&[
            vec![0.7, 0.2, 0.1],
            vec![0.2, 0.5, 0.3],
            vec![0.1, 0.3, 0.6],
            vec![0.3, 0.3, 0.4],
            vec![0.4, 0.4, 0.2],
            vec![0.5, 0.1, 0.4],
        ]);
        assert!(close(roc_auc(&labels, &probabilities), 0.9791666666666666, 1e-15));
        // Class 2 absent: its one-vs-rest AUC is undefined.
        assert!(roc_auc(&[0, 1, 0, 1, 1, 0], &probabilities).is_nan());
    }

    #[test]
    fn log_loss_matches_hand_values() {
        // scikit-learn's log_loss docs: ["spam", "ham", "ham", "spam"] (ham = 0, spam = 1) with
        // [[.1, .9], [.9, .1], [.8, .2], [.35, .65]] → 0.21616187468057912.
        let probabilities = Matrix::from_rows(&[vec![0.1, 0.9], vec![0.9, 0.1], vec![0.8, 0.2], vec![0.35, 0.65]]);
        assert!(close(log_loss(&[1, 0, 0, 1], &probabilities), 0.21616187468057912, 1e-15));
        // Three classes (scikit-learn: 0.6810627320954873).
        let three = Matrix::from_rows(&[
            vec![0.7, 0.2, 0.1],
            vec![0.2, 0.5, 0.3],
            vec![0.1, 0.3, 0.6],
            vec![0.3, 0.3, 0.4],
            vec![0.4, 0.4, 0.2],
            vec![0.5, 0.1, 0.4],
        ]);
        assert!(close(log_loss(&[0, 1, 2, 2, 1, 0], &three), 0.6810627320954873, 1e-14));
        // A zero probability is clipped to 1e-15: -ln(1e-15) = 34.538776394910684.
        let certain_and_wrong = Matrix::from_rows(&[vec![1.0, 0.0]]);
        assert!(close(log_loss(&[1], &certain_and_wrong), 34.538776394910684, 1e-9));
        assert!(log_loss(&[2], &certain_and_wrong).is_nan());
        assert!(log_loss(&[], &certain_and_wrong).is_nan());
    }
}
