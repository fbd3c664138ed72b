//! What the engine tests share.

use std::path::PathBuf;

/// The SmolLM2-135M-Instruct GGUF in the cache.
pub fn model_path() -> PathBuf {
    let cache = std::env::var_os("YUNMO_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/yunmo"));
    let path = cache.join("models/smollm2-135m-instruct-q4_1.gguf");
    assert!(path.exists(), "{} is missing: run scripts/fetch-assets.sh smollm (scripts/test.sh does)", path.display());
    path
}

/// Held by each test that runs an engine: llama.cpp's worker threads spin while they wait, so engines of
/// tests run side by side on a small machine starve each other (a 10 s test took 60 s, and timing checks
/// failed). One engine test at a time.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
