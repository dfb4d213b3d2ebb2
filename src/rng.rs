//! A tiny seedable PRNG (splitmix64) for jitter and PING nonces.
//!
//! Not cryptographic, and never used where an attacker gains by guessing:
//! it only spreads timers and tells our own PINGs apart.

/// splitmix64: one `u64` of state, full period, good enough statistics for
/// jitter. Deterministic under a seed, so tests are exact.
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    /// A generator starting from `seed` (any value, zero included).
    pub(crate) fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform `f64` in `[0, 1)` (53 random bits).
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `[0, bound]` (inclusive); `0` when `bound == 0`.
    pub(crate) fn below_inclusive(&mut self, bound: u64) -> u64 {
        if bound == u64::MAX {
            return self.next_u64();
        }
        // Lemire's multiply-shift; the bias for our small bounds is < 2^-40.
        ((u128::from(self.next_u64()) * u128::from(bound + 1)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn same_seed_same_sequence_different_seed_different_sequence() {
        let a: Vec<u64> = (0..8)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..8)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..8)
            .map({
                let mut r = Rng::new(8);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn known_splitmix64_output() {
        // Reference values of splitmix64 seeded with 0.
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn f64_and_bounded_stay_in_range_and_cover_it() {
        let mut r = Rng::new(42);
        let mut lo = false;
        let mut hi = false;
        for _ in 0..10_000 {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
            let k = r.below_inclusive(10);
            assert!(k <= 10);
            lo |= k == 0;
            hi |= k == 10;
        }
        assert!(
            lo && hi,
            "both ends of [0, 10] should appear in 10 000 draws"
        );
        assert_eq!(r.below_inclusive(0), 0);
    }
}
