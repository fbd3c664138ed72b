//! Which tokens go into the next decode step: the pure part of continuous batching.
//!
//! Every sequence that is generating contributes its one next token, first; prompts then fill what is
//! left of the token budget in the order they were admitted, in chunks, so a long prompt is prefilled
//! over several steps while the others keep generating.

/// Where one sequence stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// This many prompt tokens are not yet in the KV cache.
    Prefill { remaining: usize },
    /// The prompt is in; one sampled token waits to be fed.
    Decode,
}

/// One sequence's part of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Index of the sequence in the slice given to [`plan_step`].
    pub sequence: usize,
    /// Tokens it feeds.
    pub tokens: usize,
    /// Whether logits are needed after its last token (it finishes its prompt or is decoding).
    pub logits: bool,
}

/// Plans one step within `budget` tokens. `budget` must be at least the number of sequences.
pub fn plan_step(phases: &[Phase], budget: usize) -> Vec<Chunk> {
    let mut chunks = Vec::with_capacity(phases.len());
    let mut left = budget;
    for (sequence, phase) in phases.iter().enumerate() {
        if *phase == Phase::Decode && left > 0 {
            chunks.push(Chunk { sequence, tokens: 1, logits: true });
            left -= 1;
        }
    }
    for (sequence, phase) in phases.iter().enumerate() {
        if let Phase::Prefill { remaining } = *phase {
            if left == 0 {
                break;
            }
            let tokens = remaining.min(left);
            if tokens == 0 {
                continue;
            }
            chunks.push(Chunk { sequence, tokens, logits: tokens == remaining });
            left -= tokens;
        }
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_come_first_and_a_long_prompt_is_chunked() {
        let phases = [Phase::Prefill { remaining: 1000 }, Phase::Decode, Phase::Decode];
        let plan = plan_step(&phases, 512);
        assert_eq!(
            plan,
            vec![
                Chunk { sequence: 1, tokens: 1, logits: true },
                Chunk { sequence: 2, tokens: 1, logits: true },
                Chunk { sequence: 0, tokens: 510, logits: false },
            ]
        );
    }

    #[test]
    fn short_prompts_finish_in_one_step_in_admission_order() {
        let phases = [Phase::Prefill { remaining: 5 }, Phase::Prefill { remaining: 300 }, Phase::Prefill { remaining: 300 }];
        let plan = plan_step(&phases, 512);
        assert_eq!(
            plan,
            vec![
                Chunk { sequence: 0, tokens: 5, logits: true },
                Chunk { sequence: 1, tokens: 300, logits: true },
                Chunk { sequence: 2, tokens: 207, logits: false },
            ]
        );
        assert_eq!(plan.iter().map(|c| c.tokens).sum::<usize>(), 512);
    }

    #[test]
    fn empty_and_idle() {
        assert!(plan_step(&[], 8).is_empty());
        assert_eq!(plan_step(&[Phase::Decode; 4], 4).len(), 4);
    }
}
