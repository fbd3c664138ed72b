//! Models learnt from tabular data: ridge and logistic regression, MLP classifiers and regressors and
//! k-means, trained in Rust from a CSV file, evaluated on held-out rows and exported as ONNX graphs that
//! take the raw column values (see [`export`]).
//!
//! Pure: no IO beyond the bytes handed in. The server runs [`train`] in a child process of its own binary,
//! so a crash or a cancel cannot take the server down.

// Numerical loops index several arrays with one counter; iterators would hide that.
#![allow(clippy::needless_range_loop)]

pub mod dataset;
pub mod export;
pub mod graph;
pub mod params;
mod recommend;
pub mod solvers;
mod supervise;

use std::collections::BTreeMap;

pub use dataset::{CsvLimits, Encoding, Feature, Table, parse_csv};
pub use params::{Family, TrainParams};

/// Why training could not finish.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TrainError {
    /// The file is not a usable CSV table.
    #[error("{0}")]
    File(String),
    /// A cell cannot be used: names the line of the file and the column.
    #[error("line {line}, column '{column}': {message}")]
    Data {
        /// 1-based line of the file (the header is line 1).
        line: usize,
        /// Column name.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// An option is out of bounds or does not fit the data.
    #[error("{field}: {message}")]
    Param {
        /// The option, as `params.<name>`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The solver could not find a model (e.g. collinear columns without a penalty).
    #[error("training failed: {0}")]
    Failed(String),
}

impl TrainError {
    /// An option error.
    pub fn param(field: &str, message: String) -> TrainError {
        TrainError::Param { field: field.to_string(), message }
    }
}

/// The rows to learn from and, optionally, separate rows to validate on (otherwise a share of the training
/// rows is held out).
pub struct Dataset<'a> {
    /// The training file.
    pub table: &'a Table,
    /// A validation file with the same columns.
    pub validation: Option<&'a Table>,
}

/// Progress of a training run, for the job's events and progress bar.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// Share done, 0 to 1.
    pub fraction: f64,
    /// What is happening.
    pub message: String,
    /// The training loss now, when the trainer reports one.
    pub loss: Option<f64>,
}

/// A trained, evaluated model.
pub struct Trained {
    /// The ONNX model, encoded.
    pub onnx: Vec<u8>,
    /// Evaluation on the validation rows (or, with none, on the training rows, prefixed `train_`).
    pub metrics: BTreeMap<String, f64>,
    /// Class labels by index (classifiers; empty otherwise).
    pub labels: Vec<String>,
    /// The features as the graph takes them.
    pub features: Vec<Feature>,
    /// Rows learnt from.
    pub train_rows: usize,
    /// Rows evaluated on.
    pub validation_rows: usize,
    /// Inputs whose values must be among these (recommenders: the training ids), checked by the server
    /// before the graph runs.
    pub known_values: BTreeMap<String, Vec<String>>,
    /// What else the family reports (recommenders: users, items, cold-start rows).
    pub extra: serde_json::Value,
}

/// Trains, evaluates and exports the model `params` describe.
pub fn train(dataset: &Dataset<'_>, params: &TrainParams, progress: &mut dyn FnMut(Progress)) -> Result<Trained, TrainError> {
    params.validate()?;
    if let Some(validation) = dataset.validation
        && validation.columns != dataset.table.columns
    {
        return Err(TrainError::File(format!(
            "the validation file's columns ({}) differ from the training file's ({})",
            validation.columns.join(", "),
            dataset.table.columns.join(", ")
        )));
    }
    for (field, column) in params.columns() {
        dataset.table.column(column, field)?;
    }
    let split = supervise::split(dataset, params)?;
    progress(Progress {
        fraction: 0.05,
        message: format!("Read {} training and {} validation rows.", split.train_rows.len(), split.validation_len()),
        loss: None,
    });
    if params.family == Family::MatrixFactorization {
        return recommend::fit(&split, params, progress);
    }
    supervise::fit(&split, params, progress)
}
