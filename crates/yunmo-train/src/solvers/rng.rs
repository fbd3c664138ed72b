//! A small deterministic random number generator: xoshiro256++ seeded by SplitMix64.
//!
//! The integer stream (`next_u64`, `below`, `shuffle`) and `next_f64` are bit-for-bit the same on every
//! platform; the unit tests pin the first outputs. `normal` goes through `ln`, `sqrt` and `cos`, which
//! may differ in the last bit between math libraries.
//!
//! Non-goal: cryptographic quality.

/// Deterministic xoshiro256++ generator (not for cryptography).
#[derive(Clone, Debug)]
pub struct Rng {
    state: [u64; 4],
}

/// One step of SplitMix64, used only to spread the seed over xoshiro's 256 bits of state.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut mixed = *state;
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    mixed ^ (mixed >> 31)
}

impl Rng {
    /// A generator whose whole stream is determined by `seed` (any value, zero included).
    pub fn new(seed: u64) -> Rng {
        let mut seed_state = seed;
        let state = [splitmix64(&mut seed_state), splitmix64(&mut seed_state), splitmix64(&mut seed_state), splitmix64(&mut seed_state)];
        Rng { state }
    }

    /// The next 64 random bits (xoshiro256++).
    pub fn next_u64(&mut self) -> u64 {
        let state = &mut self.state;
        let result = state[0].wrapping_add(state[3]).rotate_left(23).wrapping_add(state[0]);
        let shifted = state[1] << 17;
        state[2] ^= state[0];
        state[3] ^= state[1];
        state[1] ^= state[2];
        state[0] ^= state[3];
        state[2] ^= shifted;
        state[3] = state[3].rotate_left(45);
        result
    }

    /// A uniform value in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `0..n`, without modulo bias (Lemire's multiply-and-reject); `0` when `n == 0`.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let bound = n as u64;
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(bound);
            if (product as u64) >= threshold {
                return (product >> 64) as usize;
            }
        }
    }

    /// A standard normal value (mean 0, variance 1) by the Box-Muller transform (one draw per call, the
    /// sine half is discarded so the stream position does not depend on call parity).
    pub fn normal(&mut self) -> f64 {
        // 1 - u lies in (0, 1], so the logarithm is finite.
        let radius_uniform = 1.0 - self.next_f64();
        let angle_uniform = self.next_f64();
        (-2.0 * radius_uniform.ln()).sqrt() * (std::f64::consts::TAU * angle_uniform).cos()
    }

    /// Shuffles `items` in place (Fisher-Yates, every permutation equally likely).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_stream() {
        // SplitMix64 from state 0: the first output of the reference C implementation is 0xe220a8397b1dcdaf.
        let mut state = 0;
        assert_eq!(splitmix64(&mut state), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn outputs_are_pinned() {
        // Computed with a line-by-line port of the reference xoshiro256++ / SplitMix64 C code.
        let mut rng = Rng::new(0);
        assert_eq!(rng.next_u64(), 0x5317_5d61_490b_23df);
        assert_eq!(rng.next_u64(), 0x61da_6f3d_c380_d507);
        assert_eq!(rng.next_u64(), 0x5c0f_df91_ec9a_7bfc);
        let mut rng = Rng::new(42);
        assert_eq!(rng.next_u64(), 0xd076_4d4f_4476_689f);
        assert_eq!(rng.next_u64(), 0x519e_4174_576f_3791);
        let mut rng = Rng::new(7);
        let draws: Vec<usize> = (0..10).map(|_| rng.below(10)).collect();
        assert_eq!(draws, vec![0, 1, 7, 4, 9, 4, 7, 3, 9, 0]);
        let mut rng = Rng::new(7);
        let mut items: Vec<usize> = (0..10).collect();
        rng.shuffle(&mut items);
        assert_eq!(items, vec![3, 8, 9, 4, 6, 7, 2, 5, 1, 0]);
    }

    #[test]
    fn uniform_and_normal_have_the_right_moments() {
        let mut rng = Rng::new(1);
        let n = 20_000;
        let uniforms: Vec<f64> = (0..n).map(|_| rng.next_f64()).collect();
        assert!(uniforms.iter().all(|&u| (0.0..1.0).contains(&u)));
        let mean = uniforms.iter().sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "uniform mean {mean}");
        let normals: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let normal_mean = normals.iter().sum::<f64>() / n as f64;
        let normal_variance = normals.iter().map(|v| (v - normal_mean).powi(2)).sum::<f64>() / n as f64;
        // Standard errors are about 0.007 for the mean and 0.01 for the variance.
        assert!(normal_mean.abs() < 0.03, "normal mean {normal_mean}");
        assert!((normal_variance - 1.0).abs() < 0.05, "normal variance {normal_variance}");
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = Rng::new(3);
        let mut seen = [0usize; 7];
        for _ in 0..7000 {
            seen[rng.below(7)] += 1;
        }
        assert!(seen.iter().all(|&count| count > 850 && count < 1150), "{seen:?}");
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.below(1), 0);
    }

    #[test]
    fn shuffle_is_a_permutation_and_deterministic() {
        let mut first: Vec<u32> = (0..100).collect();
        let mut second = first.clone();
        Rng::new(9).shuffle(&mut first);
        Rng::new(9).shuffle(&mut second);
        assert_eq!(first, second);
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<u32>>());
        assert_ne!(first, sorted);
    }
}
