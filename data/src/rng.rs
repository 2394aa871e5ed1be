//! A small, dependency-free, deterministic random toolkit.
//!
//! SplitMix64 derives seeds, xoshiro256** generates the numbers, and a few
//! helpers draw the distributions the generator needs (uniform, normal via
//! Box-Muller, lognormal, geometric, weighted choice). Everything is pure
//! integer or IEEE-754 arithmetic, so one seed gives the same stream on every
//! run of the same binary.

use std::f64::consts::TAU;

/// Independent random streams. Each user draws every file's rows from its own
/// stream, so changing one knob (say the share of users with assessments) does
/// not shift the draws of the other files.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stream {
    SyntheticCatalog = 1,
    CourseMeta = 2,
    Cohorts = 3,
    Profile = 4,
    Views = 5,
    Interests = 6,
    Assessments = 7,
    /// Shuffles and samples of [`crate::structure`], not the generator's.
    Structure = 8,
}

/// One step of SplitMix64: advances `state` and returns a well-mixed value.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256** (Blackman and Vigna), seeded through SplitMix64.
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose whole state is derived from `seed`.
    pub(crate) fn from_seed(seed: u64) -> Self {
        let mut sm = seed;
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        // The all-zero state is the one state xoshiro cannot leave.
        if s == [0; 4] {
            return Self { s: [1, 0, 0, 0] };
        }
        Self { s }
    }

    /// The generator for `stream` of item `index` (e.g. a user handle) under `seed`.
    pub(crate) fn stream(seed: u64, stream: Stream, index: u64) -> Self {
        let mut sm = seed;
        let a = splitmix64(&mut sm);
        let mut sm = a ^ (stream as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
        let b = splitmix64(&mut sm);
        let mut sm = b ^ index.wrapping_mul(0xA076_1D64_78BD_642F);
        Self::from_seed(splitmix64(&mut sm))
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub(crate) fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..n` (Lemire's unbiased multiply-shift). `n` must be > 0.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below needs a positive bound");
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }

    /// Uniform index into a slice of length `len` (> 0).
    pub(crate) fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// Uniform integer in `lo..=hi`.
    pub(crate) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        debug_assert!(lo <= hi);
        lo + self.below(hi - lo + 1)
    }

    /// Uniform real in `[lo, hi)`.
    pub(crate) fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Standard normal draw (Box-Muller; the second value is dropped so each
    /// call consumes exactly two words and streams stay easy to reason about).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.f64(); // in (0, 1], so ln is finite
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
    }

    /// Lognormal draw: `exp(mu + sigma * N(0, 1))`.
    pub(crate) fn lognormal(&mut self, mu: f64, sigma: f64) -> f64 {
        (mu + sigma * self.normal()).exp()
    }

    /// A positive count from a lognormal with the given mean and log-sd,
    /// rounded and clamped to `1..=max`.
    pub(crate) fn lognormal_count(&mut self, mean: f64, sigma: f64, max: u64) -> u64 {
        let mu = mean.ln() - sigma * sigma / 2.0;
        (self.lognormal(mu, sigma).round() as u64).clamp(1, max)
    }

    /// Number of successes before the first failure, each trial succeeding
    /// with probability `p_continue` (< 1); capped at `max`.
    pub(crate) fn geometric(&mut self, p_continue: f64, max: u32) -> u32 {
        let mut n = 0;
        while n < max && self.chance(p_continue) {
            n += 1;
        }
        n
    }

    /// Fisher-Yates shuffle.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }
}

/// Draws indices in proportion to non-negative weights (cumulative sums plus
/// binary search: O(log n) per draw).
#[derive(Clone, Debug)]
pub(crate) struct WeightedIndex {
    cumulative: Vec<f64>,
}

impl WeightedIndex {
    /// `None` when there is nothing with a positive, finite weight to draw.
    pub(crate) fn new(weights: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut total = 0.0;
        let cumulative: Vec<f64> = weights
            .into_iter()
            .map(|w| {
                if w.is_finite() && w > 0.0 {
                    total += w;
                }
                total
            })
            .collect();
        (total > 0.0).then_some(Self { cumulative })
    }

    /// One index, drawn in proportion to its weight.
    pub(crate) fn sample(&self, rng: &mut Rng) -> usize {
        let total = *self.cumulative.last().expect("non-empty by construction");
        let x = rng.f64() * total;
        self.cumulative
            .partition_point(|&c| c <= x)
            .min(self.cumulative.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_same_seed_and_stream_when_drawing_then_sequences_match_and_streams_differ() {
        let a: Vec<u64> = {
            let mut r = Rng::stream(7, Stream::Views, 3);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::stream(7, Stream::Views, 3);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = Rng::stream(7, Stream::Views, 4);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let d: Vec<u64> = {
            let mut r = Rng::stream(7, Stream::Interests, 3);
            (0..8).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn given_many_normal_draws_then_mean_and_sd_are_standard() {
        let mut r = Rng::from_seed(1);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var.sqrt() - 1.0).abs() < 0.01, "sd {}", var.sqrt());
    }

    #[test]
    fn given_a_bound_when_drawing_below_then_all_values_occur_and_stay_in_range() {
        let mut r = Rng::from_seed(2);
        let mut seen = [0u32; 7];
        for _ in 0..70_000 {
            seen[r.below(7) as usize] += 1;
        }
        for (i, &n) in seen.iter().enumerate() {
            assert!((9_000..11_000).contains(&n), "value {i} drawn {n} times");
        }
    }

    #[test]
    fn given_weights_with_a_zero_when_sampling_then_frequencies_follow_weights() {
        let w = WeightedIndex::new([1.0, 0.0, 3.0]).unwrap();
        let mut r = Rng::from_seed(3);
        let mut seen = [0u32; 3];
        for _ in 0..40_000 {
            seen[w.sample(&mut r)] += 1;
        }
        assert_eq!(seen[1], 0);
        let ratio = f64::from(seen[2]) / f64::from(seen[0]);
        assert!((2.8..3.2).contains(&ratio), "ratio {ratio}");
        assert!(WeightedIndex::new([0.0, 0.0]).is_none());
        assert!(WeightedIndex::new(std::iter::empty()).is_none());
    }

    #[test]
    fn given_a_mean_when_drawing_lognormal_counts_then_the_mean_is_close() {
        let mut r = Rng::from_seed(4);
        let n = 100_000;
        let total: u64 = (0..n).map(|_| r.lognormal_count(28.0, 1.0, 100_000)).sum();
        let mean = total as f64 / n as f64;
        assert!((26.5..29.5).contains(&mean), "mean {mean}");
    }
}
