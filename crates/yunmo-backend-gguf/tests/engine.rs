//! The engine on the real SmolLM2-135M-Instruct GGUF (fetched by `scripts/fetch-assets.sh smollm`).

use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::model_path;
use yunmo_backend::{BackendFactory, GenerateBackend, GenerateEvent, GenerateOptions, GenerateRequest};
use yunmo_backend_gguf::{GgufConfig, GgufFactory};
use yunmo_types::{FinishReason, FlashAttention, GenerateParams, KvCacheType};

fn engine(max_sequences: u32) -> Arc<dyn GenerateBackend> {
    let config = GgufConfig {
        threads: 2,
        max_sequences,
        context_per_sequence: 512,
        batch_tokens: 64,
        queue_capacity: 4,
        gpu_layers: 0,
        prefix_cache: true,
        prefill_chunk: 32,
        options: Default::default(),
    };
    GgufFactory::new(config).unwrap().load_generate(&model_path(), &Default::default()).unwrap()
}

fn greedy(max_tokens: u32) -> GenerateParams {
    GenerateParams { max_tokens, temperature: 0.0, ..GenerateParams::default() }
}

fn chat_prompt(question: &str) -> String {
    format!("<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
}

/// Collects a whole stream: (text, finish reason, completion tokens).
fn collect(receiver: flume::Receiver<GenerateEvent>) -> (String, FinishReason, u64) {
    let mut text = String::new();
    for event in receiver.iter() {
        match event {
            GenerateEvent::Chunk(chunk) => text.push_str(&chunk.text),
            GenerateEvent::Finished { reason, usage } => {
                return (text, reason, usage.completion_tokens);
            }
            GenerateEvent::Failed(error) => panic!("generation failed: {error}"),
        }
    }
    panic!("the stream ended without Finished")
}

#[test]
fn tokenizer_golden_ids_and_inspection() {
    let _serial = common::serial();
    let engine = engine(2);
    assert_eq!(engine.tokenize("The capital of France is", false).unwrap(), vec![504, 3575, 282, 4649, 314]);
    assert!(engine.info().chat_template.as_deref().unwrap_or("").contains("<|im_start|>"));
    assert_eq!(engine.info().architecture, "llama");
    let factory = GgufFactory::new(GgufConfig::default()).unwrap();
    assert!(factory.inspect(&model_path()).is_ok());
    let not_gguf = tempfile_with(b"GGUF but truncated");
    assert!(factory.inspect(not_gguf.path()).is_err(), "a truncated file is rejected at upload");
}

fn tempfile_with(bytes: &[u8]) -> tempfile::NamedTempFile {
    use std::io::Write;
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    file
}

#[test]
fn batched_greedy_equals_one_at_a_time_and_cancel_frees_the_slot() {
    let _serial = common::serial();
    let engine = engine(4);
    let questions = ["What is the capital of France?", "Name three colours.", "What is 2 plus 2?", "Say hello."];
    let prompts: Vec<Vec<u32>> = questions.iter().map(|q| engine.tokenize(&chat_prompt(q), true).unwrap()).collect();
    let alone: Vec<(String, FinishReason, u64)> = prompts
        .iter()
        .map(|prompt| collect(engine.submit(GenerateRequest { prompt: prompt.clone(), params: greedy(24), grammar: None }).unwrap()))
        .collect();
    assert!(alone[0].0.contains("Paris"), "{:?}", alone[0]);
    let receivers: Vec<_> = prompts
        .iter()
        .map(|prompt| engine.submit(GenerateRequest { prompt: prompt.clone(), params: greedy(24), grammar: None }).unwrap())
        .collect();
    let together: Vec<_> = receivers.into_iter().map(collect).collect();
    assert_eq!(together, alone, "continuous batching must not change greedy output");

    // A long generation is cancelled after its first chunk; its slot must free up at once.
    let engine = engine_single();
    let long = engine.submit(GenerateRequest { prompt: prompts[1].clone(), params: greedy(400), grammar: None }).unwrap();
    let _first = long.recv().unwrap();
    drop(long);
    let started = Instant::now();
    let (_, _, tokens) = collect(engine.submit(GenerateRequest { prompt: prompts[3].clone(), params: greedy(4), grammar: None }).unwrap());
    assert_eq!(tokens, 4);
    assert!(started.elapsed() < Duration::from_secs(5), "the cancelled sequence still held the only slot");
    assert_eq!(engine.stats().kv_cells_used, 0);
}

fn engine_single() -> Arc<dyn GenerateBackend> {
    engine(1)
}

#[test]
fn stop_strings_max_tokens_and_queue_bound() {
    let _serial = common::serial();
    let engine = engine(1);
    let prompt = engine.tokenize(&chat_prompt("What is the capital of France?"), true).unwrap();
    let (text, reason, tokens) =
        collect(engine.submit(GenerateRequest { prompt: prompt.clone(), params: greedy(3), grammar: None }).unwrap());
    assert_eq!((reason, tokens), (FinishReason::Length, 3), "{text}");
    let params = GenerateParams { stop: vec!["France".into()], ..greedy(40) };
    let (text, reason, _) = collect(engine.submit(GenerateRequest { prompt: prompt.clone(), params, grammar: None }).unwrap());
    assert_eq!(reason, FinishReason::StopString(0));
    assert!(!text.contains("France"), "{text}");
    // One slot and a queue of 4: with one running and four waiting, the next is refused.
    let running = engine.submit(GenerateRequest { prompt: prompt.clone(), params: greedy(200), grammar: None }).unwrap();
    let _first = running.recv().unwrap();
    let waiting: Vec<_> =
        (0..4).map(|_| engine.submit(GenerateRequest { prompt: prompt.clone(), params: greedy(200), grammar: None })).collect();
    assert!(waiting.iter().all(Result::is_ok));
    assert_eq!((engine.stats().running, engine.stats().waiting), (1, 4));
    let refused = engine.submit(GenerateRequest { prompt: prompt.clone(), params: greedy(1), grammar: None });
    assert!(matches!(refused, Err(yunmo_backend::BackendError::Overloaded(_))), "{refused:?}");
    let too_long = engine.submit(GenerateRequest { prompt: vec![1; 600], params: greedy(1), grammar: None });
    assert!(matches!(too_long, Err(yunmo_backend::BackendError::InvalidInput(_))));
}

/// Collects a whole stream: its text and usage.
fn collect_usage(receiver: flume::Receiver<GenerateEvent>) -> (String, yunmo_types::Usage) {
    let mut text = String::new();
    for event in receiver.iter() {
        match event {
            GenerateEvent::Chunk(chunk) => text.push_str(&chunk.text),
            GenerateEvent::Finished { usage, .. } => return (text, usage),
            GenerateEvent::Failed(error) => panic!("generation failed: {error}"),
        }
    }
    panic!("the stream ended without Finished")
}

#[test]
fn a_shared_prefix_is_reused_and_answers_as_without_the_cache() {
    shared_prefix_case(FlashAttention::Auto);
}

/// Plain attention takes other kernels (matrix products over the whole cache): the cache's guarantee holds there too.
#[test]
fn a_shared_prefix_is_reused_and_answers_as_without_the_cache_with_plain_attention() {
    shared_prefix_case(FlashAttention::Off);
}

fn shared_prefix_case(flash_attention: FlashAttention) {
    let _serial = common::serial();
    // Long enough for several whole 32-token prefill chunks (the unit of reuse): about 170 tokens.
    let system = "You are a careful assistant for a travel agency. Answer in one short sentence, name the country, \
                  and never invent facts. Our customers are families who travel by train across Europe in summer. \
                  They ask about capitals, rivers, mountains and the food of the places they visit; they like short \
                  answers they can read aloud to their children. When you do not know, say so. Prices, timetables and \
                  bookings are handled by our office, not by you: send such questions to the office politely. Our trains \
                  leave from Paris, Brussels, Amsterdam, Cologne, Munich, Vienna, Zurich, Milan and Barcelona, and \
                  families often combine two or three of these cities in one trip of two weeks.";
    let prompt = |question: &str| format!("<|im_start|>system\n{system}<|im_end|>\n{}", chat_prompt(question));
    let options = GenerateOptions { flash_attention, ..Default::default() };
    let start = |prefix_cache: bool| {
        let config = GgufConfig {
            threads: 2,
            max_sequences: 2,
            context_per_sequence: 512,
            batch_tokens: 64,
            queue_capacity: 4,
            gpu_layers: 0,
            prefix_cache,
            prefill_chunk: 32,
            options: Default::default(),
        };
        GgufFactory::new(config).unwrap().load_generate(&model_path(), &options).unwrap()
    };
    let (cached, uncached) = (start(true), start(false));
    let questions = ["What is the capital of France?", "Where is Vienna?", "Name a city in Italy.", "What is the capital of Spain?"];
    let tokens: Vec<Vec<u32>> = questions.iter().map(|q| cached.tokenize(&prompt(q), true).unwrap()).collect();
    let shared = tokens[0].iter().zip(&tokens[1]).take_while(|(a, b)| a == b).count();
    assert!(shared > 128, "the questions share the system prompt's {shared} tokens");
    let run = |engine: &Arc<dyn GenerateBackend>, prompt: &Vec<u32>| {
        collect_usage(engine.submit(GenerateRequest { prompt: prompt.clone(), params: greedy(20), grammar: None }).unwrap())
    };
    let reference: Vec<String> = tokens.iter().map(|prompt| run(&uncached, prompt).0).collect();
    assert!(tokens.iter().all(|prompt| run(&uncached, prompt).1.cached_tokens == 0), "the cache off reuses nothing");
    let (first, usage) = run(&cached, &tokens[0]);
    assert_eq!((first.as_str(), usage.cached_tokens), (reference[0].as_str(), 0), "a cold slot computes everything");
    let (second, usage) = run(&cached, &tokens[1]);
    assert_eq!(second, reference[1]);
    // Whole chunks of the shared prefix are reused: chunks end every 32 tokens and after each end-of-turn
    // token (<|im_end|>), so the whole system message is. Where the kernels were measured to be the same
    // in any batch of up to 63 rows, every shared token is (the chunks here are at most 32).
    let end_of_turn = cached.tokenize("<|im_end|>", true).unwrap()[0];
    let invariant = cached.info().invariant_rows >= 32;
    let reused = |prompt: &[u32], n: usize| {
        if invariant { n } else { (1..=n).rev().find(|&p| p % 32 == 0 || prompt[p - 1] == end_of_turn).unwrap_or(0) }
    };
    let system_end = tokens[1].iter().position(|token| *token == end_of_turn).unwrap() + 1;
    assert!(reused(&tokens[1], shared) >= system_end, "the whole system message is reused");
    assert_eq!(usage.cached_tokens as usize, reused(&tokens[1], shared), "{} of {shared} shared tokens reused", usage.cached_tokens);
    // The same prompt again reuses all it can short of its last token.
    let again = run(&cached, &tokens[1]).1.cached_tokens as usize;
    assert_eq!(again, reused(&tokens[1], tokens[1].len() - 1));
    // Four prompts at once on two slots, twice over: each answer is its own.
    for _ in 0..2 {
        let receivers: Vec<_> = tokens
            .iter()
            .map(|prompt| cached.submit(GenerateRequest { prompt: prompt.clone(), params: greedy(20), grammar: None }).unwrap())
            .collect();
        let answers: Vec<String> = receivers.into_iter().map(|receiver| collect_usage(receiver).0).collect();
        assert_eq!(answers, reference);
    }
}

#[test]
fn constrained_outputs_follow_their_schema_and_grammar() {
    let _serial = common::serial();
    let engine = engine(4);
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "city": { "type": "string", "maxLength": 24 },
            "population": { "type": "integer", "minimum": 0, "maximum": 40000000 },
            "rivers": { "type": "array", "items": { "enum": ["Seine", "Loire", "Rhone", "other"] }, "maxItems": 3 },
        },
        "required": ["city", "population", "rivers"],
        "additionalProperties": false,
    });
    let grammar = engine.constrain(&yunmo_types::Constraint::JsonSchema(schema)).unwrap();
    let prompt = engine.tokenize(&chat_prompt("Describe Paris as JSON."), true).unwrap();
    let sampled = |seed: u64| GenerateParams { max_tokens: 120, temperature: 1.0, seed, ..GenerateParams::default() };
    // Constrained sequences sampled next to an unconstrained one (the queue holds 4).
    let free = engine.submit(GenerateRequest { prompt: prompt.clone(), params: greedy(60), grammar: None }).unwrap();
    let mut receivers: Vec<_> = (0..3)
        .map(|seed| {
            engine.submit(GenerateRequest { prompt: prompt.clone(), params: sampled(seed), grammar: Some(grammar.clone()) }).unwrap()
        })
        .collect();
    assert!(collect(free).0.contains("Paris"));
    receivers.extend((3..6).map(|seed| {
        engine.submit(GenerateRequest { prompt: prompt.clone(), params: sampled(seed), grammar: Some(grammar.clone()) }).unwrap()
    }));
    for receiver in receivers {
        let (text, reason, _) = collect(receiver);
        assert_eq!(reason, FinishReason::Stop, "{text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"));
        assert!(value["city"].as_str().is_some_and(|city| city.chars().count() <= 24), "{text}");
        assert!(value["population"].as_u64().is_some_and(|n| n <= 40_000_000), "{text}");
        let rivers = value["rivers"].as_array().unwrap();
        assert!(rivers.len() <= 3 && rivers.iter().all(|r| ["Seine", "Loire", "Rhone", "other"].contains(&r.as_str().unwrap())), "{text}");
        assert_eq!(value.as_object().unwrap().len(), 3, "{text}");
    }

    let lark = engine.constrain(&yunmo_types::Constraint::Lark("start: \"yes\" | \"no\"".into())).unwrap();
    let (text, reason, tokens) = collect(engine.submit(GenerateRequest { prompt, params: greedy(20), grammar: Some(lark) }).unwrap());
    assert!((text.as_str(), reason) == ("yes", FinishReason::Stop) || (text.as_str(), reason) == ("no", FinishReason::Stop), "{text}");
    assert!(tokens <= 2, "the sequence ends as soon as the grammar is complete");

    let unsupported = serde_json::json!({ "type": "object", "if": { "required": ["a"] } });
    let error = engine.constrain(&yunmo_types::Constraint::JsonSchema(unsupported)).err().unwrap();
    assert!(matches!(&error, yunmo_backend::BackendError::InvalidInput(message) if message.contains("\"if\"")), "{error}");
}

