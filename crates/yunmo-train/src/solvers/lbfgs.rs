//! L-BFGS: a reusable minimiser of smooth functions given their value and gradient.
//!
//! The direction comes from the usual two-loop recursion over the last `history` curvature pairs, scaled
//! by `sᵀy / yᵀy` of the newest pair; the step from a backtracking line search that halves the step until
//! the Armijo condition `f(x + t d) <= f(x) + 1e-4 · t · ∇f·d` holds. A pair is kept only when its
//! curvature `sᵀy` is positive, so the implied inverse Hessian stays positive definite; if the direction
//! is nevertheless not a descent direction the history is dropped and steepest descent is used.
//!
//! Stops after `max_iter` iterations, when the largest absolute gradient component is below `tolerance`,
//! when an iteration lowers the value by no more than `64 · f64::EPSILON` relative to it (SciPy's `ftol`
//! as scikit-learn sets it), or when the line search can no longer find a lower value.

use std::collections::VecDeque;

use super::matrix::dot;
use super::{Step, should_report};

/// When to stop, and how much curvature history to keep.
#[derive(Clone, Debug)]
pub struct LbfgsConfig {
    /// The most iterations (each is one direction and one line search).
    pub max_iter: u32,
    /// Stop once `max |∂f/∂x_i| < tolerance`.
    pub tolerance: f64,
    /// Curvature pairs kept (10 is the usual choice; 0 gives steepest descent).
    pub history: usize,
}

impl Default for LbfgsConfig {
    /// 100 iterations, gradient tolerance `1e-4`, history 10 (scikit-learn's `LogisticRegression` defaults).
    fn default() -> Self {
        LbfgsConfig { max_iter: 100, tolerance: 1e-4, history: 10 }
    }
}

/// Armijo's sufficient-decrease constant.
const ARMIJO_CONSTANT: f64 = 1e-4;
/// Halvings tried before the line search gives up (2⁻⁶⁰ is far below any useful step).
const MAX_BACKTRACKS: u32 = 60;
/// Stop when an iteration improves the value by no more than this, relative to `max(|f|, 1)`.
const RELATIVE_DECREASE_FLOOR: f64 = 64.0 * f64::EPSILON;

/// One curvature pair `s = x_{k+1} - x_k`, `y = ∇f_{k+1} - ∇f_k`.
struct Correction {
    step: Vec<f64>,
    gradient_change: Vec<f64>,
    /// `1 / sᵀy`.
    inverse_curvature: f64,
}

/// Minimises `f` from `x0` and returns the best point found.
///
/// `f(x, gradient)` writes `∇f(x)` into `gradient` (same length as `x`) and returns `f(x)`; it may return a
/// non-finite value for points outside its domain, which the line search then backs away from.
/// `progress` receives the value after every k-th iteration (at most about 100 reports) and, last, a report
/// with `done == total == max_iter` whatever the reason for stopping. If `f(x0)` is not finite, `x0` is
/// returned unchanged.
pub fn minimise(
    f: &mut dyn FnMut(&[f64], &mut [f64]) -> f64,
    x0: Vec<f64>,
    config: &LbfgsConfig,
    progress: &mut dyn FnMut(Step),
) -> Vec<f64> {
    let n_params = x0.len();
    let total = config.max_iter;
    let mut point = x0;
    let mut gradient = vec![0.0; n_params];
    let mut value = f(&point, &mut gradient);
    if !value.is_finite() || n_params == 0 {
        progress(Step { done: total, total, loss: value });
        return point;
    }
    let mut history: VecDeque<Correction> = VecDeque::with_capacity(config.history);
    let mut alphas = vec![0.0; config.history];
    let mut direction = vec![0.0; n_params];
    let mut trial_point = vec![0.0; n_params];
    let mut trial_gradient = vec![0.0; n_params];
    for iteration in 1..=total {
        if max_abs(&gradient) < config.tolerance {
            break;
        }
        two_loop_direction(&gradient, &history, &mut direction, &mut alphas);
        let mut slope = dot(&gradient, &direction);
        if !(slope.is_finite() && slope < 0.0) {
            history.clear();
            for (direction_value, gradient_value) in direction.iter_mut().zip(&gradient) {
                *direction_value = -gradient_value;
            }
            slope = -dot(&gradient, &gradient);
        }
        // Without curvature information the first trial moves a unit distance (at most a unit step).
        let mut step_length = if history.is_empty() { (1.0 / dot(&direction, &direction).sqrt()).min(1.0) } else { 1.0 };
        let mut trial_value = f64::NAN;
        let mut accepted = false;
        for _ in 0..MAX_BACKTRACKS {
            for ((trial, current), direction_value) in trial_point.iter_mut().zip(&point).zip(&direction) {
                *trial = current + step_length * direction_value;
            }
            trial_value = f(&trial_point, &mut trial_gradient);
            if trial_value.is_finite() && trial_value <= value + ARMIJO_CONSTANT * step_length * slope {
                accepted = true;
                break;
            }
            step_length *= 0.5;
        }
        if !accepted {
            break;
        }
        let step: Vec<f64> = trial_point.iter().zip(&point).map(|(new_value, old_value)| new_value - old_value).collect();
        let gradient_change: Vec<f64> = trial_gradient.iter().zip(&gradient).map(|(new_value, old_value)| new_value - old_value).collect();
        remember_curvature(&mut history, config.history, step, gradient_change);
        std::mem::swap(&mut point, &mut trial_point);
        std::mem::swap(&mut gradient, &mut trial_gradient);
        let previous_value = value;
        value = trial_value;
        if iteration < total && should_report(iteration, total) {
            progress(Step { done: iteration, total, loss: value });
        }
        if previous_value - value <= RELATIVE_DECREASE_FLOOR * previous_value.abs().max(value.abs()).max(1.0) {
            break;
        }
    }
    progress(Step { done: total, total, loss: value });
    point
}

