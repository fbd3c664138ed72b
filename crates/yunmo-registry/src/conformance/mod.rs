//! The conformance suite every store implementation passes: [`metadata`], [`jobs`] and [`responses`] for a
//! [`crate::MetadataStore`], [`artifacts`] for a [`crate::ArtifactStore`].
//!
//! Each function takes a new, empty store and panics (with what differed) where the store breaks the
//! trait's contract. The crate's tests run it on SQLite, a local folder and a sealed local folder; a new
//! implementation (PostgreSQL, S3) adds one test that calls it.

mod artifacts;
mod jobs;
mod metadata;
mod responses;

pub use artifacts::artifacts;
pub use jobs::jobs;
pub use metadata::metadata;
pub use responses::responses;
