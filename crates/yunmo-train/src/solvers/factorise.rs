//! Biased matrix factorisation for recommenders, trained by stochastic gradient descent: Funk SVD as
//! Surprise's `SVD` implements it.
//!
//! A rating is predicted as `μ + b_u + b_i + p_u · q_i` (global mean, user bias, item bias, user and item
//! factor vectors). Each observed rating, visited in an order shuffled every epoch, updates with the error
//! `e = r - prediction`:
//! `b_u += lr (e - l2 b_u)`, `b_i += lr (e - l2 b_i)`, `p_u += lr (e q_i - l2 p_u)`, `q_i += lr (e p_u - l2 q_i)`
//! (the factor updates both use the values from before the step). Factors start as `N(0, init_std²)` draws,
//! user factors first, biases at zero. Surprise's defaults (100 factors, 20 epochs, lr 0.005, reg 0.02,
//! init_std 0.1) reach an RMSE of about 0.93-0.94 on MovieLens 100K, with predictions clipped to 1..5
//! (see [`Factors::predict_clipped`]).

use super::matrix::{Matrix, dot};
use super::rng::Rng;
use super::{Step, check_non_negative, check_positive, should_report};

/// One observed rating.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rating {
    /// User index, `< n_users`.
    pub user: usize,
    /// Item index, `< n_items`.
    pub item: usize,
    /// The rating (any finite value; the scale is the caller's).
    pub value: f64,
}

/// Settings for [`factorise`].
#[derive(Clone, Debug)]
pub struct FactorConfig {
    /// Length of the user and item factor vectors (0 gives the biases-only baseline).
    pub factors: usize,
    /// Passes over the ratings (> 0).
    pub epochs: u32,
    /// SGD step size (> 0).
    pub learning_rate: f64,
    /// L2 penalty on biases and factors (>= 0).
    pub l2: f64,
    /// Seed of the initial factors and the shuffles.
    pub seed: u64,
    /// Standard deviation of the initial factors (>= 0).
    pub init_std: f64,
}

impl Default for FactorConfig {
    /// Surprise's SVD defaults: 100 factors, 20 epochs, learning rate 0.005, regularisation 0.02, initial
    /// standard deviation 0.1.
    fn default() -> Self {
        FactorConfig { factors: 100, epochs: 20, learning_rate: 0.005, l2: 0.02, seed: 0, init_std: 0.1 }
    }
}

/// A trained factorisation.
#[derive(Clone, Debug)]
pub struct Factors {
    /// Mean of the training ratings, `μ`.
    pub global_mean: f64,
    /// `b_u`, one per user.
    pub user_bias: Vec<f64>,
    /// `b_i`, one per item.
    pub item_bias: Vec<f64>,
    /// `n_users × factors`: row u is `p_u`.
    pub user_factors: Matrix,
    /// `n_items × factors`: row i is `q_i`.
    pub item_factors: Matrix,
}

impl Factors {
    /// `μ + b_u + b_i + p_u · q_i`, unclipped. A user or item index out of range is unknown: its bias and
    /// the factor term are left out (Surprise's behaviour), so an unknown pair predicts `μ`.
    pub fn predict(&self, user: usize, item: usize) -> f64 {
        let known_user = user < self.user_bias.len() && user < self.user_factors.rows;
        let known_item = item < self.item_bias.len() && item < self.item_factors.rows;
        let mut prediction = self.global_mean;
        if known_user {
            prediction += self.user_bias[user];
        }
        if known_item {
            prediction += self.item_bias[item];
        }
        if known_user && known_item {
            prediction += dot(self.user_factors.row(user), self.item_factors.row(item));
        }
        prediction
    }

    /// [`Factors::predict`] limited to `lowest..=highest` (the rating scale, e.g. 1 and 5), as Surprise
    /// clips its estimates.
    pub fn predict_clipped(&self, user: usize, item: usize, rating_scale: (f64, f64)) -> f64 {
        let (lowest, highest) = rating_scale;
        self.predict(user, item).max(lowest).min(highest)
    }
}

