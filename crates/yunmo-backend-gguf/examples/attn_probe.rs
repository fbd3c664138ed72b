//! Times llama.cpp alone, without Yunmo's engine or HTTP, on the prefix-cache case: PREFIX tokens already in
//! the KV cache (prefilled in chunks of 64), then one decode of SUFFIX more tokens, repeated (the suffix's cells
//! are dropped between repeats). Prints the median and the fastest decode of the suffix. Used to split a time to
//! first token after a cached prefix into weight products and attention (docs/benchmarks.md, issue 17).
//!
//! Usage: cargo run --release -p yunmo-backend-gguf --example attn_probe -- MODEL.gguf PREFIX SUFFIX REPEATS
//!        FLASH_ATTENTION(0|1) THREADS KV_TYPE(f16|q8_0|q4_0|f32)
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::time::Instant;

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;

struct Probe {
    prefix: usize,
    suffix: usize,
    repeats: usize,
    flash_attention: bool,
    threads: i32,
    kv: KvCacheType,
}

fn parse(args: &[String]) -> Option<Probe> {
    let number = |index: usize| args.get(index)?.parse::<usize>().ok();
    let kv = match args.get(7)?.as_str() {
        "f16" => KvCacheType::F16,
        "q8_0" => KvCacheType::Q8_0,
        "q4_0" => KvCacheType::Q4_0,
        "f32" => KvCacheType::F32,
        _ => return None,
    };
    Some(Probe {
        prefix: number(2)?,
        suffix: number(3)?.max(1),
        repeats: number(4)?.max(1),
        flash_attention: number(5)? == 1,
        threads: number(6)? as i32,
        kv,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(probe) = parse(&args) else {
        eprintln!("usage: attn_probe MODEL.gguf PREFIX SUFFIX REPEATS FLASH_ATTENTION(0|1) THREADS KV_TYPE(f16|q8_0|q4_0|f32)");
        return ExitCode::from(2);
    };
    match run(&args[1], &probe) {
        Ok((median, fastest)) => {
            println!(
                "flash_attention={} prefix={} suffix={} threads={} kv={}: median {median:.2} ms, fastest {fastest:.2} ms",
                probe.flash_attention, probe.prefix, probe.suffix, probe.threads, args[7]
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("attn_probe: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The median and fastest suffix decode, in milliseconds.
fn run(path: &str, probe: &Probe) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let backend = LlamaBackend::init()?;
    let model = LlamaModel::load_from_file(&backend, path, &LlamaModelParams::default())?;
    let policy = if probe.flash_attention {
        llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED
    } else {
        llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED
    };
    // As the engine's context: sequences of their own (non-unified cache), 512-token batches.
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(4 * 2048))
        .with_n_batch(512)
        .with_n_ubatch(512)
        .with_n_seq_max(4)
        .with_kv_unified(false)
        .with_n_threads(probe.threads)
        .with_n_threads_batch(probe.threads)
        .with_flash_attention_policy(policy)
        .with_type_k(probe.kv)
        .with_type_v(probe.kv);
    let mut context = model.new_context(&backend, params)?;
    let total = probe.prefix + probe.suffix;
    let tokens: Vec<LlamaToken> = (0..total).map(|i| LlamaToken((100 + (i * 37) % 4000) as i32)).collect();
    let mut batch = LlamaBatch::new(512.max(probe.suffix), 1);
    for start in (0..probe.prefix).step_by(64) {
        batch.clear();
        for (position, token) in tokens.iter().enumerate().take((start + 64).min(probe.prefix)).skip(start) {
            batch.add(*token, position as i32, &[0], false)?;
        }
        context.decode(&mut batch)?;
    }
    let mut times = Vec::with_capacity(probe.repeats);
    for _ in 0..probe.repeats {
        context.clear_kv_cache_seq(Some(0), Some(probe.prefix as u32), None)?;
        batch.clear();
        for (position, token) in tokens.iter().enumerate().skip(probe.prefix) {
            batch.add(*token, position as i32, &[0], position + 1 == total)?;
        }
        let started = Instant::now();
        context.decode(&mut batch)?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[0]))
}
