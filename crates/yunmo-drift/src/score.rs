//! Distances between two distributions over the same bins, from their counts.
//!
//! Empty bins are smoothed with a floor of [`FLOOR`] before the logarithms, as PSI implementations commonly
//! do, so that a bin the baseline never saw scores finitely.

/// The smallest share a bin is taken to have in [`psi`].
pub const FLOOR: f64 = 1e-4;

/// Counts as shares of their sum (all zero when the sum is zero).
pub fn shares(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts.iter().map(|count| if total == 0 { 0.0 } else { *count as f64 / total as f64 }).collect()
}

/// Population stability index of `window` against `baseline` (shares over the same bins):
/// Σ (w − b) · ln(w / b), with shares floored at [`FLOOR`]. 0 for equal distributions; 0.1 is commonly read
/// as a moderate shift and 0.25 as a large one.
pub fn psi(baseline: &[f64], window: &[f64]) -> f64 {
    baseline
        .iter()
        .zip(window)
        .map(|(b, w)| {
            let (b, w) = (b.max(FLOOR), w.max(FLOOR));
            (w - b) * (w / b).ln()
        })
        .sum()
}

/// Jensen-Shannon distance (the square root of the divergence, base 2): 0 for equal distributions, 1 for
/// disjoint ones. Symmetric and finite without smoothing.
pub fn js_distance(baseline: &[f64], window: &[f64]) -> f64 {
    let divergence: f64 = baseline
        .iter()
        .zip(window)
        .map(|(b, w)| {
            let m = (b + w) / 2.0;
            let term = |p: f64| if p > 0.0 { p * (p / m).log2() } else { 0.0 };
            (term(*b) + term(*w)) / 2.0
        })
        .sum();
    divergence.max(0.0).sqrt().min(1.0)
}

/// The largest difference between the shares of one bin (L∞).
pub fn linf(baseline: &[f64], window: &[f64]) -> f64 {
    baseline.iter().zip(window).map(|(b, w)| (b - w).abs()).fold(0.0, f64::max)
}

/// Cosine distance between two vectors: 1 − cos θ (0 for the same direction, up to 2). 0 when either is zero.
pub fn cosine_distance(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 { 0.0 } else { (1.0 - dot / (na * nb)).max(0.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_distributions_score_zero_and_disjoint_ones_the_maximum() {
        let p = [0.25, 0.25, 0.5];
        assert_eq!(psi(&p, &p), 0.0);
        assert_eq!(js_distance(&p, &p), 0.0);
        assert_eq!(linf(&p, &p), 0.0);
        assert!((js_distance(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12);
        assert_eq!(linf(&[1.0, 0.0], &[0.0, 1.0]), 1.0);
    }

    #[test]
    fn psi_matches_a_hand_computed_value() {
        // (0.3 - 0.5) ln(0.3/0.5) + (0.7 - 0.5) ln(0.7/0.5)
        let expected = -0.2 * (0.6f64).ln() + 0.2 * (1.4f64).ln();
        assert!((psi(&[0.5, 0.5], &[0.3, 0.7]) - expected).abs() < 1e-12);
        assert!(psi(&[0.5, 0.5, 0.0], &[0.5, 0.4, 0.1]).is_finite(), "an empty baseline bin is smoothed");
    }

    #[test]
    fn cosine_distance_of_vectors() {
        assert_eq!(cosine_distance(&[1.0, 0.0], &[2.0, 0.0]), 0.0);
        assert!((cosine_distance(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12);
        assert_eq!(shares(&[1, 3]), [0.25, 0.75]);
        assert_eq!(shares(&[0, 0]), [0.0, 0.0]);
    }
}
