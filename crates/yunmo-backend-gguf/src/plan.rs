//! Which tokens go into the next step: the pure part of continuous batching.
//!
//! Every sequence that is generating contributes its one next token, in one decode. Prompts are then
//! prefilled in chunks, each a decode of its own, in the order the sequences were admitted, until the
//! step's token budget is spent. A long prompt is so prefilled over several steps while the others keep
//! generating.
//!
//! Chunks end at [`Boundaries`]: every multiple of the chunk size, and right after every end-of-turn token
//! (each chat message closes with one), so where a prompt's chunks end depends only on the tokens before:
//! two prompts that share a prefix are chunked alike up to its last boundary, and a shared system prompt
//! or earlier turn is reused whole.
//!
//! Why such chunks, decoded alone: llama.cpp's kernels are not bit-exact across batch shapes (its CPU flash
//! attention switches to a tiled kernel at 64 query rows; repacked weights are multiplied four rows at a
//! time; the rows of several sequences in one decode are split by its batch allocator). A chunk's cells are
//! therefore the same bits whenever the same tokens are prefilled, whatever else runs, and the prefix cache
//! reuses only whole chunks (see `prefix.rs`): the answer with the cache equals the answer without it.

/// Where prefill chunks end.
pub struct Boundaries<'a> {
    /// Chunk size: every multiple of it is an end.
    pub chunk: usize,
    /// By token id: whether a chunk ends right after the token (end-of-turn tokens).
    pub marks: &'a [bool],
}

impl Boundaries<'_> {
    /// Whether a chunk ends at position `end` of `tokens` (after `end` tokens).
    pub fn is_end(&self, tokens: &[u32], end: usize) -> bool {
        end.is_multiple_of(self.chunk.max(1))
            || end.checked_sub(1).and_then(|last| tokens.get(last)).is_some_and(|token| self.marks.get(*token as usize) == Some(&true))
    }

    /// The end of the chunk that starts at `start` in a prompt of `tokens`.
    pub fn next_end(&self, tokens: &[u32], start: usize) -> usize {
        let chunk = self.chunk.max(1);
        let limit = ((start / chunk + 1) * chunk).min(tokens.len());
        (start + 1..limit).find(|&end| self.is_end(tokens, end)).unwrap_or(limit)
    }

    /// The last chunk end at or before `position`.
    pub fn last_end(&self, tokens: &[u32], position: usize) -> usize {
        (1..=position.min(tokens.len())).rev().find(|&end| self.is_end(tokens, end)).unwrap_or(0)
    }
}

/// Where one sequence stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `done` of the prompt's `total` tokens are in the KV cache (`done` is a chunk end).
    Prefill { done: usize, total: usize },
    /// The prompt is in; one sampled token waits to be fed.
    Decode,
}

/// One prefill chunk of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Index of the sequence in the slice given to [`plan_step`].
    pub sequence: usize,
    /// Tokens it feeds.
    pub tokens: usize,
    /// Whether logits are needed after its last token (it finishes the prompt).
    pub logits: bool,
}

/// One step: the sequences that decode a token together, then the prefill chunks, each decoded alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub decode: Vec<usize>,
    pub prefill: Vec<Chunk>,
}

/// Plans one step within `budget` tokens; `next_end(sequence, done)` is where the chunk of that sequence
/// starting at `done` ends. At least one prefill chunk is planned when a prompt waits, so prompts progress
/// even when decoding takes the whole budget.
pub fn plan_step(phases: &[Phase], budget: usize, next_end: impl Fn(usize, usize) -> usize) -> Plan {
    let decode: Vec<usize> = (0..phases.len()).filter(|&i| phases[i] == Phase::Decode).collect();
    let mut left = budget.saturating_sub(decode.len());
    let mut prefill = Vec::new();
    for (sequence, phase) in phases.iter().enumerate() {
        let Phase::Prefill { mut done, total } = *phase else { continue };
        while done < total {
            let tokens = next_end(sequence, done).clamp(done + 1, total) - done;
            if tokens > left && !prefill.is_empty() {
                return Plan { decode, prefill };
            }
            left = left.saturating_sub(tokens);
            done += tokens;
            prefill.push(Chunk { sequence, tokens, logits: done == total });
        }
    }
    Plan { decode, prefill }
}