/// Learns [`Factors`] from `ratings` of `n_users` users and `n_items` items.
///
/// One [`Step`] per epoch (every k-th beyond 100) whose loss is the training RMSE of that epoch: the root
/// mean square of the errors met during the epoch, each taken just before its update (free to compute, and
/// slightly above the RMSE of the model at the end of the epoch). Fails, naming the field and value, on an
/// invalid config, an empty rating list, a user or item index out of range or a non-finite rating, and
/// when the RMSE stops being finite (learning rate too large).
pub fn factorise(
    ratings: &[Rating],
    n_users: usize,
    n_items: usize,
    config: &FactorConfig,
    progress: &mut dyn FnMut(Step),
) -> Result<Factors, String> {
    validate(ratings, (n_users, n_items), config)?;
    let mut rng = Rng::new(config.seed);
    let global_mean = ratings.iter().map(|rating| rating.value).sum::<f64>() / ratings.len() as f64;
    let mut user_factors = Matrix::zeros(n_users, config.factors);
    let mut item_factors = Matrix::zeros(n_items, config.factors);
    for value in user_factors.data.iter_mut().chain(item_factors.data.iter_mut()) {
        *value = rng.normal() * config.init_std;
    }
    let mut model = Factors { global_mean, user_bias: vec![0.0; n_users], item_bias: vec![0.0; n_items], user_factors, item_factors };
    let mut order: Vec<usize> = (0..ratings.len()).collect();
    for epoch in 1..=config.epochs {
        rng.shuffle(&mut order);
        let squared_error_sum: f64 = order.iter().map(|&rating_idx| sgd_step(&mut model, &ratings[rating_idx], config)).sum();
        let rmse = (squared_error_sum / ratings.len() as f64).sqrt();
        if !rmse.is_finite() {
            let learning_rate = config.learning_rate;
            return Err(format!("training diverged in epoch {epoch}: the RMSE is {rmse}; lower learning_rate (now {learning_rate})"));
        }
        if should_report(epoch, config.epochs) {
            progress(Step { done: epoch, total: config.epochs, loss: rmse });
        }
    }
    Ok(model)
}

/// Updates the model for one rating and returns the squared error before the update.
fn sgd_step(model: &mut Factors, rating: &Rating, config: &FactorConfig) -> f64 {
    let (user, item) = (rating.user, rating.item);
    let (learning_rate, l2) = (config.learning_rate, config.l2);
    let factors = config.factors;
    let user_row = &mut model.user_factors.data[user * factors..(user + 1) * factors];
    let item_row = &mut model.item_factors.data[item * factors..(item + 1) * factors];
    let prediction = model.global_mean + model.user_bias[user] + model.item_bias[item] + dot(user_row, item_row);
    let error = rating.value - prediction;
    model.user_bias[user] += learning_rate * (error - l2 * model.user_bias[user]);
    model.item_bias[item] += learning_rate * (error - l2 * model.item_bias[item]);
    for (user_value, item_value) in user_row.iter_mut().zip(item_row.iter_mut()) {
        let (old_user_value, old_item_value) = (*user_value, *item_value);
        *user_value += learning_rate * (error * old_item_value - l2 * old_user_value);
        *item_value += learning_rate * (error * old_user_value - l2 * old_item_value);
    }
    error * error
}

