//! Jittered exponential backoff between reconnect attempts.

use std::time::Duration;

use rand::Rng;

/// Doubles from `min` up to `max`; each delay is drawn from `[d/2, d]` ("equal jitter") so
/// that many workers restarting together do not reconnect in lockstep.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(31));
        self.attempt = self.attempt.saturating_add(1);
        let ceiling = self.min.saturating_mul(factor).min(self.max);
        let half = ceiling / 2;
        let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = if jitter_nanos == 0 {
            0
        } else {
            rand::rng().random_range(0..=jitter_nanos)
        };
        half + Duration::from_nanos(jitter)
    }

    /// Starts over after a connection that worked.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(15);
        let mut backoff = Backoff::new(min, max);
        let first = backoff.next_delay();
        assert!(first >= min / 2 && first <= min, "{first:?}");
        for _ in 0..20 {
            let d = backoff.next_delay();
            assert!(d <= max, "{d:?}");
        }
        let capped = backoff.next_delay();
        assert!(capped >= max / 2, "{capped:?}");
        backoff.reset();
        assert!(backoff.next_delay() <= min);
    }
}
