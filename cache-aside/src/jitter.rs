//! TTL jitter against cache avalanche (缓存雪崩): keys written together
//! expire spread over `[ttl·(1−j), ttl·(1+j)]` instead of all at once.

use std::time::Duration;

use rand::Rng;

/// Largest jitter accepted: a TTL never drops to zero.
pub(crate) const MAX_JITTER: f64 = 0.99;

/// `base` scaled by a factor drawn uniformly from `[1−jitter, 1+jitter]`,
/// in whole milliseconds, at least 1 ms. Options are validated (base at most
/// a year, jitter in `[0, MAX_JITTER]`); the clamps here only keep the
/// arithmetic finite whatever the input.
pub(crate) fn jittered_millis(base: Duration, jitter: f64) -> u64 {
    let base_ms = base.as_millis().min(u128::from(u64::MAX / 4)) as f64;
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, MAX_JITTER)
    };
    let factor = if jitter > 0.0 {
        1.0 + rand::rng().random_range(-jitter..=jitter)
    } else {
        1.0
    };
    ((base_ms * factor).round() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_inside_the_band_and_covers_it() {
        let base = Duration::from_secs(100);
        let (lo, hi) = (90_000, 110_000);
        let mut buckets = [0usize; 10];
        for _ in 0..20_000 {
            let ms = jittered_millis(base, 0.1);
            assert!((lo..=hi).contains(&ms), "{ms} outside [{lo}, {hi}]");
            buckets[((ms - lo) * 10 / (hi - lo + 1)) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| n > 0), "{buckets:?}");
    }

    #[test]
    fn no_jitter_is_exact_and_never_zero() {
        assert_eq!(jittered_millis(Duration::from_secs(3), 0.0), 3000);
        assert_eq!(jittered_millis(Duration::ZERO, 0.5), 1);
        assert_eq!(jittered_millis(Duration::from_secs(3), f64::NAN), 3000);
        assert_eq!(jittered_millis(Duration::from_secs(3), -1.0), 3000);
        let wide = jittered_millis(Duration::from_secs(3), 5.0);
        assert!((30..=5970).contains(&wide), "{wide}");
        assert!(jittered_millis(Duration::MAX, 0.99) < i64::MAX as u64);
    }
}
