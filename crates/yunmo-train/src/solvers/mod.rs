//! The numerical core of the trainers: a dense matrix, a deterministic RNG, ridge regression, logistic
//! regression by L-BFGS, a small MLP trained by Adam, k-means, biased matrix factorisation by SGD, and
//! the evaluation metrics.
//!
//! Everything here is pure and deterministic: no IO, no threads, no clock, no global state; randomness
//! comes from [`rng::Rng`] seeded by the caller. Bad input is answered with `Err(String)` naming the
//! field and the value, never a panic. Features are expected to be standardised by the caller, who bakes
//! the standardisation into the exported graph.

pub mod factorise;
pub mod kmeans;
pub mod lbfgs;
pub mod linear;
pub mod logistic;
pub mod matrix;
pub mod metrics;
pub mod mlp;
pub mod rng;
#[cfg(test)]
mod test_support;

/// One step of an iterative trainer, for progress bars and the job's event log.
#[derive(Clone, Debug)]
pub struct Step {
    /// Steps done so far (epochs, iterations or restarts, as the trainer documents); the last report of a
    /// run always has `done == total`, even when the trainer converged early.
    pub done: u32,
    /// Steps the run would take at most.
    pub total: u32,
    /// The trainer's current loss (each trainer documents which).
    pub loss: f64,
}

/// How many steps apart a trainer reports so that a run of `total` steps reports at most 100 times.
pub(crate) fn report_stride(total: u32) -> u32 {
    total.div_ceil(100).max(1)
}

/// Whether step `done` (1-based) of `total` is one to report: every [`report_stride`] steps and the last.
pub(crate) fn should_report(done: u32, total: u32) -> bool {
    done == total || done.is_multiple_of(report_stride(total))
}

/// Checks that `value` is finite and strictly positive; the error names `field` and the value.
pub(crate) fn check_positive(field: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value > 0.0 { Ok(()) } else { Err(format!("{field} must be a finite number > 0, got {value}")) }
}

/// Checks that `value` is finite and not negative; the error names `field` and the value.
pub(crate) fn check_non_negative(field: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value >= 0.0 { Ok(()) } else { Err(format!("{field} must be a finite number >= 0, got {value}")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_at_most_about_a_hundred_times_and_always_the_last_step() {
        for total in [1u32, 7, 99, 100, 101, 250, 1000, 12_345] {
            let reports = (1..=total).filter(|&done| should_report(done, total)).count();
            assert!(reports <= 101, "total {total}: {reports} reports");
            assert!(should_report(total, total));
        }
        // Short runs report every step.
        assert_eq!((1..=20).filter(|&done| should_report(done, 20)).count(), 20);
    }

    #[test]
    fn checks_name_the_field_and_value() {
        assert!(check_positive("learning_rate", 0.1).is_ok());
        let error = check_positive("learning_rate", 0.0).unwrap_err();
        assert!(error.contains("learning_rate") && error.contains('0'), "{error}");
        assert!(check_positive("learning_rate", f64::NAN).is_err());
        assert!(check_non_negative("l2", 0.0).is_ok());
        assert!(check_non_negative("l2", -1.0).unwrap_err().contains("-1"));
    }
}
