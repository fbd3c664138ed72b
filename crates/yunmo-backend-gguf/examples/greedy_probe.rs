//! Greedy text of llama.cpp alone for one prompt, with flash attention on or off: a check of the attention
//! kernels' answers apart from Yunmo's engine (docs/llm.md, "Flash attention").
//!
//! Usage: cargo run --release -p yunmo-backend-gguf --example greedy_probe -- MODEL.gguf FLASH_ATTENTION(0|1)
//!        THREADS TOKENS < prompt.txt   (the prompt is raw text; special tokens such as <|im_start|> are parsed)
use std::io::Read;
use std::num::NonZeroU32;
use std::process::ExitCode;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let number = |index: usize| args.get(index).and_then(|value| value.parse::<usize>().ok());
    let (Some(flash), Some(threads), Some(count)) = (number(2), number(3), number(4)) else {
        eprintln!("usage: greedy_probe MODEL.gguf FLASH_ATTENTION(0|1) THREADS TOKENS < prompt.txt");
        return ExitCode::from(2);
    };
    let mut prompt = String::new();
    if let Err(error) = std::io::stdin().read_to_string(&mut prompt) {
        eprintln!("greedy_probe: {error}");
        return ExitCode::FAILURE;
    }
    match run(&args[1], flash == 1, threads as i32, (&prompt, count)) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("greedy_probe: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &str, flash: bool, threads: i32, (prompt, count): (&str, usize)) -> Result<String, Box<dyn std::error::Error>> {
    let backend = LlamaBackend::init()?;
    let model = LlamaModel::load_from_file(&backend, path, &LlamaModelParams::default())?;
    let policy = if flash { llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED } else { llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED };
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(2048))
        .with_n_batch(512)
        .with_n_ubatch(512)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_flash_attention_policy(policy);
    let mut context = model.new_context(&backend, params)?;
    let vocab = model.vocab();
    let tokens = vocab.tokenize(prompt.as_bytes(), false, true);
    let mut batch = LlamaBatch::new(512.max(tokens.len()), 1);
    for (position, token) in tokens.iter().enumerate() {
        batch.add(*token, position as i32, &[0], position + 1 == tokens.len())?;
    }
    context.decode(&mut batch)?;
    let mut text = Vec::new();
    let mut last = batch.n_tokens() - 1;
    for position in (tokens.len() as i32..).take(count) {
        let logits = context.get_logits_ith(last);
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
        let best = order[0];
        if text.is_empty() {
            let top: Vec<String> = order[..3].iter().map(|id| format!("{id}:{:.3}", logits[*id])).collect();
            eprintln!("first token, top 3 (id:logit): {}", top.join(" "));
        }
        let token = LlamaToken(best as i32);
        if vocab.is_eog(token) {
            break;
        }
        text.extend(vocab.token_to_piece(token, false, None));
        batch.clear();
        batch.add(token, position, &[0], true)?;
        context.decode(&mut batch)?;
        last = 0;
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}
