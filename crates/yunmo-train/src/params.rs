//! What a training job is asked to do: the family and its options, as sent in `params` of
//! `POST /api/v1/jobs`. Unknown fields are refused; every bound is checked with the field named.

use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::dataset::Encoding;

/// The model families Yunmo trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Ridge regression (L2-penalised least squares, closed form).
    LinearRegression,
    /// Logistic regression, binary or multinomial (L-BFGS).
    LogisticRegression,
    /// A multilayer perceptron classifier (ReLU, softmax, Adam).
    MlpClassifier,
    /// A multilayer perceptron regressor (ReLU, squared error, Adam).
    MlpRegressor,
    /// K-means clustering (k-means++, Lloyd).
    Kmeans,
    /// A recommender: biased matrix factorisation of (user, item, rating) rows (SGD).
    MatrixFactorization,
}

impl Family {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::LinearRegression => "linear_regression",
            Family::LogisticRegression => "logistic_regression",
            Family::MlpClassifier => "mlp_classifier",
            Family::MlpRegressor => "mlp_regressor",
            Family::Kmeans => "kmeans",
            Family::MatrixFactorization => "matrix_factorization",
        }
    }

    /// Whether it learns a target column.
    pub fn supervised(self) -> bool {
        !matches!(self, Family::Kmeans)
    }

    /// Whether its target is a class.
    pub fn classifies(self) -> bool {
        matches!(self, Family::LogisticRegression | Family::MlpClassifier)
    }
}

/// The options of a training job. Defaults follow scikit-learn's where it has the same model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    /// What to train.
    pub family: Family,
    /// The column to predict (not for k-means).
    #[serde(default)]
    pub target: Option<String>,
    /// Feature columns (default: every column but the target).
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// Columns to treat as categories even when they hold numbers (columns with text are categories
    /// anyway).
    #[serde(default)]
    pub categorical: Vec<String>,
    /// How categories are encoded inside the graph.
    #[serde(default)]
    pub encoding: Encoding,
    /// Share of rows held out for validation when no validation file is given (default 0.2).
    #[serde(default)]
    pub validation_fraction: Option<f64>,
    /// Seed of the split and of the trainers' randomness.
    #[serde(default)]
    pub seed: u64,
    /// L2 penalty: ridge's alpha; 1/C of logistic regression; MLP weight decay (alpha). Defaults 1, 1, 1e-4.
    #[serde(default)]
    pub l2: Option<f64>,
    /// Iterations of L-BFGS (logistic, default 200) or Lloyd (k-means, default 300).
    #[serde(default)]
    pub max_iter: Option<u32>,
    /// Passes over the training rows (MLP, default 200).
    #[serde(default)]
    pub epochs: Option<u32>,
    /// Adam's step size (MLP, default 0.001).
    #[serde(default)]
    pub learning_rate: Option<f64>,
    /// Rows per mini-batch (MLP, default min(200, rows)).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Hidden layer widths (MLP, default [100]).
    #[serde(default)]
    pub hidden_layers: Option<Vec<usize>>,
    /// Number of clusters (k-means, default 8).
    #[serde(default)]
    pub clusters: Option<usize>,
    /// Runs of k-means from different seeds; the best is kept (default 4).
    #[serde(default)]
    pub restarts: Option<u32>,
    /// The user id column (matrix factorisation, default `user`).
    #[serde(default)]
    pub user_column: Option<String>,
    /// The item id column (matrix factorisation, default `item`).
    #[serde(default)]
    pub item_column: Option<String>,
    /// Latent factors per user and item (matrix factorisation, default 100).
    #[serde(default)]
    pub factors: Option<usize>,
    /// Items the recommender's `top_items` output lists (default 10).
    #[serde(default)]
    pub top_k: Option<usize>,
}

/// Upper bounds of the options.
pub mod bounds {
    /// Most epochs.
    pub const MAX_EPOCHS: u32 = 100_000;
    /// Most iterations.
    pub const MAX_ITER: u32 = 100_000;
    /// Most hidden layers.
    pub const MAX_LAYERS: usize = 8;
    /// Widest hidden layer.
    pub const MAX_WIDTH: usize = 4096;
    /// Most clusters.
    pub const MAX_CLUSTERS: usize = 1024;
}

fn positive(field: &str, value: Option<f64>) -> Result<(), TrainError> {
    match value {
        Some(value) if !(value.is_finite() && value > 0.0) => {
            Err(TrainError::param(field, format!("must be a number above 0, got {value}")))
        }
        _ => Ok(()),
    }
}

fn at_most(field: &str, value: Option<u64>, low: u64, high: u64) -> Result<(), TrainError> {
    match value {
        Some(value) if value < low || value > high => {
            Err(TrainError::param(field, format!("must be between {low} and {high}, got {value}")))
        }
        _ => Ok(()),
    }
}

