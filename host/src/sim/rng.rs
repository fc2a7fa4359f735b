//! A small seeded PRNG (SplitMix64), so a simulation is a pure function of its inputs and seed.

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for load noise and service-time jitter.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// An independent stream for one purpose of one service, derived from the run's seed.
    pub(crate) fn stream(seed: u64, service: &str, purpose: &str) -> Self {
        let mut mixer = SplitMix64::new(seed ^ fnv1a(service.as_bytes()).rotate_left(17) ^ fnv1a(purpose.as_bytes()));
        SplitMix64::new(mixer.next_u64())
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller; the second value is discarded for simplicity of state).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A Poisson count with mean `lambda`: Knuth's method for small means, a rounded normal for large ones.
    pub(crate) fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda.is_nan() || lambda <= 0.0 {
            return 0;
        }
        if lambda < 30.0 {
            let limit = (-lambda).exp();
            let mut product = self.next_f64();
            let mut count = 0;
            while product > limit {
                count += 1;
                product *= self.next_f64();
            }
            count
        } else {
            (lambda + lambda.sqrt() * self.normal()).round().max(0.0) as u64
        }
    }
}

/// FNV-1a: a stable hash of names (std's hasher is randomly seeded per process).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_streams_differ() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = SplitMix64::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = SplitMix64::new(7);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(
            SplitMix64::stream(7, "stt", "arrivals").next_u64(),
            SplitMix64::stream(7, "mt", "arrivals").next_u64()
        );
    }

    #[test]
    fn poisson_mean_is_close() {
        let mut r = SplitMix64::new(1);
        for lambda in [0.3, 4.0, 80.0] {
            let n = 20_000;
            let mean = (0..n).map(|_| r.poisson(lambda) as f64).sum::<f64>() / n as f64;
            assert!((mean - lambda).abs() < lambda * 0.05 + 0.02, "lambda {lambda}: mean {mean}");
        }
    }
}
