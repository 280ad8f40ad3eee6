//! How a failed batch is retried: how often, and how long to wait in between.

use std::time::Duration;

/// Retries of a failed batch with exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retry {
    /// Calls after the first one; 0 means no retry.
    pub(crate) retries: u32,
    /// Wait before the first retry.
    pub(crate) initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub(crate) max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            retries: 0,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl Retry {
    /// The wait after failed attempt `attempt` (1-based): the initial backoff,
    /// doubled after each further failure, capped at the maximum.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let retry = Retry {
            retries: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
        };
        let waits: Vec<_> = (1..=5).map(|a| retry.backoff(a).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 700, 700]);
        assert_eq!(retry.backoff(u32::MAX), Duration::from_millis(700));
    }
}
