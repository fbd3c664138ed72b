//! GGUF re-quantisation through llama.cpp's own quantiser (`llama_model_quantize`), and the perplexity of
//! a model on a text, which an optimisation job reports for the parent and the result. Both block their
//! thread: the server runs them in a job's child process.

use std::ffi::CString;
use std::num::NonZeroU32;
use std::path::Path;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use yunmo_backend::BackendError;

/// The quantisation types offered, by their llama.cpp names.
pub const TYPES: [(&str, llama_cpp_sys_2::llama_ftype); 6] = [
    ("Q8_0", llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q8_0),
    ("Q6_K", llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q6_K),
    ("Q5_K_M", llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q5_K_M),
    ("Q4_K_M", llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q4_K_M),
    ("Q4_0", llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q4_0),
    ("F16", llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_F16),
];

/// Writes `input` re-quantised to `kind` (one of [`TYPES`]) at `output`, with `threads` threads (0: all).
pub fn requantize(input: &Path, output: &Path, kind: &str, threads: usize) -> Result<(), BackendError> {
    let ftype = TYPES.iter().find(|(name, _)| name.eq_ignore_ascii_case(kind)).map(|(_, ftype)| *ftype).ok_or_else(|| {
        BackendError::InvalidInput(format!("unknown GGUF type '{kind}': one of {}", TYPES.map(|(name, _)| name).join(", ")))
    })?;
    let model = crate::load_model(input, &LlamaModelParams::default().with_vocab_only(true))?;
    if crate::encoder::encoder_task(&model)?.is_some() {
        // The quality check is perplexity, which an encoder (no language-model head) has none of.
        return Err(BackendError::Unsupported(
            "this GGUF file holds an encoder (an embedding model or reranker): re-quantising is offered for text-generation models, whose perplexity checks the result".into(),
        ));
    }
    drop(model);
    let path = |path: &Path| {
        CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| BackendError::InvalidInput("a path holds a NUL byte".into()))
    };
    let (input, output) = (path(input)?, path(output)?);
    #[allow(unsafe_code)]
    // SAFETY: llama_model_quantize_default_params returns a plain struct by value; the two paths are valid
    // NUL-terminated strings that outlive the call; the params' pointers (imatrix, overrides) stay null as the
    // defaults set them.
    let status = unsafe {
        let mut params = llama_cpp_sys_2::llama_model_quantize_default_params();
        params.ftype = ftype;
        params.allow_requantize = true;
        params.nthread = threads as i32;
        llama_cpp_sys_2::llama_model_quantize(input.as_ptr(), output.as_ptr(), &params)
    };
    if status != 0 {
        return Err(BackendError::Runtime(format!("llama.cpp's quantiser failed (status {status})")));
    }
    Ok(())
}

/// The perplexity of the model at `path` on `text` (at most `max_tokens` tokens, one window), with its
/// token count: exp of the mean negative log-likelihood of each token given the ones before it.
pub fn perplexity(path: &Path, text: &str, max_tokens: usize) -> Result<(f64, usize), BackendError> {
    let backend = crate::backend()?;
    let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
        .map_err(|error| BackendError::InvalidModel(format!("llama.cpp cannot load this GGUF file: {error}")))?;
    let mut tokens = model.vocab().tokenize(text.as_bytes(), true, false);
    tokens.truncate(max_tokens);
    if tokens.len() < 2 {
        return Err(BackendError::InvalidInput("the perplexity text has fewer than two tokens".into()));
    }
    let n = tokens.len() as u32;
    let params = LlamaContextParams::default().with_n_ctx(NonZeroU32::new(n + 8)).with_n_batch(n).with_n_ubatch(n);
    let mut context = model.new_context(backend, params).map_err(|error| BackendError::Runtime(error.to_string()))?;
    let mut batch = LlamaBatch::new(tokens.len(), 1);
    for (position, token) in tokens.iter().enumerate() {
        batch.add(*token, position as i32, &[0], true).map_err(|error| BackendError::Runtime(error.to_string()))?;
    }
    context.decode(&mut batch).map_err(|error| BackendError::Runtime(format!("llama.cpp could not evaluate the text: {error}")))?;
    let mut total = 0.0;
    for position in 0..tokens.len() - 1 {
        let logits = context.get_logits_ith(position as i32);
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = logits.iter().map(|&logit| f64::from(logit - max).exp()).sum();
        let next = tokens[position + 1].0 as usize;
        total += sum.ln() - f64::from(logits[next] - max);
    }
    let count = tokens.len() - 1;
    Ok(((total / count as f64).exp(), count))
}
