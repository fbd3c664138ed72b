//! Which tokens go into the next step: the pure part of continuous batching.
//!
//! Every sequence that is generating contributes its one next token, in one decode. Prompts are then
//! prefilled in chunks aligned to absolute positions (`[k·C, (k+1)·C)`, the last one shorter), each chunk a
//! decode of its own, in the order the sequences were admitted, until the step's token budget is spent.
//! A long prompt is so prefilled over several steps while the others keep generating.
//!
//! Why aligned chunks, alone: llama.cpp's kernels are not bit-exact across batch shapes (its CPU flash
//! attention switches to a tiled kernel at 64 query rows; the rows of several sequences in one decode are
//! split by its batch allocator). A prompt's cells computed by one chunk are therefore the same bits
//! whenever the same tokens are prefilled, whatever else runs, and the prefix cache reuses only whole
//! chunks (see `prefix.rs`): the answer with the cache equals the answer without it.

/// Where one sequence stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `done` of the prompt's `total` tokens are in the KV cache (`done` is a multiple of the chunk size).
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

/// Plans one step within `budget` tokens with prefill chunks of `chunk` tokens. At least one prefill chunk
/// is planned when a prompt waits, so prompts progress even when decoding takes the whole budget.
pub fn plan_step(phases: &[Phase], budget: usize, chunk: usize) -> Plan {
    let chunk = chunk.max(1);
    let decode: Vec<usize> = (0..phases.len()).filter(|&i| phases[i] == Phase::Decode).collect();
    let mut left = budget.saturating_sub(decode.len());
    let mut prefill = Vec::new();
    for (sequence, phase) in phases.iter().enumerate() {
        let Phase::Prefill { mut done, total } = *phase else { continue };
        while done < total {
            let tokens = (total - done).min(chunk - done % chunk);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(sequence: usize, tokens: usize, logits: bool) -> Chunk {
        Chunk { sequence, tokens, logits }
    }

    #[test]
    fn decodes_go_together_and_a_long_prompt_is_chunked_at_aligned_positions() {
        let phases = [Phase::Prefill { done: 64, total: 1000 }, Phase::Decode, Phase::Decode];
        let plan = plan_step(&phases, 200, 64);
        assert_eq!(plan.decode, vec![1, 2]);
        // 198 tokens left: three whole chunks of 64; the fourth would not fit.
        assert_eq!(plan.prefill, vec![chunk(0, 64, false); 3]);
        let plan = plan_step(&[Phase::Prefill { done: 960, total: 1000 }], 512, 64);
        assert_eq!(plan.prefill, vec![chunk(0, 40, true)]);
    }

    #[test]
    fn short_prompts_finish_in_admission_order_and_one_chunk_always_runs() {
        let phases = [Phase::Prefill { done: 0, total: 5 }, Phase::Prefill { done: 0, total: 100 }, Phase::Prefill { done: 0, total: 300 }];
        let plan = plan_step(&phases, 200, 64);
        assert_eq!(plan.prefill, vec![chunk(0, 5, true), chunk(1, 64, false), chunk(1, 36, true), chunk(2, 64, false)]);
        let busy = [Phase::Decode, Phase::Decode, Phase::Prefill { done: 0, total: 300 }];
        assert_eq!(plan_step(&busy, 2, 64).prefill, vec![chunk(2, 64, false)], "a prompt still progresses");
    }

    #[test]
    fn empty_and_idle() {
        assert_eq!(plan_step(&[], 8, 64), Plan::default());
        assert_eq!(plan_step(&[Phase::Decode; 4], 4, 64).decode, vec![0, 1, 2, 3]);
    }
}