#[test]
fn quantised_kv_caches_answer_and_take_less_memory() {
    let _serial = common::serial();
    let config = GgufConfig { max_sequences: 2, context_per_sequence: 512, batch_tokens: 64, threads: 2, ..GgufConfig::default() };
    let factory = GgufFactory::new(config).unwrap();
    let mut memory = Vec::new();
    for kv_cache_type in [KvCacheType::F16, KvCacheType::Q8_0, KvCacheType::Q4_0] {
        let engine = factory.load_generate(&model_path(), &GenerateOptions { kv_cache_type, ..Default::default() }).unwrap();
        let prompt = engine.tokenize(&chat_prompt("What is the capital of France?"), true).unwrap();
        let events = engine.submit(GenerateRequest { prompt, params: greedy(20), grammar: None }).unwrap();
        let (text, _, _) = collect(events);
        assert!(text.contains("Paris"), "{kv_cache_type:?}: {text}");
        memory.push(engine.info().memory_bytes);
    }
    // 2 sequences x 512 cells x 30 layers x 3 KV heads x 64 dimensions, K and V: 11,796,480 elements, at 64,
    // 34 and 18 bytes per 32.
    let elements = 2 * 512 * 30 * 3 * 64 * 2;
    assert_eq!(memory[0] - memory[1], elements * (64 - 34) / 32);
    assert_eq!(memory[0] - memory[2], elements * (64 - 18) / 32);
}

#[test]
fn control_tokens_reach_the_text_only_when_asked() {
    let _serial = common::serial();
    let engine = engine(1);
    // SmolLM2's <|im_start|> (id 1) is a control token but does not end generation; a bias forces it.
    let prompt = engine.tokenize(&chat_prompt("Hi"), true).unwrap();
    let text = |special_tokens: bool| {
        let params = GenerateParams { logit_bias: vec![(1, 100.0)], special_tokens, ..greedy(2) };
        collect(engine.submit(GenerateRequest { prompt: prompt.clone(), params, grammar: None }).unwrap()).0
    };
    assert_eq!(text(true), "<|im_start|><|im_start|>");
    assert_eq!(text(false), "");
}