/// Checks the ratings against `(n_users, n_items)` and the config, naming the field and value at fault.
fn validate(ratings: &[Rating], dimensions: (usize, usize), config: &FactorConfig) -> Result<(), String> {
    let (n_users, n_items) = dimensions;
    if config.epochs == 0 {
        return Err("epochs must be > 0, got 0".to_string());
    }
    check_positive("learning_rate", config.learning_rate)?;
    check_non_negative("l2", config.l2)?;
    check_non_negative("init_std", config.init_std)?;
    if ratings.is_empty() {
        return Err("ratings is empty; factorisation needs at least one rating".to_string());
    }
    for (rating_idx, rating) in ratings.iter().enumerate() {
        if rating.user >= n_users {
            return Err(format!("ratings[{rating_idx}].user is {} but n_users is {n_users}", rating.user));
        }
        if rating.item >= n_items {
            return Err(format!("ratings[{rating_idx}].item is {} but n_items is {n_items}", rating.item));
        }
        if !rating.value.is_finite() {
            return Err(format!("ratings[{rating_idx}].value is {}; ratings must be finite", rating.value));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn training_rmse(model: &Factors, ratings: &[Rating]) -> f64 {
        let sum: f64 = ratings.iter().map(|rating| (model.predict(rating.user, rating.item) - rating.value).powi(2)).sum();
        (sum / ratings.len() as f64).sqrt()
    }

    /// 20 users × 15 items, 210 of the 300 pairs observed, ratings `3 + u · v` with 2-dimensional u and v.
    fn rank_two_ratings() -> Vec<Rating> {
        let mut ratings = Vec::new();
        for user in 0..20 {
            for item in 0..15 {
                if (user * 7 + item * 3) % 10 >= 7 {
                    continue;
                }
                let user_vector = [((user + 1) as f64).sin(), ((2 * user + 1) as f64).cos()];
                let item_vector = [(item as f64 + 0.5).cos(), ((3 * item) as f64).sin()];
                let value = 3.0 + user_vector[0] * item_vector[0] + user_vector[1] * item_vector[1];
                ratings.push(Rating { user, item, value });
            }
        }
        ratings
    }

    #[test]
    fn biases_alone_fit_additive_ratings() {
        // r = 3 + b_u + b_i exactly, every pair observed; a reference port of this trainer reaches RMSE ~0.
        let user_effects: Vec<f64> = (0..10).map(|user| 0.1 * ((user * 7) % 5) as f64 - 0.2).collect();
        let item_effects: Vec<f64> = (0..8).map(|item| 0.15 * ((item * 3) % 4) as f64 - 0.2).collect();
        let mut ratings = Vec::new();
        for (user, user_effect) in user_effects.iter().enumerate() {
            for (item, item_effect) in item_effects.iter().enumerate() {
                ratings.push(Rating { user, item, value: 3.0 + user_effect + item_effect });
            }
        }
        let config = FactorConfig { factors: 0, epochs: 200, learning_rate: 0.05, l2: 0.0, seed: 1, init_std: 0.1 };
        let model = factorise(&ratings, 10, 8, &config, &mut |_| {}).unwrap();
        assert!(training_rmse(&model, &ratings) < 1e-6, "rmse {}", training_rmse(&model, &ratings));
        // Differences between users are recovered (the split of the mean between b_u and b_i is not unique).
        let difference = model.user_bias[1] - model.user_bias[0];
        assert!((difference - (user_effects[1] - user_effects[0])).abs() < 1e-6);
    }

    #[test]
    fn two_factors_fit_rank_two_data_the_baseline_cannot() {
        // Reference port: RMSE ~1.5e-4 with 2 factors, ~0.687 with biases only.
        let ratings = rank_two_ratings();
        let config = FactorConfig { factors: 2, epochs: 300, learning_rate: 0.02, l2: 0.0, seed: 0, init_std: 0.1 };
        let mut reports = Vec::new();
        let model = factorise(&ratings, 20, 15, &config, &mut |step| reports.push(step)).unwrap();
        assert!(training_rmse(&model, &ratings) < 0.01, "rmse {}", training_rmse(&model, &ratings));
        let baseline = factorise(&ratings, 20, 15, &FactorConfig { factors: 0, ..config.clone() }, &mut |_| {}).unwrap();
        assert!(training_rmse(&baseline, &ratings) > 0.5);
        // 300 epochs report every third: 100 reports, the first after epoch 3, the last after epoch 300.
        assert_eq!(reports.len(), 100);
        assert_eq!(reports.last().map(|step| (step.done, step.total)), Some((300, 300)));
        assert!(reports[0].loss > 0.3 && reports[99].loss < 0.01, "{:?} {:?}", reports[0], reports[99]);
    }

    #[test]
    fn training_is_deterministic_for_a_seed() {
        let ratings = rank_two_ratings();
        let config = FactorConfig { factors: 3, epochs: 5, learning_rate: 0.01, l2: 0.02, seed: 7, init_std: 0.1 };
        let first = factorise(&ratings, 20, 15, &config, &mut |_| {}).unwrap();
        let second = factorise(&ratings, 20, 15, &config, &mut |_| {}).unwrap();
        assert_eq!(first.user_factors, second.user_factors);
        assert_eq!(first.item_bias, second.item_bias);
        let third = factorise(&ratings, 20, 15, &FactorConfig { seed: 8, ..config }, &mut |_| {}).unwrap();
        assert_ne!(first.user_factors, third.user_factors);
    }

    #[test]
    fn unknown_users_and_items_fall_back_to_biases() {
        let model = Factors {
            global_mean: 3.5,
            user_bias: vec![0.5],
            item_bias: vec![-0.25],
            user_factors: Matrix::from_rows(&[vec![1.0, 2.0]]),
            item_factors: Matrix::from_rows(&[vec![0.5, 0.25]]),
        };
        // Known pair: 3.5 + 0.5 - 0.25 + (0.5 + 0.5) = 4.75.
        assert_eq!(model.predict(0, 0), 4.75);
        assert_eq!(model.predict(7, 0), 3.25);
        assert_eq!(model.predict(0, 7), 4.0);
        assert_eq!(model.predict(7, 7), 3.5);
        assert_eq!(model.predict_clipped(0, 0, (1.0, 4.5)), 4.5);
    }

    #[test]
    fn bad_input_is_named() {
        let ratings = [Rating { user: 0, item: 0, value: 4.0 }, Rating { user: 2, item: 1, value: 3.0 }];
        let config = FactorConfig::default();
        let error = factorise(&ratings, 2, 2, &config, &mut |_| {}).unwrap_err();
        assert!(error.contains("ratings[1].user is 2"), "{error}");
        let error = factorise(&ratings, 3, 1, &config, &mut |_| {}).unwrap_err();
        assert!(error.contains("ratings[1].item is 1"), "{error}");
        let nan = [Rating { user: 0, item: 0, value: f64::NAN }];
        assert!(factorise(&nan, 1, 1, &config, &mut |_| {}).unwrap_err().contains("ratings[0].value"));
        assert!(factorise(&[], 1, 1, &config, &mut |_| {}).unwrap_err().contains("empty"));
        let no_epochs = FactorConfig { epochs: 0, ..config.clone() };
        assert!(factorise(&ratings, 3, 3, &no_epochs, &mut |_| {}).unwrap_err().contains("epochs"));
        let no_rate = FactorConfig { learning_rate: -0.1, ..config.clone() };
        assert!(factorise(&ratings, 3, 3, &no_rate, &mut |_| {}).unwrap_err().contains("learning_rate"));
        let huge_rate = FactorConfig { learning_rate: 1e10, factors: 2, epochs: 50, ..config };
        let error = factorise(&ratings, 3, 3, &huge_rate, &mut |_| {}).unwrap_err();
        assert!(error.contains("diverged"), "{error}");
    }
}
