//! Drift monitoring: whether what a model version receives (and answers) still looks like what it saw
//! first, or like a reference sample uploaded for it.
//!
//! A [`Monitor`] per version takes [`Sample`]s, built from a request's tensors by [`extract`]: numeric
//! features are binned at their baseline's quantiles (plus below-range, above-range and non-finite bins)
//! and scored with PSI and the Jensen-Shannon distance; categorical ones (BYTES inputs, the class an output's
//! scores pick, an LLM's finish reason) keep their baseline's most frequent values plus "other" and are
//! scored with the Jensen-Shannon distance and L∞; embeddings compare the mean vector's cosine distance.
//! Windows tumble (`window_s`) and are judged only past `min_count` rows. Pure logic, no threads or IO:
//! the service feeds it off the request path.

pub mod draws;
pub mod extract;
pub mod feature;
pub mod monitor;
pub mod report;
pub mod score;
pub mod settings;

pub use monitor::{Monitor, Observation, Sample, Source};
pub use report::{Report, State};
pub use settings::DriftSettings;
