//! Metering: one usage event per admitted request, written to the database in batches.
//!
//! [`UsageGuard`] is created when a request is admitted and emits its event when dropped, so requests that
//! fail, time out or lose their client are counted like the others. A writer task prices the events by
//! their version's price, then writes them in one transaction every flush interval (or sooner when many
//! are waiting). [`Meter::flush`] writes what is pending (graceful shutdown calls it); a crash loses at most
//! the events of the last interval.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::UsageCell;
use tokio::sync::{mpsc, oneshot};
use yunmo_registry::{Registry, UsageEvent};
use yunmo_types::Price;

use crate::limits::{Admission, Limiter};

/// Events waiting past this many are written at once.
const BATCH: usize = 2048;

/// Events emitted and not yet taken by the writer. A request's event is pushed here under a short lock
/// (not sent through a channel, which would wake the writer task once per request); the writer takes them
/// all every flush interval, or sooner when [`BATCH`] are waiting.
#[derive(Default)]
struct Outbox {
    events: std::sync::Mutex<Vec<UsageEvent>>,
    full: tokio::sync::Notify,
}

impl Outbox {
    fn push(&self, event: UsageEvent) {
        let mut events = self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        events.push(event);
        if events.len() == BATCH {
            self.full.notify_one();
        }
    }

    fn take(&self) -> Vec<UsageEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

/// The sending side of the usage writer.
#[derive(Clone)]
pub struct Meter {
    outbox: Arc<Outbox>,
    /// Flush requests; the writer ends when every `Meter` is gone.
    flushes: mpsc::UnboundedSender<oneshot::Sender<usize>>,
}

impl Meter {
    /// Starts the writer task on the current runtime.
    pub fn start(registry: Registry, interval: Duration) -> Meter {
        let (flushes, receiver) = mpsc::unbounded_channel();
        let outbox = Arc::new(Outbox::default());
        tokio::spawn(writer(registry, outbox.clone(), receiver, interval));
        Meter { outbox, flushes }
    }

    fn send(&self, event: UsageEvent) {
        self.outbox.push(event);
    }

    /// Writes every event sent so far and waits until they are stored. `Err(n)`: `n` events could not be
    /// written (the database failed); they stay queued and are retried at every flush interval.
    pub async fn flush(&self) -> Result<(), usize> {
        let (done, wait) = oneshot::channel();
        self.flushes.send(done).map_err(|_| 0usize)?;
        match wait.await {
            Ok(0) => Ok(()),
            Ok(unwritten) => Err(unwritten),
            Err(_) => Err(0),
        }
    }
}

async fn writer(registry: Registry, outbox: Arc<Outbox>, mut flushes: mpsc::UnboundedReceiver<oneshot::Sender<usize>>, interval: Duration) {
    let mut pending: Vec<UsageEvent> = Vec::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // While the database fails, a full batch waits for the next tick instead of retrying at once.
    let mut failing = false;
    loop {
        // What woke the writer: a flush request (answered once written), the last Meter gone, a full batch
        // or the interval. Each writes everything emitted so far.
        let (flush, last) = tokio::select! {
            request = flushes.recv() => {
                let last = request.is_none();
                (request, last)
            },
            () = outbox.full.notified(), if !failing => (None, false),
            _ = ticker.tick() => (None, false),
        };
        pending.extend(outbox.take());
        failing = !write(&registry, &mut pending).await;
        if let Some(done) = flush {
            let _ = done.send(pending.len());
        }
        if last {
            if !pending.is_empty() {
                tracing::error!(events = pending.len(), "The usage writer stopped with events it could not write; they are lost.");
            }
            return;
        }
    }
}

/// Prices and stores `pending`; on a database error keeps them for the next try. Whether all are stored.
async fn write(registry: &Registry, pending: &mut Vec<UsageEvent>) -> bool {
    if pending.is_empty() {
        return true;
    }
    let mut prices: HashMap<(String, u64), Option<Price>> = HashMap::new();
    for event in pending.iter_mut() {
        let key = (event.model.clone(), event.version);
        if !prices.contains_key(&key) {
            let price = match event.version {
                0 => None,
                version => match registry.get_version(&event.model, version).await {
                    Ok(record) => record.config.price,
                    // A price that cannot be read now is not a price of zero: write nothing, try again later.
                    Err(error) if error.is_unavailable() => {
                        tracing::error!(%error, events = pending.len(), "Cannot price usage events; they are kept and retried at the next flush.");
                        return false;
                    }
                    // The version is gone (deleted since): its requests are recorded without a cost.
                    Err(_) => None,
                },
            };
            prices.insert(key.clone(), price);
        }
        event.cost = prices[&key].map_or(0.0, |price| price.cost(event.input_tokens, event.output_tokens, event.compute_ms));
    }
    match registry.insert_usage(pending).await {
        Ok(()) => {
            pending.clear();
            true
        }
        Err(error) => {
            tracing::error!(%error, events = pending.len(), "Cannot write usage events; they are kept and retried at the next flush.");
            false
        }
    }
}

/// Held for the life of an admitted request; emits its usage event when dropped.
pub struct UsageGuard {
    cell: UsageCell,
    meter: Meter,
    limiter: Arc<Limiter>,
    admission: Admission,
    started: Instant,
}

impl UsageGuard {
    pub(crate) fn new(cell: UsageCell, meter: Meter, limiter: Arc<Limiter>, admission: Admission) -> UsageGuard {
        UsageGuard { cell, meter, limiter, admission, started: Instant::now() }
    }

    /// The request's usage record, for the layers that fill it in.
    pub fn cell(&self) -> &UsageCell {
        &self.cell
    }

    /// Milliseconds since admission.
    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

impl Drop for UsageGuard {
    fn drop(&mut self) {
        let event = self.cell.take();
        self.limiter.charge(&self.admission, event.input_tokens + event.output_tokens, event.compute_ms);
        self.meter.send(event);
    }
}
