//! What the server and a job's child process say to each other. The server writes a [`TaskSpec`] to a
//! file and starts `yunmo job-run FILE`; the child prints one [`TaskMessage`] per line on its standard
//! output, ending with `done` or `failed`, and writes its result under `output`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What a job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Train a model from a CSV file into a new version.
    Train,
    /// Make a smaller, faster version from an existing one (quantisation, pruning), with a report.
    #[serde(alias = "optimize")]
    Optimise,
}

impl JobKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Train => "train",
            JobKind::Optimise => "optimise",
        }
    }

    /// The kind a stored name names.
    pub fn parse(text: &str) -> Option<JobKind> {
        match text {
            "train" => Some(JobKind::Train),
            "optimise" => Some(JobKind::Optimise),
            _ => None,
        }
    }
}

/// The work handed to a child process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The job's id (for log lines).
    pub job: String,
    /// What to do.
    pub kind: JobKind,
    /// The job's options (for training, [`yunmo_train::TrainParams`]).
    pub params: serde_json::Value,
    /// The training file, in plaintext.
    pub training: Option<PathBuf>,
    /// The validation file, in plaintext.
    pub validation: Option<PathBuf>,
    /// The parent version's file, in plaintext (optimisation).
    #[serde(default)]
    pub parent: Option<PathBuf>,
    /// Rows to probe an optimisation with: the data the parent version was trained on, when it was.
    #[serde(default)]
    pub probe: Option<PathBuf>,
    /// The column of `probe` the parent learnt to predict (its evaluation is measured again on both).
    #[serde(default)]
    pub probe_target: Option<String>,
    /// Sample inputs to calibrate static quantisation with (V2 inference requests in JSON).
    #[serde(default)]
    pub calibration: Option<PathBuf>,
    /// The ONNX Runtime library the server runs (optimisation reports run both models on it).
    #[serde(default)]
    pub onnx_library: Option<PathBuf>,
    /// Where to write the result.
    pub output: PathBuf,
    /// Most data rows a file may have.
    pub max_rows: usize,
    /// Most columns a file may have.
    pub max_columns: usize,
}

/// One line of a child's output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskMessage {
    /// How far it is.
    Progress {
        /// Share done, 0 to 1.
        fraction: f64,
        /// What it is doing.
        message: String,
        /// The training loss now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        loss: Option<f64>,
    },
    /// Finished: the new version's file is `output/artifact`.
    Done {
        /// File name under the spec's `output`.
        artifact: String,
        /// Evaluation metrics.
        metrics: BTreeMap<String, f64>,
        /// Class labels by index (classifiers).
        #[serde(default)]
        labels: Vec<String>,
        /// Everything else worth keeping with the version (rows, features, a report).
        #[serde(default)]
        details: serde_json::Value,
        /// Inputs whose values must be among these (the version's `known_values`).
        #[serde(default)]
        known_values: BTreeMap<String, Vec<String>>,
    },
    /// Could not finish; the message says why (shown to the job's owner).
    Failed {
        /// Why.
        error: String,
    },
}
