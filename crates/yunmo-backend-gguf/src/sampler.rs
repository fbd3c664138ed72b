//! Token sampling over one row of logits: penalties, temperature, top-k, top-p, a seeded generator,
//! and log-probabilities. Pure Rust, so the same seed gives the same tokens whatever else is batched.

use std::collections::HashMap;

use yunmo_types::GenerateParams;

/// One sampled token.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    /// The token chosen.
    pub token: u32,
    /// Its log-probability under the model's own distribution, when asked for.
    pub logprob: Option<f32>,
    /// The most likely tokens and their log-probabilities, most likely first, when asked for.
    pub top: Vec<(u32, f32)>,
}

/// Candidates kept before the exact top-p sort is needed; above this the whole vocabulary is sorted.
const TOP_P_FAST_CANDIDATES: usize = 256;

/// Per-sequence sampler state.
pub struct Sampler {
    temperature: f32,
    top_p: f32,
    top_k: usize,
    presence_penalty: f32,
    frequency_penalty: f32,
    repetition_penalty: f32,
    logprobs: Option<usize>,
    logit_bias: Vec<(u32, f32)>,
    rng: SplitMix64,
    counts: HashMap<u32, u32>,
    scratch: Vec<f32>,
}

impl Sampler {
    /// A sampler for one sequence.
    pub fn new(params: &GenerateParams) -> Self {
        Sampler {
            temperature: params.temperature,
            top_p: params.top_p,
            top_k: params.top_k as usize,
            presence_penalty: params.presence_penalty,
            frequency_penalty: params.frequency_penalty,
            repetition_penalty: params.repetition_penalty,
            logprobs: params.logprobs.map(|n| n as usize),
            logit_bias: params.logit_bias.clone(),
            rng: SplitMix64(params.seed),
            counts: HashMap::new(),
            scratch: Vec::new(),
        }
    }

    /// Whether the logits are changed before choosing (penalties or a bias).
    fn adjusted(&self) -> bool {
        !self.logit_bias.is_empty()
            || (!self.counts.is_empty()
                && (self.presence_penalty != 0.0 || self.frequency_penalty != 0.0 || self.repetition_penalty != 1.0))
    }

    /// Chooses the next token from `logits` and remembers it for the penalties.
    pub fn sample(&mut self, logits: &[f32]) -> Sampled {
        self.sample_allowed(logits, None)
    }

    /// Like [`Sampler::sample`], among the tokens whose bits are set in `allowed` (32 tokens per word, token
    /// `i` at bit `i % 32` of word `i / 32`): a grammar's mask. Log-probabilities stay the model's own.
    pub fn sample_allowed(&mut self, logits: &[f32], allowed: Option<&[u32]>) -> Sampled {
        let (logprob_of, top) = match self.logprobs {
            Some(n) => {
                let log_z = log_sum_exp(logits);
                (Some(log_z), top_n(logits, n).into_iter().map(|(token, logit)| (token, logit - log_z)).collect())
            }
            None => (None, Vec::new()),
        };
        let token = if self.temperature <= 1e-5 && !self.adjusted() && allowed.is_none() {
            argmax(logits)
        } else {
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            scratch.extend_from_slice(logits);
            if let Some(allowed) = allowed {
                forbid_outside(&mut scratch, allowed);
            }
            for (token, count) in &self.counts {
                if let Some(logit) = scratch.get_mut(*token as usize) {
                    if self.repetition_penalty != 1.0 {
                        *logit = if *logit > 0.0 { *logit / self.repetition_penalty } else { *logit * self.repetition_penalty };
                    }
                    *logit -= self.presence_penalty + self.frequency_penalty * *count as f32;
                }
            }
            for (token, bias) in &self.logit_bias {
                if let Some(logit) = scratch.get_mut(*token as usize) {
                    *logit += bias;
                }
            }
            let token = if self.temperature <= 1e-5 { argmax(&scratch) } else { self.draw(&mut scratch) };
            self.scratch = scratch;
            token
        };
        *self.counts.entry(token).or_default() += 1;
        Sampled { token, logprob: logprob_of.map(|log_z| logits[token as usize] - log_z), top }
    }

