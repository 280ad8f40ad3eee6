//! A limit from throughput and the best latency: the bandwidth-delay
//! product, as TCP BBR estimates it and go-zero's shedder applies it.

use std::time::Duration;

use tokio::time::Instant;

use super::{LimitAlgorithm, Outcome, Sample, check_count, check_factor};
use crate::config::ConfigError;

/// The concurrency a service sustains: the most calls that completed in one
/// bucket of the window, times the lowest average RTT of a bucket, over the
/// bucket's length (Little's law: in flight = throughput × latency), times
/// `headroom`.
///
/// Where [`Gradient`](super::Gradient) reads latency alone, `Bbr` reads what
/// got *done*. When the machine itself saturates (the CPU is shared by the
/// server, its load and its dependencies), every call's RTT grows together,
/// including the scheduling delay, and a latency gradient cannot tell that
/// from a slow dependency: it falls to its minimum and throughput with it.
/// The throughput of the best buckets stays what the service can do, so the
/// limit stays at the concurrency that serves it, and calls beyond it, which
/// would only wait, are shed. This is the rule of go-zero's adaptive shedder
/// (`maxPass × minRt`), without its CPU gate: the limit always applies.
///
/// - Only successful calls count, and only completed buckets of the window
///   (the current one is still filling); until one bucket completed, the
///   limit is left as it is (the handle's `initial_limit`).
/// - The estimate is recomputed once per bucket, so a sample costs a few
///   additions.
/// - From a cold start the limit can at most multiply by `headroom` per
///   bucket (it is what passed, times the headroom): with the defaults,
///   from 20 to 1,000 in 6 buckets (0.6 s). Give the handle a `min_limit`
///   that covers a sudden crowd you want served at once.
///
/// | setting | default | valid range |
/// |---|---|---|
/// | `window` | 5 s | 10 ms to 1 hour, and `window / buckets` ≥ 1 ms |
/// | `buckets` | 50 | 2 to 1,024 |
/// | `headroom` | 2.0 | 1.0 to 10.0 |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seckill_overload::adaptive::{AdaptiveLimit, Bbr};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bbr = Bbr::builder()
///     .window(Duration::from_secs(5))
///     .buckets(50)
///     .headroom(2.0)
///     .build()?;
/// let limit = AdaptiveLimit::builder(bbr).min_limit(64).max_limit(10_000).build()?;
/// # let _ = limit;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Bbr {
    bucket: Duration,
    buckets: Vec<Bucket>,
    headroom: f64,
    start: Option<Instant>,
    /// The bucket index the estimate was computed in, and the estimate.
    estimate: Option<(u64, Option<usize>)>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which bucket since the start this slot holds.
    index: u64,
    passes: u64,
    rtt_total: Duration,
}

/// Settings of a [`Bbr`], checked by [`BbrBuilder::build`].
#[derive(Debug, Clone)]
pub struct BbrBuilder {
    window: Duration,
    buckets: u32,
    headroom: f64,
}

impl BbrBuilder {
    /// The span throughput and latency are remembered over (default 5 s).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Buckets of the window (default 50).
    pub fn buckets(mut self, buckets: u32) -> Self {
        self.buckets = buckets;
        self
    }

    /// Factor over the measured concurrency (default 2.0): room for bursts
    /// and for growth.
    pub fn headroom(mut self, headroom: f64) -> Self {
        self.headroom = headroom;
        self
    }

    /// The algorithm.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the field out of its range.
    pub fn build(self) -> Result<Bbr, ConfigError> {
        let (min, max) = (Duration::from_millis(10), Duration::from_secs(3_600));
        if !(min..=max).contains(&self.window) {
            return Err(ConfigError::new(
                "window",
                format!("{min:?} to {max:?}"),
                format!("{:?}", self.window),
            ));
        }
        let buckets = check_count("buckets", 2, 1_024, self.buckets)?;
        let bucket = self.window / buckets;
        if bucket < Duration::from_millis(1) {
            return Err(ConfigError::new(
                "window / buckets",
                "at least 1ms",
                format!("{bucket:?}"),
            ));
        }
        Ok(Bbr {
            bucket,
            buckets: vec![Bucket::default(); buckets as usize],
            headroom: check_factor("headroom", 1.0, 10.0, self.headroom)?,
            start: None,
            estimate: None,
        })
    }
}

impl Bbr {
    /// The settings, starting from the defaults.
    pub fn builder() -> BbrBuilder {
        BbrBuilder {
            window: Duration::from_secs(5),
            buckets: 50,
            headroom: 2.0,
        }
    }

    /// The estimate from the completed buckets of the window before `now`.
    fn estimate(&self, now: u64) -> Option<usize> {
        let n = self.buckets.len() as u64;
        let mut max_pass = 0u64;
        let mut min_rtt: Option<Duration> = None;
        for b in &self.buckets {
            let in_window = b.index < now && b.index + n > now;
            if !in_window || b.passes == 0 {
                continue;
            }
            max_pass = max_pass.max(b.passes);
            let average = b.rtt_total / u32::try_from(b.passes).unwrap_or(u32::MAX);
            min_rtt = Some(min_rtt.map_or(average, |m| m.min(average)));
        }
        let min_rtt = min_rtt?;
        let in_flight = max_pass as f64 * min_rtt.as_secs_f64() / self.bucket.as_secs_f64();
        let limit = (in_flight * self.headroom).ceil();
        Some(if limit >= usize::MAX as f64 {
            usize::MAX
        } else {
            (limit as usize).max(1)
        })
    }
}

impl LimitAlgorithm for Bbr {
    fn update(&mut self, limit: usize, sample: &Sample) -> usize {
        let now = Instant::now();
        let start = *self.start.get_or_insert(now);
        let index = u64::try_from(now.duration_since(start).as_nanos() / self.bucket.as_nanos())
            .unwrap_or(u64::MAX);
        let n = self.buckets.len() as u64;
        let slot = &mut self.buckets[(index % n) as usize];
        if slot.index != index {
            *slot = Bucket {
                index,
                ..Bucket::default()
            };
        }
        if sample.outcome == Outcome::Success {
            slot.passes += 1;
            slot.rtt_total = slot.rtt_total.saturating_add(sample.rtt);
        }
        let estimate = match self.estimate {
            Some((at, estimate)) if at == index => estimate,
            _ => {
                let estimate = self.estimate(index);
                self.estimate = Some((index, estimate));
                estimate
            }
        };
        estimate.unwrap_or(limit)
    }
}
