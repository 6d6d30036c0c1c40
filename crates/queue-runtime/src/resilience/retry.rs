//! Retries of transient provider errors: exponential backoff with full jitter.
//!
//! Hand-written on purpose: `backoff` is unmaintained (RUSTSEC-2025-0012) and `backon`'s jitter
//! adds a random delay on top of the exponential one instead of drawing the whole wait at random
//! ("full jitter", which spreads a herd of clients best). What remains is a ten-line schedule;
//! the randomness comes from `ring`.

use crate::telemetry::metric;
use std::future::Future;
use std::time::Duration;

use queue_core::{ErrorKind, QueueError, Result};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::time::Instant;
use tracing::debug;

/// How transient errors of provider calls are retried.
///
/// The wait before retry `n` (1-based) is drawn uniformly from
/// `[0, min(max_delay, initial_delay × multiplier^(n-1))]` ("full jitter"), and is at least what
/// the provider asked for ([`QueueError::retry_after`]). Retrying stops after `max_attempts`
/// calls, or when the next wait would end past `max_elapsed`; the error returned then is marked
/// [`retries_exhausted`](QueueError::retries_exhausted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Calls in all, the first included: 1 never retries.
    pub max_attempts: u32,
    /// The ceiling of the first wait.
    pub initial_delay: Duration,
    /// The largest ceiling any wait may have.
    pub max_delay: Duration,
    /// How much the ceiling grows per retry.
    pub multiplier: u32,
    /// The longest time, from the first call, that retrying may take.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, 1 s initial, 30 s at most, doubling, within 2 minutes.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            multiplier: 2,
            max_elapsed: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Calls in all, the first included.
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// The ceiling of the first wait.
    #[must_use]
    pub fn with_initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// The largest ceiling of a wait.
    #[must_use]
    pub fn with_max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// How much the ceiling grows per retry.
    #[must_use]
    pub fn with_multiplier(mut self, multiplier: u32) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// The longest time retrying may take, from the first call.
    #[must_use]
    pub fn with_max_elapsed(mut self, max_elapsed: Duration) -> Self {
        self.max_elapsed = max_elapsed;
        self
    }

    /// Fails with a [`Config`](ErrorKind::Config) error naming the first invalid field.
    pub fn validate(&self) -> Result<()> {
        match self.problems().first() {
            None => Ok(()),
            Some((field, reason)) => Err(QueueError::new(
                ErrorKind::Config,
                format!("retry: {field} {reason}"),
            )),
        }
    }

    /// Every invalid field, with what it must be.
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut problems = Vec::new();
        if self.max_attempts == 0 {
            problems.push(("max_attempts", "must be at least 1"));
        }
        if self.multiplier == 0 {
            problems.push(("multiplier", "must be at least 1"));
        }
        if self.initial_delay > self.max_delay {
            problems.push(("initial_delay", "must not exceed max_delay"));
        }
        problems
    }

    /// The ceiling of the wait before retry `retry` (1-based).
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let growth = self
            .multiplier
            .checked_pow(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial_delay
            .checked_mul(growth)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

/// Whether an operation may be repeated after a failure of unknown effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repeat {
    /// Repeating cannot do harm (receive, settle, renew, peek): every transient error is retried.
    Safe,
    /// Repeating after the broker may have acted would duplicate (send; a dead-letter that
    /// copies then deletes): only errors where the broker certainly refused are retried.
    OnlyIfRefused,
}

/// Whether `error` is worth another attempt of an operation that repeats as `repeat` says.
fn worth_retrying(error: &QueueError, repeat: Repeat) -> bool {
    if error.retries_exhausted() {
        return false;
    }
    match (error.kind(), repeat) {
        // Failing fast is the breaker's point: waiting out its open time here would undo it.
        (ErrorKind::CircuitOpen, _) => false,
        (kind, Repeat::Safe) => kind.is_transient(),
        (kind, Repeat::OnlyIfRefused) => kind.is_refusal(),
    }
}

/// Runs `attempt` until it succeeds, fails for good, or the policy's budget is spent.
pub(crate) async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    repeat: Repeat,
    operation: &'static str,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = Instant::now();
    let mut attempts = 0_u32;
    loop {
        attempts += 1;
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if !worth_retrying(&error, repeat) {
            return Err(error);
        }
        if attempts >= policy.max_attempts {
            return Err(exhausted(error, attempts));
        }
        let delay = full_jitter(policy.backoff_ceiling(attempts))
            .max(error.retry_after().unwrap_or_default());
        if started.elapsed() + delay > policy.max_elapsed {
            return Err(exhausted(error, attempts));
        }
        metrics::counter!(
            metric::RETRIES,
            "operation" => operation,
            "kind" => error.kind().as_str(),
        )
        .increment(1);
        debug!(operation, attempt = attempts, ?delay, kind = %error.kind(), "retrying");
        tokio::time::sleep(delay).await;
    }
}

