//! Dynamic batching for Yunmo.
//!
//! [`BatchPolicy`] decides, from the requests waiting for one model version, when to hand a batch to a
//! worker and which requests go in it. It is a plain struct driven by the caller's clock, so its rules are
//! unit-tested directly (with tokio's paused time). [`merge`] and [`split`] join request tensors along the
//! first dimension and cut the outputs back per request. This crate runs nothing itself: the batching task
//! that owns a policy lives in `yunmo-service`.
#![warn(missing_docs)]

mod merge;
mod policy;

pub use merge::{BatchKey, MergeError, batch_key, merge, split};
pub use policy::{BatchPolicy, Decision, PolicyConfig};
