//! The threads that run a native runtime (ONNX Runtime sessions, llama.cpp contexts), counted so that the
//! process waits for them before it exits.
//!
//! At exit the C++ runtimes' static destructors run on the main thread; a worker still loading a session or
//! dropping one at that moment crashes the process (a SIGSEGV after a clean SIGTERM, seen when a load was in
//! flight at shutdown). Each such thread holds a [`RuntimeThread`] from before it is spawned until after its
//! runtime objects are dropped, and the server calls [`wait_idle`] after its async runtime is gone.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

static LIVE: Mutex<usize> = Mutex::new(0);
static CHANGED: Condvar = Condvar::new();

/// Counts one runtime thread while it lives: take it before spawning the thread and move it in, declared
/// before the runtime objects so that it drops after them.
#[derive(Debug)]
pub struct RuntimeThread(());

impl RuntimeThread {
    /// Counts a new runtime thread.
    pub fn register() -> RuntimeThread {
        *LIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
        RuntimeThread(())
    }
}

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        let mut live = LIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *live = live.saturating_sub(1);
        CHANGED.notify_all();
    }
}

/// Runtime threads alive now.
pub fn live() -> usize {
    *LIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits until no runtime thread is alive, at most `timeout`; returns how many still are.
pub fn wait_idle(timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    let mut live = LIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    while *live > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        live = CHANGED.wait_timeout(live, left).unwrap_or_else(std::sync::PoisonError::into_inner).0;
    }
    *live
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_registered_threads_and_gives_up_at_the_timeout() {
        let before = live();
        let guard = RuntimeThread::register();
        assert_eq!(wait_idle(Duration::from_millis(20)), before + 1, "still alive at the timeout");
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(guard);
        });
        assert_eq!(wait_idle(Duration::from_secs(5)), before);
        thread.join().unwrap();
    }
}
