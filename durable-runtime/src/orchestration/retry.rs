//! Retry policies for activities and sub-orchestrations.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::FailureDetails;

/// Decides whether a failed attempt is retried (see [`RetryPolicy::handle`]).
type Handler = Arc<dyn Fn(&RetryContext<'_>) -> bool + Send + Sync>;

/// How to retry a failed activity or sub-orchestration. Retries wait on durable timers, so a
/// retry schedule survives restarts and replays deterministically.
///
/// The delay before attempt `n + 1` is `first_retry_interval * backoff_coefficient^(n - 1)`,
/// capped by `max_retry_interval`. Retrying stops after `max_attempts` attempts in all, when the
/// next attempt would start after `retry_timeout` (measured from the first attempt), or at once
/// for a failure marked non-retriable, or when the policy's [`handle`](Self::handle) predicate
/// declines the failure.
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
#[derive(Clone)]
pub struct RetryPolicy {
    max_attempts: u32,
    first_retry_interval: Duration,
    backoff_coefficient: f64,
    max_retry_interval: Option<Duration>,
    retry_timeout: Option<Duration>,
    handle: Option<Handler>,
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("first_retry_interval", &self.first_retry_interval)
            .field("backoff_coefficient", &self.backoff_coefficient)
            .field("max_retry_interval", &self.max_retry_interval)
            .field("retry_timeout", &self.retry_timeout)
            .field(
                "handle",
                &self.handle.as_ref().map(|_| "Fn(&RetryContext) -> bool"),
            )
            .finish()
    }
}

/// What a [`RetryPolicy::handle`] predicate sees of a failed attempt.
#[derive(Debug)]
pub struct RetryContext<'a> {
    attempt: u32,
    failure: &'a FailureDetails,
    elapsed: Duration,
}

impl<'a> RetryContext<'a> {
    /// The context of failed attempt number `attempt` (1 for the first call), `elapsed`
    /// orchestration time after the first attempt started.
    pub fn new(attempt: u32, failure: &'a FailureDetails, elapsed: Duration) -> Self {
        Self {
            attempt,
            failure,
            elapsed,
        }
    }

    /// The number of the attempt that failed (1 for the first call).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// How the attempt failed.
    pub fn failure(&self) -> &FailureDetails {
        self.failure
    }

    /// Orchestration time since the first attempt started.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
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
            handle: None,
        }
    }

    /// Retries only failures for which `predicate` returns `true` (the others fail the task at
    /// once), within the other limits of the policy. The predicate runs in the orchestration,
    /// on every replay: it must be deterministic (decide from the context only).
    ///
    /// ```
    /// use std::time::Duration;
    /// use durable::{FailureDetails, RetryContext, RetryPolicy};
    ///
    /// let policy = RetryPolicy::new(5, Duration::from_secs(1))
    ///     .handle(|retry| retry.failure().error_type == "TimeoutError" && retry.attempt() < 3);
    /// let timeout = FailureDetails::new("TimeoutError", "the bank did not answer");
    /// assert!(policy.should_retry(&RetryContext::new(1, &timeout, Duration::ZERO)));
    /// assert!(!policy.should_retry(&RetryContext::new(3, &timeout, Duration::ZERO)));
    /// let declined = FailureDetails::new("CardDeclined", "insufficient funds");
    /// assert!(!policy.should_retry(&RetryContext::new(1, &declined, Duration::ZERO)));
    /// ```
    pub fn handle(
        mut self,
        predicate: impl Fn(&RetryContext<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.handle = Some(Arc::new(predicate));
        self
    }

    /// Whether the policy's [`handle`](Self::handle) predicate (if any) accepts retrying this
    /// failure; the attempt and time limits are checked apart from it.
    pub fn should_retry(&self, retry: &RetryContext<'_>) -> bool {
        self.handle.as_ref().is_none_or(|handle| handle(retry))
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