/// The largest absolute component (0 for an empty slice).
fn max_abs(values: &[f64]) -> f64 {
    values.iter().fold(0.0_f64, |largest, value| largest.max(value.abs()))
}

/// `target += scale · source`.
fn add_scaled(target: &mut [f64], scale: f64, source: &[f64]) {
    for (target_value, source_value) in target.iter_mut().zip(source) {
        *target_value += scale * source_value;
    }
}

/// Writes `-H ∇f` into `direction`, H being the L-BFGS inverse Hessian approximation (two-loop recursion).
fn two_loop_direction(gradient: &[f64], history: &VecDeque<Correction>, direction: &mut [f64], alphas: &mut [f64]) {
    direction.copy_from_slice(gradient);
    for (pair_idx, pair) in history.iter().enumerate().rev() {
        let alpha = pair.inverse_curvature * dot(&pair.step, direction);
        alphas[pair_idx] = alpha;
        add_scaled(direction, -alpha, &pair.gradient_change);
    }
    if let Some(newest) = history.back() {
        // H0 = (sᵀy / yᵀy) I from the newest pair.
        let scale = 1.0 / (newest.inverse_curvature * dot(&newest.gradient_change, &newest.gradient_change));
        for direction_value in direction.iter_mut() {
            *direction_value *= scale;
        }
    }
    for (pair_idx, pair) in history.iter().enumerate() {
        let beta = pair.inverse_curvature * dot(&pair.gradient_change, direction);
        add_scaled(direction, alphas[pair_idx] - beta, &pair.step);
    }
    for direction_value in direction.iter_mut() {
        *direction_value = -*direction_value;
    }
}

/// Keeps the pair `(step, gradient_change)` when its curvature `sᵀy` is clearly positive, dropping the
/// oldest pair beyond `capacity`; a rejected pair leaves the history as it was.
fn remember_curvature(history: &mut VecDeque<Correction>, capacity: usize, step: Vec<f64>, gradient_change: Vec<f64>) {
    let curvature = dot(&step, &gradient_change);
    let change_norm_squared = dot(&gradient_change, &gradient_change);
    if capacity == 0 || !curvature.is_finite() || curvature <= 0.0 || curvature <= 1e-10 * change_norm_squared {
        return;
    }
    if history.len() >= capacity {
        history.pop_front();
    }
    history.push_back(Correction { step, gradient_change, inverse_curvature: 1.0 / curvature });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimises_a_separable_quadratic_exactly() {
        // f(x) = Σ (i + 1)(x_i - i)², minimum at x_i = i with value 0.
        let mut quadratic = |x: &[f64], gradient: &mut [f64]| {
            let mut value = 0.0;
            for (i, (x_i, gradient_i)) in x.iter().zip(gradient.iter_mut()).enumerate() {
                let weight = (i + 1) as f64;
                let offset = x_i - i as f64;
                value += weight * offset * offset;
                *gradient_i = 2.0 * weight * offset;
            }
            value
        };
        let config = LbfgsConfig { max_iter: 200, tolerance: 1e-10, history: 10 };
        let solution = minimise(&mut quadratic, vec![0.0; 6], &config, &mut |_| {});
        for (i, value) in solution.iter().enumerate() {
            assert!((value - i as f64).abs() < 1e-8, "{solution:?}");
        }
    }

    #[test]
    fn minimises_rosenbrock() {
        // f(a, b) = (1 - a)² + 100 (b - a²)², minimum 0 at (1, 1); the classic start is (-1.2, 1).
        let mut rosenbrock = |x: &[f64], gradient: &mut [f64]| {
            let (a, b) = (x[0], x[1]);
            gradient[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
            gradient[1] = 200.0 * (b - a * a);
            (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
        };
        let config = LbfgsConfig { max_iter: 1000, tolerance: 1e-10, history: 10 };
        let mut reports = Vec::new();
        let solution = minimise(&mut rosenbrock, vec![-1.2, 1.0], &config, &mut |step| reports.push(step));
        assert!((solution[0] - 1.0).abs() < 1e-5 && (solution[1] - 1.0).abs() < 1e-5, "{solution:?}");
        assert!(reports.len() <= 101, "{} reports", reports.len());
        let last = reports.last().unwrap();
        assert_eq!((last.done, last.total), (1000, 1000));
        assert!(last.loss < 1e-10);
        assert!(reports.windows(2).all(|pair| pair[0].done < pair[1].done));
    }

    #[test]
    fn a_non_finite_start_is_returned_unchanged() {
        let mut nowhere = |_: &[f64], _: &mut [f64]| f64::NAN;
        let solution = minimise(&mut nowhere, vec![1.0, 2.0], &LbfgsConfig::default(), &mut |_| {});
        assert_eq!(solution, vec![1.0, 2.0]);
    }

    #[test]
    fn backs_away_from_points_outside_the_domain() {
        // f(x) = x - ln x on x > 0 (infinite outside), minimum at x = 1.
        let mut barrier = |x: &[f64], gradient: &mut [f64]| {
            gradient[0] = 1.0 - 1.0 / x[0];
            if x[0] > 0.0 { x[0] - x[0].ln() } else { f64::INFINITY }
        };
        let config = LbfgsConfig { max_iter: 100, tolerance: 1e-9, history: 10 };
        let solution = minimise(&mut barrier, vec![0.05], &config, &mut |_| {});
        assert!((solution[0] - 1.0).abs() < 1e-6, "{solution:?}");
    }
}