    /// Samples from temperature-scaled, top-k and top-p filtered logits (modified in place).
    fn draw(&mut self, logits: &mut [f32]) -> u32 {
        let inverse_temperature = 1.0 / self.temperature;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        // Unnormalised probabilities, computed once.
        for logit in logits.iter_mut() {
            *logit = ((*logit - max) * inverse_temperature).exp();
        }
        let mut candidates: Vec<u32> = Vec::new();
        let vocab = logits.len();
        let keep = if self.top_k > 0 { self.top_k.min(vocab) } else { vocab };
        let need_sorted = keep < vocab || self.top_p < 1.0;
        if need_sorted {
            candidates.extend(0..vocab as u32);
            let by_prob_desc = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
            let total: f32 = logits.iter().sum();
            let fast = keep.min(TOP_P_FAST_CANDIDATES);
            if fast < vocab {
                candidates.select_nth_unstable_by(fast - 1, by_prob_desc);
                let head_mass: f32 = candidates[..fast].iter().map(|t| logits[*t as usize]).sum();
                // The exact cut lies within the head when the head holds enough mass (or top-k is smaller).
                if keep <= fast || head_mass >= self.top_p * total {
                    candidates.truncate(fast);
                }
            }
            candidates.sort_unstable_by(by_prob_desc);
            candidates.truncate(keep);
            if self.top_p < 1.0 {
                let kept_mass: f32 = candidates.iter().map(|t| logits[*t as usize]).sum();
                let mut cumulative = 0.0;
                let mut cut = candidates.len();
                for (index, token) in candidates.iter().enumerate() {
                    cumulative += logits[*token as usize];
                    if cumulative >= self.top_p * kept_mass {
                        cut = index + 1;
                        break;
                    }
                }
                candidates.truncate(cut);
            }
            let mass: f32 = candidates.iter().map(|t| logits[*t as usize]).sum();
            let mut target = self.rng.next_f32() * mass;
            for token in &candidates {
                target -= logits[*token as usize];
                if target <= 0.0 {
                    return *token;
                }
            }
            *candidates.last().expect("top-k keeps at least one token. This is a bug.")
        } else {
            let mass: f32 = logits.iter().sum();
            let mut target = self.rng.next_f32() * mass;
            for (token, probability) in logits.iter().enumerate() {
                target -= probability;
                if target <= 0.0 {
                    return token as u32;
                }
            }
            argmax(logits)
        }
    }
}

/// Sets the logits of tokens whose bit is clear in `allowed` to minus infinity.
fn forbid_outside(logits: &mut [f32], allowed: &[u32]) {
    for (word_index, chunk) in logits.chunks_mut(32).enumerate() {
        let word = allowed.get(word_index).copied().unwrap_or(0);
        if word == u32::MAX {
            continue;
        }
        for (bit, logit) in chunk.iter_mut().enumerate() {
            if word & (1 << bit) == 0 {
                *logit = f32::NEG_INFINITY;
            }
        }
    }
}

/// Index of the largest value (the first on ties).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (index, value) in values.iter().enumerate() {
        if *value > values[best] {
            best = index;
        }
    }
    best as u32
}

fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|logit| f64::from(logit - max).exp()).sum();
    max + sum.ln() as f32
}

/// The `n` largest logits with their token ids, largest first.
fn top_n(logits: &[f32], n: usize) -> Vec<(u32, f32)> {
    if n == 0 {
        return Vec::new();
    }
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    let n = n.min(ids.len());
    let by_logit_desc = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
    if n < ids.len() {
        ids.select_nth_unstable_by(n - 1, by_logit_desc);
        ids.truncate(n);
    }
    ids.sort_unstable_by(by_logit_desc);
    ids.into_iter().map(|id| (id, logits[id as usize])).collect()
}