/// Marks an error that survived retries; one that was never retried stays as it was.
fn exhausted(error: QueueError, attempts: u32) -> QueueError {
    if attempts > 1 {
        error.with_retries_exhausted()
    } else {
        error
    }
}

/// A wait drawn uniformly from `[0, ceiling]`.
fn full_jitter(ceiling: Duration) -> Duration {
    let mut bytes = [0_u8; 8];
    // The system generator does not fail on the platforms we build for; if it did, waiting the
    // whole ceiling is the safe side.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        return ceiling;
    }
    let fraction = u64::from_le_bytes(bytes) as f64 / u64::MAX as f64;
    ceiling.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn transient() -> QueueError {
        QueueError::new(ErrorKind::Connection, "reset")
    }

    #[test]
    fn ceilings_double_up_to_the_maximum() {
        let policy = RetryPolicy::default();
        let ceilings: Vec<u64> = (1..=7)
            .map(|n| policy.backoff_ceiling(n).as_secs())
            .collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(policy.backoff_ceiling(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_within_the_ceiling_and_varies() {
        let ceiling = Duration::from_secs(1);
        let waits: Vec<Duration> = (0..64).map(|_| full_jitter(ceiling)).collect();
        assert!(waits.iter().all(|wait| *wait <= ceiling));
        assert!(waits.iter().any(|wait| *wait != waits[0]));
    }

    #[test]
    fn invalid_policies_are_refused() {
        assert!(RetryPolicy::default().validate().is_ok());
        assert!(
            RetryPolicy::default()
                .with_max_attempts(0)
                .validate()
                .is_err()
        );
        assert!(
            RetryPolicy::default()
                .with_multiplier(0)
                .validate()
                .is_err()
        );
        let inverted = RetryPolicy::default().with_initial_delay(Duration::from_secs(60));
        assert!(inverted.validate().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_then_marked_exhausted() {
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let result: Result<()> = retry(&RetryPolicy::default(), Repeat::Safe, "receive", || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(transient()) }
        })
        .await;
        let error = result.expect_err("always fails");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(error.retries_exhausted());
        assert!(!error.is_transient());
        // Two waits, each at most its ceiling (1 s, then 2 s).
        assert!(started.elapsed() <= Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_success_is_returned() {
        let calls = AtomicU32::new(0);
        let result = retry(&RetryPolicy::default(), Repeat::Safe, "complete", || {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if call == 0 {
                    Err(transient())
                } else {
                    Ok(call)
                }
            }
        })
        .await;
        assert_eq!(result.ok(), Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured() {
        let started = Instant::now();
        let calls = AtomicU32::new(0);
        let _ = retry(&RetryPolicy::default(), Repeat::Safe, "send", || {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if call == 0 {
                    Err(QueueError::new(ErrorKind::Throttled, "slow down")
                        .with_retry_after(Duration::from_secs(7)))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert!(started.elapsed() >= Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn unsafe_operations_retry_only_refusals() {
        let calls = AtomicU32::new(0);
        let result: Result<()> = retry(
            &RetryPolicy::default(),
            Repeat::OnlyIfRefused,
            "send",
            || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(QueueError::new(ErrorKind::Timeout, "no answer")) }
            },
        )
        .await;
        // A timed-out send may have been sent: repeating it would duplicate.
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(!result.expect_err("fails").retries_exhausted());

        calls.store(0, Ordering::SeqCst);
        let _: Result<()> = retry(
            &RetryPolicy::default(),
            Repeat::OnlyIfRefused,
            "send",
            || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(QueueError::new(ErrorKind::Throttled, "slow down")) }
            },
        )
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_and_open_circuits_fail_at_once() {
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::LockLost,
            ErrorKind::CircuitOpen,
        ] {
            let calls = AtomicU32::new(0);
            let _: Result<()> = retry(&RetryPolicy::default(), Repeat::Safe, "receive", || {
                calls.fetch_add(1, Ordering::SeqCst);
                async move { Err(QueueError::new(kind, "no")) }
            })
            .await;
            assert_eq!(calls.load(Ordering::SeqCst), 1, "{kind}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_elapsed_budget_ends_retrying() {
        let policy = RetryPolicy::default()
            .with_max_attempts(100)
            .with_max_elapsed(Duration::from_secs(10));
        let started = Instant::now();
        let result: Result<()> = retry(&policy, Repeat::Safe, "receive", || async {
            Err(transient())
        })
        .await;
        assert!(result.expect_err("fails").retries_exhausted());
        assert!(started.elapsed() <= Duration::from_secs(10));
    }
}
