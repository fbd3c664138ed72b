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