impl TrainParams {
    /// Checks the options against the family and the bounds (columns are checked against the file later).
    pub fn validate(&self) -> Result<(), TrainError> {
        match (self.family.supervised(), &self.target) {
            (true, None) => {
                return Err(TrainError::param("params.target", format!("{} needs the column to predict", self.family.as_str())));
            }
            (false, Some(_)) => return Err(TrainError::param("params.target", "k-means learns no target; leave it out".into())),
            _ => {}
        }
        if let Some(fraction) = self.validation_fraction
            && !(0.0..=0.5).contains(&fraction)
        {
            return Err(TrainError::param("params.validation_fraction", format!("must be between 0 and 0.5, got {fraction}")));
        }
        if let Some(l2) = self.l2
            && !(l2.is_finite() && l2 >= 0.0)
        {
            return Err(TrainError::param("params.l2", format!("must be a number of at least 0, got {l2}")));
        }
        positive("params.learning_rate", self.learning_rate)?;
        at_most("params.max_iter", self.max_iter.map(u64::from), 1, bounds::MAX_ITER.into())?;
        at_most("params.epochs", self.epochs.map(u64::from), 1, bounds::MAX_EPOCHS.into())?;
        at_most("params.batch_size", self.batch_size.map(|n| n as u64), 1, 1 << 20)?;
        at_most("params.clusters", self.clusters.map(|n| n as u64), 1, bounds::MAX_CLUSTERS as u64)?;
        at_most("params.restarts", self.restarts.map(u64::from), 1, 100)?;
        if let Some(layers) = &self.hidden_layers {
            at_most("params.hidden_layers", Some(layers.len() as u64), 1, bounds::MAX_LAYERS as u64)?;
            for (index, &width) in layers.iter().enumerate() {
                at_most(&format!("params.hidden_layers[{index}]"), Some(width as u64), 1, bounds::MAX_WIDTH as u64)?;
            }
        }
        let recommends = self.family == Family::MatrixFactorization;
        at_most("params.factors", self.factors.map(|n| n as u64), 1, bounds::MAX_WIDTH as u64)?;
        at_most("params.top_k", self.top_k.map(|n| n as u64), 1, 1000)?;
        let family_only = [
            ("params.max_iter", self.max_iter.is_some(), matches!(self.family, Family::LogisticRegression | Family::Kmeans)),
            ("params.epochs", self.epochs.is_some(), self.family.as_str().starts_with("mlp") || recommends),
            ("params.learning_rate", self.learning_rate.is_some(), self.family.as_str().starts_with("mlp") || recommends),
            ("params.user_column", self.user_column.is_some(), recommends),
            ("params.item_column", self.item_column.is_some(), recommends),
            ("params.factors", self.factors.is_some(), recommends),
            ("params.top_k", self.top_k.is_some(), recommends),
            ("params.features", self.features.is_some(), !recommends),
            ("params.categorical", !self.categorical.is_empty(), !recommends),
            ("params.batch_size", self.batch_size.is_some(), self.family.as_str().starts_with("mlp")),
            ("params.hidden_layers", self.hidden_layers.is_some(), self.family.as_str().starts_with("mlp")),
            ("params.clusters", self.clusters.is_some(), self.family == Family::Kmeans),
            ("params.restarts", self.restarts.is_some(), self.family == Family::Kmeans),
            ("params.l2", self.l2.is_some(), self.family != Family::Kmeans),
        ];
        for (field, given, applies) in family_only {
            if given && !applies {
                return Err(TrainError::param(field, format!("does not apply to {}", self.family.as_str())));
            }
        }
        Ok(())
    }

    /// The columns the job reads, to check against a file's header before queuing it.
    pub fn columns(&self) -> Vec<(&'static str, &str)> {
        let mut columns: Vec<(&'static str, &str)> = Vec::new();
        if let Some(target) = &self.target {
            columns.push(("params.target", target));
        }
        for feature in self.features.iter().flatten() {
            columns.push(("params.features", feature));
        }
        for name in &self.categorical {
            columns.push(("params.categorical", name));
        }
        if self.family == Family::MatrixFactorization {
            columns.push(("params.user_column", self.user_column.as_deref().unwrap_or("user")));
            columns.push(("params.item_column", self.item_column.as_deref().unwrap_or("item")));
        }
        columns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<TrainParams, String> {
        let params: TrainParams = serde_json::from_str(json).map_err(|error| error.to_string())?;
        params.validate().map_err(|error| error.to_string())?;
        Ok(params)
    }

    #[test]
    fn options_are_checked_with_the_field_named() {
        assert!(parse(r#"{"family": "linear_regression", "target": "y"}"#).is_ok());
        assert!(parse(r#"{"family": "linear_regression"}"#).unwrap_err().contains("params.target"));
        assert!(parse(r#"{"family": "kmeans", "target": "y"}"#).unwrap_err().contains("params.target"));
        assert!(
            parse(r#"{"family": "linear_regression", "target": "y", "l2": -1}"#)
                .unwrap_err()
                .contains("params.l2: must be a number of at least 0, got -1")
        );
        assert!(
            parse(r#"{"family": "mlp_classifier", "target": "y", "hidden_layers": [8, 0]}"#)
                .unwrap_err()
                .contains("params.hidden_layers[1]")
        );
        assert!(parse(r#"{"family": "linear_regression", "target": "y", "epochs": 3}"#).unwrap_err().contains("does not apply"));
        assert!(parse(r#"{"family": "linear_regression", "target": "y", "speed": 3}"#).unwrap_err().contains("unknown field"));
        assert!(parse(r#"{"family": "ridge", "target": "y"}"#).unwrap_err().contains("unknown variant"));
        assert!(
            parse(r#"{"family": "kmeans", "clusters": 0}"#).unwrap_err().contains("params.clusters: must be between 1 and 1024, got 0")
        );
    }
}
