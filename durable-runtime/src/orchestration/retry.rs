//! Retry policies for activities and sub-orchestrations.

use std::time::Duration;

/// How to retry a failed activity or sub-orchestration. Retries wait on durable timers, so a
/// retry schedule survives restarts and replays deterministically.
///
/// The delay before attempt `n + 1` is `first_retry_interval * backoff_coefficient^(n - 1)`,
/// capped by `max_retry_interval`. Retrying stops after `max_attempts` attempts in all, when the
/// next attempt would start after `retry_timeout` (measured from the first attempt), or at once
/// for a failure marked non-retriable.
///
/// ```
/// use std::time::Duration;
/// use durable::RetryPolicy;
///
/// let policy = RetryPolicy::new(5, Duration::from_secs(1))
///     .backoff_coefficient(2.0)
///     .max_retry_interval(Duration::from_secs(10))
///     .retry_timeout(Duration::from_secs(60));
/// assert_eq!(policy.delay_before_attempt(2), Duration::from_secs(1));
/// assert_eq!(policy.delay_before_attempt(4), Duration::from_secs(4));
/// assert_eq!(policy.delay_before_attempt(6), Duration::from_secs(10));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    max_attempts: u32,
    first_retry_interval: Duration,
    backoff_coefficient: f64,
    max_retry_interval: Option<Duration>,
    retry_timeout: Option<Duration>,
}

impl RetryPolicy {
    /// At most `max_attempts` attempts in all (the first call included), the first retry after
    /// `first_retry_interval`. The backoff coefficient starts at 1.0 (a constant interval).
    pub fn new(max_attempts: u32, first_retry_interval: Duration) -> Self {
        Self {
            max_attempts,
            first_retry_interval,
            backoff_coefficient: 1.0,
            max_retry_interval: None,
            retry_timeout: None,
        }
    }

    /// Multiplies the interval by this factor after each retry (must be at least 1.0).
    pub fn backoff_coefficient(mut self, coefficient: f64) -> Self {
        self.backoff_coefficient = coefficient;
        self
    }

    /// Caps the interval between attempts.
    pub fn max_retry_interval(mut self, interval: Duration) -> Self {
        self.max_retry_interval = Some(interval);
        self
    }

    /// Gives up once this much time has passed since the first attempt.
    pub fn retry_timeout(mut self, timeout: Duration) -> Self {
        self.retry_timeout = Some(timeout);
        self
    }

    /// The maximum number of attempts.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The configured retry timeout.
    pub fn timeout(&self) -> Option<Duration> {
        self.retry_timeout
    }

    /// The wait before attempt number `attempt` (2 for the first retry).
    pub fn delay_before_attempt(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(2).min(1_000) as i32;
        let factor = self.backoff_coefficient.powi(exponent);
        let seconds = self.first_retry_interval.as_secs_f64() * factor;
        let delay = if seconds.is_finite() && seconds < 1e12 {
            Duration::from_secs_f64(seconds)
        } else {
            Duration::from_secs(1_000_000_000_000)
        };
        match self.max_retry_interval {
            Some(cap) => delay.min(cap),
            None => delay,
        }
    }

    /// Checks the policy, explaining what to change when it cannot work.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        if !(self.backoff_coefficient >= 1.0 && self.backoff_coefficient.is_finite()) {
            return Err(format!(
                "backoff_coefficient must be a finite number >= 1.0, got {}",
                self.backoff_coefficient
            ));
        }
        if self.first_retry_interval.is_zero() {
            return Err("first_retry_interval must be greater than zero".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_policies_explain_themselves() {
        let policy = RetryPolicy::new(0, Duration::from_secs(1));
        assert!(policy.validate().unwrap_err().contains("max_attempts"));
        let policy = RetryPolicy::new(3, Duration::from_secs(1)).backoff_coefficient(0.5);
        assert!(
            policy
                .validate()
                .unwrap_err()
                .contains("backoff_coefficient")
        );
        let policy = RetryPolicy::new(3, Duration::ZERO);
        assert!(
            policy
                .validate()
                .unwrap_err()
                .contains("first_retry_interval")
        );
    }
}
