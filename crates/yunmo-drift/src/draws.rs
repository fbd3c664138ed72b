//! Deterministic normal draws (xorshift64* and Box-Muller), with no dependency: the same numbers on every
//! run, for tests and benchmarks that push known distributions through a monitor or a server.

/// A seeded generator of standard normal draws.
#[derive(Debug, Clone)]
pub struct Normal(u64);

impl Normal {
    /// A generator from `seed` (0 is replaced by a fixed odd constant).
    pub fn new(seed: u64) -> Normal {
        Normal(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }

    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// The next standard normal draw.
    pub fn next_normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn draws_have_mean_zero_and_variance_one() {
        let mut normal = super::Normal::new(1);
        let draws: Vec<f64> = (0..20_000).map(|_| normal.next_normal()).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let variance = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!(mean.abs() < 0.03 && (variance - 1.0).abs() < 0.05, "{mean} {variance}");
    }
}
