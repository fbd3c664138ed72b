//! What one admitted request used, filled in by whichever layer learns it (the transport knows bytes, the
//! service knows the version, tokens and timings). The auth layer's usage guard owns the cell and turns it
//! into one usage event when the request ends, however it ends.

use std::sync::{Arc, Mutex};

use yunmo_registry::UsageEvent;

/// A shared, fill-as-you-go usage record of one request.
#[derive(Debug, Clone, Default)]
pub struct UsageCell(Arc<Mutex<UsageEvent>>);

impl UsageCell {
    /// A cell starting from `event`.
    pub fn new(event: UsageEvent) -> Self {
        UsageCell(Arc::new(Mutex::new(event)))
    }

    fn with<R>(&self, change: impl FnOnce(&mut UsageEvent) -> R) -> R {
        let mut event = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut event)
    }

    /// The model and version that served the request.
    pub fn set_model(&self, model: &str, version: u64) {
        self.with(|event| {
            if event.model != model {
                event.model = model.to_string();
            }
            event.version = version;
        });
    }

    /// Adds prompt (input) and completion (output) tokens.
    pub fn add_tokens(&self, input: u64, output: u64) {
        self.with(|event| {
            event.input_tokens += input;
            event.output_tokens += output;
        });
    }

    /// Adds tensor elements.
    pub fn add_elements(&self, input: u64, output: u64) {
        self.with(|event| {
            event.input_elements += input;
            event.output_elements += output;
        });
    }

    /// Adds queue and compute time, in microseconds (stored as milliseconds, rounded up).
    pub fn add_time_us(&self, queue_us: u64, compute_us: u64) {
        self.with(|event| {
            event.queue_ms += queue_us.div_ceil(1000);
            event.compute_ms += compute_us.div_ceil(1000);
        });
    }

    /// Adds body bytes.
    pub fn add_bytes(&self, input: u64, output: u64) {
        self.with(|event| {
            event.bytes_in += input;
            event.bytes_out += output;
        });
    }

    /// Sets the outcome (`ok`, an error code, `cancelled`).
    pub fn set_outcome(&self, outcome: &'static str) {
        self.with(|event| event.outcome = outcome);
    }

    /// The record, taken out of the cell (when the request ends).
    pub fn take(&self) -> UsageEvent {
        self.with(std::mem::take)
    }
}