/// `chunks` with consecutive chunks of one sequence joined while together they hold at most `limit` tokens
/// (`limit` below 2: unchanged). Only for kernels that compute a row the same in any batch (`merge.rs`).
pub fn merge(chunks: Vec<Chunk>, limit: usize) -> Vec<Chunk> {
    let mut merged: Vec<Chunk> = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        match merged.last_mut() {
            Some(last) if limit >= 2 && last.sequence == chunk.sequence && last.tokens + chunk.tokens <= limit => {
                last.tokens += chunk.tokens;
                last.logits = chunk.logits;
            }
            _ => merged.push(chunk),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(sequence: usize, tokens: usize, logits: bool) -> Chunk {
        Chunk { sequence, tokens, logits }
    }

    /// Ends every 64 tokens.
    fn grid(_: usize, done: usize) -> usize {
        (done / 64 + 1) * 64
    }

    #[test]
    fn chunks_end_on_the_grid_and_after_control_tokens_whatever_follows() {
        let mut marks = vec![false; 10];
        marks[9] = true;
        let boundaries = Boundaries { chunk: 4, marks: &marks };
        let tokens = [1, 2, 9, 3, 4, 5, 6, 7, 8, 9, 1];
        let mut ends = vec![];
        let mut done = 0;
        while done < tokens.len() {
            done = boundaries.next_end(&tokens, done);
            ends.push(done);
        }
        assert_eq!(ends, vec![3, 4, 8, 10, 11]);
        // A prompt sharing the first 9 tokens is chunked alike up to the last end before them.
        assert_eq!(boundaries.last_end(&tokens, 9), 8);
        assert_eq!(boundaries.last_end(&tokens, 10), 10);
        assert_eq!(boundaries.last_end(&tokens, 2), 0);
        assert!(!boundaries.is_end(&tokens, 11) && boundaries.is_end(&tokens, 3));
    }

    #[test]
    fn decodes_go_together_and_a_long_prompt_is_chunked_at_aligned_positions() {
        let phases = [Phase::Prefill { done: 64, total: 1000 }, Phase::Decode, Phase::Decode];
        let plan = plan_step(&phases, 200, grid);
        assert_eq!(plan.decode, vec![1, 2]);
        // 198 tokens left: three whole chunks of 64; the fourth would not fit.
        assert_eq!(plan.prefill, vec![chunk(0, 64, false); 3]);
        let plan = plan_step(&[Phase::Prefill { done: 960, total: 1000 }], 512, grid);
        assert_eq!(plan.prefill, vec![chunk(0, 40, true)]);
    }

    #[test]
    fn short_prompts_finish_in_admission_order_and_one_chunk_always_runs() {
        let phases = [Phase::Prefill { done: 0, total: 5 }, Phase::Prefill { done: 0, total: 100 }, Phase::Prefill { done: 0, total: 300 }];
        let plan = plan_step(&phases, 200, grid);
        assert_eq!(plan.prefill, vec![chunk(0, 5, true), chunk(1, 64, false), chunk(1, 36, true), chunk(2, 64, false)]);
        let busy = [Phase::Decode, Phase::Decode, Phase::Prefill { done: 0, total: 300 }];
        assert_eq!(plan_step(&busy, 2, grid).prefill, vec![chunk(2, 64, false)], "a prompt still progresses");
    }

    #[test]
    fn short_chunks_of_one_sequence_merge_within_the_limit() {
        let chunks = vec![chunk(0, 64, false), chunk(0, 12, false), chunk(0, 5, true), chunk(1, 20, false), chunk(1, 50, true)];
        assert_eq!(merge(chunks.clone(), 63), vec![chunk(0, 64, false), chunk(0, 17, true), chunk(1, 20, false), chunk(1, 50, true)]);
        assert_eq!(merge(chunks.clone(), 0), chunks, "kernels that differ by batch shape: every chunk alone");
    }

    #[test]
    fn empty_and_idle() {
        assert_eq!(plan_step(&[], 8, grid), Plan::default());
        assert_eq!(plan_step(&[Phase::Decode; 4], 4, grid).decode, vec![0, 1, 2, 3]);
    }
}