/// A small, fast, seedable generator (Steele, Lea and Flood's SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, seed: u64) -> GenerateParams {
        GenerateParams { temperature, seed, ..GenerateParams::default() }
    }

    #[test]
    fn a_mask_keeps_only_allowed_tokens_greedy_and_sampled() {
        let logits: Vec<f32> = (0..40).map(|i| i as f32 / 10.0).collect();
        // Tokens 3 and 33 allowed.
        let allowed = [1u32 << 3, 1u32 << 1];
        let mut greedy = Sampler::new(&GenerateParams { temperature: 0.0, ..GenerateParams::default() });
        assert_eq!(greedy.sample_allowed(&logits, Some(&allowed)).token, 33);
        let mut sampled = Sampler::new(&GenerateParams { temperature: 1.5, seed: 3, ..GenerateParams::default() });
        let drawn: std::collections::HashSet<u32> = (0..200).map(|_| sampled.sample_allowed(&logits, Some(&allowed)).token).collect();
        assert_eq!(drawn, [3, 33].into_iter().collect());
    }

    #[test]
    fn greedy_takes_the_largest_logit() {
        let mut sampler = Sampler::new(&params(0.0, 1));
        assert_eq!(sampler.sample(&[0.1, 2.0, 1.9, -1.0]).token, 1);
    }

    #[test]
    fn same_seed_same_tokens_other_seed_differs() {
        let logits: Vec<f32> = (0..100).map(|i| (i % 7) as f32 * 0.3).collect();
        let run = |seed| {
            let mut sampler = Sampler::new(&params(1.0, seed));
            (0..50).map(|_| sampler.sample(&logits).token).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_small_keeps_the_head() {
        let logits = [0.0, 3.0, 2.9, 1.0];
        let mut sampler = Sampler::new(&GenerateParams { top_k: 1, ..params(1.0, 3) });
        assert!((0..20).all(|_| sampler.sample(&logits).token == 1));
        let mut sampler = Sampler::new(&GenerateParams { top_p: 0.01, ..params(1.0, 3) });
        assert!((0..20).all(|_| sampler.sample(&logits).token == 1));
    }

    #[test]
    fn top_p_cut_is_exact_over_a_large_vocabulary() {
        // 1000 equal tokens: top_p 0.5 must keep exactly 500 of them, beyond the fast candidate head.
        let logits = vec![1.0; 1000];
        let mut sampler = Sampler::new(&GenerateParams { top_p: 0.5, ..params(1.0, 11) });
        let drawn: std::collections::HashSet<u32> = (0..5000).map(|_| sampler.sample(&logits).token).collect();
        assert!(drawn.iter().all(|token| *token < 500), "ties keep the lowest ids");
        assert!(drawn.len() > 400, "the whole nucleus is reachable: {}", drawn.len());
    }

    #[test]
    fn penalties_move_away_from_repeated_tokens() {
        let logits = [2.0, 1.9];
        let mut sampler = Sampler::new(&GenerateParams { frequency_penalty: 1.0, ..params(0.0, 0) });
        assert_eq!(sampler.sample(&logits).token, 0);
        assert_eq!(sampler.sample(&logits).token, 1, "the penalty on token 0 makes token 1 the largest");
        // Repetition penalty: 2.0 / 1.1 < 1.9, so token 0 loses after it was generated; a negative logit is
        // multiplied, so it falls further.
        let mut repeated = Sampler::new(&GenerateParams { repetition_penalty: 1.1, ..params(0.0, 0) });
        assert_eq!(repeated.sample(&logits).token, 0);
        assert_eq!(repeated.sample(&logits).token, 1);
        let mut negative = Sampler::new(&GenerateParams { repetition_penalty: 1.5, ..params(0.0, 0) });
        assert_eq!(negative.sample(&[-1.0, -1.2]).token, 0);
        assert_eq!(negative.sample(&[-1.0, -1.2]).token, 1, "-1.5 < -1.2");
    }

    #[test]
    fn logprobs_are_log_softmax_and_sorted() {
        let logits = [0.0f32, 1.0, 2.0];
        let mut sampler = Sampler::new(&GenerateParams { logprobs: Some(2), ..params(0.0, 0) });
        let sampled = sampler.sample(&logits);
        let z = (0f32.exp() + 1f32.exp() + 2f32.exp()).ln();
        assert_eq!(sampled.token, 2);
        assert!((sampled.logprob.unwrap() - (2.0 - z)).abs() < 1e-6);
        assert_eq!(sampled.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![2, 1]);
        assert!((sampled.top[1].1 - (1.0 - z)).abs() < 1e-6);
    }

    #[test]
    fn logit_bias_bans_and_forces_tokens() {
        let logits = [3.0, 2.0, 1.0, 0.5];
        let mut sampler = Sampler::new(&GenerateParams { logit_bias: vec![(0, -100.0)], ..params(0.0, 0) });
        assert_eq!(sampler.sample(&logits).token, 1, "-100 bans the greedy choice");
        let mut sampler = Sampler::new(&GenerateParams { logit_bias: vec![(3, 100.0)], ..params(1.0, 7) });
        for _ in 0..20 {
            assert_eq!(sampler.sample(&logits).token, 3, "+100 forces a token even when sampling");
        }
        let mut sampler = Sampler::new(&GenerateParams { logit_bias: vec![(2, 0.0)], logprobs: Some(1), ..params(0.0, 0) });
        let sampled = sampler.sample(&logits);
        assert_eq!(sampled.token, 0, "a zero bias changes nothing");
        assert!(sampled.logprob.unwrap() < 0.0);
    }
}
