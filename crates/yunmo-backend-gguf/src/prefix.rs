//! Prefix caching: a finished sequence leaves its KV cells in its slot, with the tokens they hold; a new
//! request takes the free slot whose tokens share the longest prefix with its prompt and prefills only the
//! rest. Only cells of identical tokens at identical positions are reused, so a hit restores nothing of
//! another request but the computation of the same tokens: its output is its own.
//!
//! Only whole prefill chunks are reused (`plan.rs`): cells that a prompt's chunk computed are the bits a
//! cold prefill of the same tokens computes, while cells of a last chunk cut short by the prompt's end or
//! of generated tokens (decoded one at a time, next to other sequences) are not. So a hit answers, token
//! for token, what the same request answers with the cache off.

/// What a free slot holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SlotCache {
    /// The tokens whose KV cells the slot holds, from position 0.
    pub tokens: Vec<u32>,
    /// How many leading cells whole prefill chunks computed: the reusable ones.
    pub exact: usize,
    /// When it was freed (a counter): among slots without a match, the least recently used is taken, so
    /// recent prefixes stay cached.
    pub freed_at: u64,
}

/// The number of leading tokens `a` and `b` share.
pub(crate) fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Which of the `free` slots to give `prompt`, and how many of its tokens that slot's cells already hold:
/// `last_end(n)`, the last chunk end at or before the `n` shared, exactly computed tokens short of the
/// last prompt token (one must be computed to get the logits to sample from).
/// The longest shared prefix wins (ties: the most recently freed, whose prefix is likelier to be reused
/// again); with no match, an empty slot, else the least recently used.
pub(crate) fn pick(free: &[i32], caches: &[SlotCache], prompt: &[u32], last_end: impl Fn(usize) -> usize) -> (usize, usize) {
    let usable = prompt.len().saturating_sub(1);
    let shared = |slot: i32| {
        let cache = &caches[slot as usize];
        last_end(common_prefix(&cache.tokens, prompt).min(cache.exact).min(usable))
    };
    let best = (0..free.len()).max_by_key(|&i| (shared(free[i]), caches[free[i] as usize].freed_at));
    match best {
        Some(i) if shared(free[i]) > 0 => (i, shared(free[i])),
        _ => {
            let lru = (0..free.len()).min_by_key(|&i| {
                let cache = &caches[free[i] as usize];
                (!cache.tokens.is_empty(), cache.freed_at)
            });
            (lru.unwrap_or(0), 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(tokens: &[u32], freed_at: u64) -> SlotCache {
        SlotCache { tokens: tokens.to_vec(), exact: tokens.len(), freed_at }
    }

    #[test]
    fn the_longest_prefix_wins_and_one_prompt_token_is_always_computed() {
        let caches = vec![cache(&[1, 2, 3, 9], 1), cache(&[1, 2, 3, 4, 5], 2), cache(&[], 0)];
        assert_eq!(pick(&[0, 1, 2], &caches, &[1, 2, 3, 4, 5, 6], |n| n), (1, 5));
        // The same prompt again: all but its last token are reused.
        assert_eq!(pick(&[0, 1, 2], &caches, &[1, 2, 3, 4, 5], |n| n), (1, 4));
        assert_eq!(pick(&[0, 2], &caches, &[1, 2, 3, 4], |n| n), (0, 3));
    }

    #[test]
    fn only_whole_chunks_of_exactly_computed_cells_are_reused() {
        let tokens: Vec<u32> = (0..10).collect();
        let mut caches = vec![cache(&tokens, 1)];
        assert_eq!(pick(&[0], &caches, &tokens, |n| n / 4 * 4), (0, 8), "9 usable, two chunks of 4");
        caches[0].exact = 7;
        assert_eq!(pick(&[0], &caches, &tokens, |n| n / 4 * 4), (0, 4), "cells past 7 were computed otherwise");
        caches[0].exact = 3;
        assert_eq!(pick(&[0], &caches, &tokens, |n| n / 4 * 4), (0, 0));
    }

    #[test]
    fn without_a_match_an_empty_slot_then_the_least_recently_used_is_taken() {
        let caches = vec![cache(&[7, 7], 5), cache(&[8, 8], 3), cache(&[], 0)];
        assert_eq!(pick(&[0, 1, 2], &caches, &[1, 2], |n| n), (2, 0), "the empty slot");
        assert_eq!(pick(&[0, 1], &caches, &[1, 2], |n| n), (1, 0), "the least recently used");
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4]), 2);
    }
}
