//! Prefix caching: a finished sequence leaves its KV cells in its slot, with the tokens they hold; a new
//! request takes the free slot whose tokens share the longest prefix with its prompt and prefills only the
//! rest. Only cells of identical tokens at identical positions are reused, so a hit restores nothing of
//! another request but the computation of the same tokens: its output is its own.
//!
//! Whole prefill chunks are reused (`plan.rs`): cells that a prompt's chunk computed are the bits a cold
//! prefill of the same tokens computes, while cells of generated tokens (decoded one at a time, next to
//! other sequences) are not. Where the model's kernels compute a row the same in any batch of up to
//! `merge` rows (measured at load, `merge.rs`), cells inside a short chunk are reused to the token too: the
//! chunk of the new prompt that holds the first token to compute, and the earlier prompt's chunk from the
//! same start, must both be that short, so that both computations stay within the invariant shapes. So a
//! hit answers, token for token, what the same request answers with the cache off.

use crate::plan::Boundaries;

/// What a free slot holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SlotCache {
    /// The tokens whose KV cells the slot holds, from position 0.
    pub tokens: Vec<u32>,
    /// How many leading cells whole prefill chunks computed: the reusable ones.
    pub exact: usize,
    /// How many leading cells hold prompt tokens (the rest were generated).
    pub prompt_len: usize,
    /// When it was freed (a counter): among slots without a match, the least recently used is taken, so
    /// recent prefixes stay cached.
    pub freed_at: u64,
}

/// The number of leading tokens `a` and `b` share.
pub(crate) fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// How many of `prompt`'s leading cells `cache` can give, of the `shared` tokens they have in common: the
/// whole chunks among its exactly computed cells, or, with `merge` rows above 0, up to `shared` prompt
/// cells when the chunk that holds them is at most `merge` rows in both prompts.
pub(crate) fn reusable(cache: &SlotCache, prompt: &[u32], shared: usize, boundaries: &Boundaries, merge: usize) -> usize {
    let whole = boundaries.last_end(prompt, shared.min(cache.exact));
    let fine = shared.min(cache.prompt_len);
    let start = boundaries.last_end(prompt, fine);
    let earlier = &cache.tokens[..cache.prompt_len.min(cache.tokens.len())];
    let short = |tokens: &[u32]| boundaries.next_end(tokens, start) - start <= merge;
    if merge > 0 && start <= cache.exact && short(prompt) && short(earlier) { whole.max(fine) } else { whole }
}

/// Which of the `free` slots to give `prompt`, and how many of its tokens that slot's cells already hold:
/// `reuse(cache, n)` of the `n` tokens it shares short of the last prompt token (one must be computed to get
/// the logits to sample from).
/// The longest shared prefix wins (ties: the most recently freed, whose prefix is likelier to be reused
/// again); with no match, an empty slot, else the least recently used.
pub(crate) fn pick(free: &[i32], caches: &[SlotCache], prompt: &[u32], reuse: impl Fn(&SlotCache, usize) -> usize) -> (usize, usize) {
    let usable = prompt.len().saturating_sub(1);
    let shared = |slot: i32| {
        let cache = &caches[slot as usize];
        reuse(cache, common_prefix(&cache.tokens, prompt).min(usable))
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
        SlotCache { tokens: tokens.to_vec(), exact: tokens.len(), prompt_len: tokens.len(), freed_at }
    }

    /// Reuse to the token where the chunk allows it.
    fn all(cache: &SlotCache, n: usize) -> usize {
        n.min(cache.exact)
    }

    /// Whole chunks of 4.
    fn fours(cache: &SlotCache, n: usize) -> usize {
        n.min(cache.exact) / 4 * 4
    }

    #[test]
    fn the_longest_prefix_wins_and_one_prompt_token_is_always_computed() {
        let caches = vec![cache(&[1, 2, 3, 9], 1), cache(&[1, 2, 3, 4, 5], 2), cache(&[], 0)];
        assert_eq!(pick(&[0, 1, 2], &caches, &[1, 2, 3, 4, 5, 6], all), (1, 5));
        // The same prompt again: all but its last token are reused.
        assert_eq!(pick(&[0, 1, 2], &caches, &[1, 2, 3, 4, 5], all), (1, 4));
        assert_eq!(pick(&[0, 2], &caches, &[1, 2, 3, 4], all), (0, 3));
    }

    #[test]
    fn only_whole_chunks_of_exactly_computed_cells_are_reused() {
        let tokens: Vec<u32> = (0..10).collect();
        let mut caches = vec![cache(&tokens, 1)];
        assert_eq!(pick(&[0], &caches, &tokens, fours), (0, 8), "9 usable, two chunks of 4");
        caches[0].exact = 7;
        assert_eq!(pick(&[0], &caches, &tokens, fours), (0, 4), "cells past 7 were computed otherwise");
        caches[0].exact = 3;
        assert_eq!(pick(&[0], &caches, &tokens, fours), (0, 0));
    }

    #[test]
    fn inside_short_chunks_cells_are_reused_to_the_token_where_the_kernels_allow() {
        let mut marks = vec![false; 100];
        marks[99] = true;
        let boundaries = Boundaries { chunk: 8, marks: &marks };
        // Chunks of the earlier prompt: [0, 8), [8, 11) (ends after 99), [11, 16), [16, 17) cut by its end.
        let earlier = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 99, 20, 21, 22, 23, 24, 25];
        let mut slot = SlotCache { tokens: [&earlier[..], &[60, 61]].concat(), exact: 16, prompt_len: 17, freed_at: 1 };
        let prompt = [&earlier[..12], &[30, 31, 32]].concat();
        let shared = common_prefix(&slot.tokens, &prompt);
        assert_eq!(reusable(&slot, &prompt, shared, &boundaries, 0), 11, "kernels vary by shape: whole chunks only");
        assert_eq!(reusable(&slot, &prompt, shared, &boundaries, 8), 12, "inside the chunk [11, 16) of both");
        assert_eq!(reusable(&slot, &prompt, shared, &boundaries, 4), 11, "that chunk is 5 rows in the earlier prompt");
        // Generated cells are never reused to the token.
        let longer = [&earlier[..], &[60, 61, 62]].concat();
        assert_eq!(reusable(&slot, &longer, common_prefix(&slot.tokens, &longer), &boundaries, 8), 17);
        slot.exact = 8;
        assert_eq!(reusable(&slot, &prompt, shared, &boundaries, 8), 8, "cells before the chunk must be exact");
    }

    #[test]
    fn without_a_match_an_empty_slot_then_the_least_recently_used_is_taken() {
        let caches = vec![cache(&[7, 7], 5), cache(&[8, 8], 3), cache(&[], 0)];
        assert_eq!(pick(&[0, 1, 2], &caches, &[1, 2], all), (2, 0), "the empty slot");
        assert_eq!(pick(&[0, 1], &caches, &[1, 2], all), (1, 0), "the least recently used");
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4]), 2);
    }
}
