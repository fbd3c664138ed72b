//! The engine's panic guard on the real SmolLM2-135M-Instruct GGUF: a panic inside a decode step fails the
//! sequences of that step with an error, frees their slots, and the engine goes on serving. Its own test
//! binary, because the fault switch is process-wide.

use std::sync::atomic::Ordering;

mod common;

use common::model_path;
use yunmo_backend::{BackendFactory, GenerateEvent, GenerateRequest};
use yunmo_backend_gguf::{GgufConfig, GgufFactory, fault};
use yunmo_types::{FinishReason, GenerateParams};

/// The events of one stream, in order.
fn events(receiver: flume::Receiver<GenerateEvent>) -> Vec<GenerateEvent> {
    receiver.iter().collect()
}

#[test]
fn a_panic_in_a_step_fails_its_sequences_and_the_engine_serves_on() {
    let _serial = common::serial();
    let config = GgufConfig {
        threads: 2,
        max_sequences: 2,
        context_per_sequence: 256,
        batch_tokens: 64,
        queue_capacity: 4,
        gpu_layers: 0,
        prefix_cache: true,
        prefill_chunk: 32,
        options: Default::default(),
    };
    let engine = GgufFactory::new(config).unwrap().load_generate(&model_path(), &Default::default()).unwrap();
    let prompt = engine.tokenize("<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n", true).unwrap();
    let request = || GenerateRequest {
        prompt: prompt.clone(),
        params: GenerateParams { max_tokens: 8, temperature: 0.0, ..Default::default() },
        grammar: None,
    };

    // The engine is idle, so the request below is the first in the step that panics.
    fault::PANIC_NEXT_STEP.store(true, Ordering::SeqCst);
    let failed = events(engine.submit(request()).unwrap());
    match failed.last() {
        Some(GenerateEvent::Failed(error)) => {
            assert!(error.to_string().contains("panicked") && error.to_string().contains("fault injected"), "{error}")
        }
        other => panic!("the stream of the panicked step must end with Failed, got {other:?}"),
    }
    assert!(!fault::PANIC_NEXT_STEP.load(Ordering::SeqCst), "the switch is spent");

    // Its slot is free and the KV cache empty; the next requests, two at once, are served in full.
    let stats = engine.stats();
    assert_eq!((stats.running, stats.kv_cells_used), (0, 0), "{stats:?}");
    let receivers = [engine.submit(request()).unwrap(), engine.submit(request()).unwrap()];
    for receiver in receivers {
        let served = events(receiver);
        assert!(
            matches!(served.last(), Some(GenerateEvent::Finished { reason: FinishReason::Length | FinishReason::Stop, .. })),
            "after the panic the engine must serve: {served:?}"
        );
    }
}
