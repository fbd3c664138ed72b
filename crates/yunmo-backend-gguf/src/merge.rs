//! Whether short prefill chunks may be decoded together. The prefix cache's exactness rests on every chunk
//! being computed the same whatever else is computed with it (see `plan.rs`). llama.cpp's CPU kernels keep
//! that for some shapes and not others (flash attention over an f32 cache switches to a tiled kernel at 64
//! query rows; f16 caches take Yunmo's kernel, ggml/, at every size; weights repacked for AVX2 go several
//! rows at a time), and other backends have their own. So it is measured, once
//! per loaded model, on its own context: a probe prompt of [`MAX_MERGED`] tokens is decoded in one batch and
//! in pieces of 1 to 32 rows; when the last row's logits are the same bits, consecutive chunks of one
//! sequence that together stay within that many rows are decoded together (a prompt's last message and the
//! assistant's opening, after a reused system prompt: one pass over the weights instead of two), and the
//! answers stay the same with the cache on and off. Otherwise every chunk is decoded alone, as before.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

/// Most rows of a merged decode: below the 64 query rows where llama.cpp's CPU flash attention over an f32 cache
/// changes kernel.
pub(crate) const MAX_MERGED: usize = 63;

/// Piece sizes of the probe's split decode (1 + 2 + 5 + 8 + 15 + 32 = 63).
const PIECES: [usize; 6] = [1, 2, 5, 8, 15, 32];

const PROBE_TEXT: &str = "The old lighthouse keeper climbed the spiral stairs every evening at dusk, counting one hundred and \
    twelve steps, checking the brass lamp, wiping salt from the thick glass, and writing the weather, the ships he saw and \
    the colour of the sea into a leather book that his grandmother had started sixty years before.";

/// The most rows chunks may be merged into for this model and context (0: never merge). Clears the KV cache.
pub(crate) fn probe(model: &LlamaModel, context: &mut LlamaContext, batch_tokens: usize) -> usize {
    let limit = MAX_MERGED.min(batch_tokens);
    let mut tokens: Vec<LlamaToken> = model.vocab().tokenize(PROBE_TEXT.as_bytes(), false, false);
    if limit < 2 || tokens.is_empty() {
        return 0;
    }
    while tokens.len() < limit {
        tokens.extend_from_within(..);
    }
    tokens.truncate(limit);
    let mut ends: Vec<usize> = PIECES
        .iter()
        .scan(0, |end, size| {
            *end += size;
            Some(*end)
        })
        .filter(|&end| end < limit)
        .collect();
    ends.push(limit);
    let whole = last_logits(context, &tokens, &[limit]);
    let pieces = last_logits(context, &tokens, &ends);
    context.clear_kv_cache();
    match (whole, pieces) {
        (Some(whole), Some(pieces)) if same_bits(&whole, &pieces) => limit,
        _ => 0,
    }
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The logits after `tokens`, decoded in sequence 0 from an empty cache as batches ending at `ends`.
fn last_logits(context: &mut LlamaContext, tokens: &[LlamaToken], ends: &[usize]) -> Option<Vec<f32>> {
    context.clear_kv_cache();
    let mut batch = LlamaBatch::new(tokens.len(), 1);
    let mut start = 0;
    for &end in ends {
        batch.clear();
        for (position, token) in tokens.iter().enumerate().take(end).skip(start) {
            batch.add(*token, position as i32, &[0], position + 1 == tokens.len()).ok()?;
        }
        context.decode(&mut batch).ok()?;
        start = end;
    }
    Some(context.get_logits_ith(batch.n_tokens() - 1).to_vec())
}
