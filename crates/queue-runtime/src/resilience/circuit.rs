//! A circuit breaker around a provider: stop calling a provider that keeps failing, try again
//! after a pause, close once it answers again.

use crate::telemetry::metric;
use std::fmt;
use std::time::Duration;

use parking_lot::Mutex;
use queue_core::{ErrorKind, QueueError, Result};
use tokio::time::Instant;
use tracing::{info, warn};

/// When the breaker opens and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitSettings {
    /// Consecutive failed calls that open the breaker.
    pub failure_threshold: u32,
    /// How long the breaker stays open before letting trial calls through.
    pub open_for: Duration,
    /// Successful trial calls (while half-open) that close the breaker again.
    pub success_threshold: u32,
}

impl Default for CircuitSettings {
    /// 5 consecutive failures open it for 30 s; 3 successful trials close it.
    fn default() -> Self {
        CircuitSettings {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
            success_threshold: 3,
        }
    }
}

impl CircuitSettings {
    /// Fails with a [`Config`](ErrorKind::Config) error naming the first invalid field.
    pub fn validate(&self) -> Result<()> {
        match self.problems().first() {
            None => Ok(()),
            Some((field, reason)) => Err(QueueError::new(
                ErrorKind::Config,
                format!("circuit: {field} {reason}"),
            )),
        }
    }

    /// Every invalid field, with what it must be.
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut problems = Vec::new();
        if self.failure_threshold == 0 {
            problems.push(("failure_threshold", "must be at least 1"));
        }
        if self.success_threshold == 0 {
            problems.push(("success_threshold", "must be at least 1"));
        }
        problems
    }
}

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls fail fast with [`ErrorKind::CircuitOpen`].
    Open,
    /// A few trial calls go through; their successes close the breaker, a failure opens it again.
    HalfOpen,
}

impl CircuitState {
    /// A stable, lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }

    /// The value of the `queue_circuit_state` gauge: 0 closed, 1 half-open, 2 open.
    pub const fn gauge_value(self) -> f64 {
        match self {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

struct Breaker {
    state: CircuitState,
    consecutive_failures: u32,
    opened_at: Instant,
    trial_successes: u32,
    trials_in_flight: u32,
}

/// The breaker of one provider; shared by every call through it.
pub struct CircuitBreaker {
    provider: &'static str,
    settings: CircuitSettings,
    breaker: Mutex<Breaker>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("provider", &self.provider)
            .field("settings", &self.settings)
            .field("state", &self.state())
            .finish()
    }
}

impl CircuitBreaker {
    /// A closed breaker for the provider named `provider`.
    pub fn new(provider: &'static str, settings: CircuitSettings) -> Self {
        metrics::gauge!(metric::CIRCUIT_STATE, "provider" => provider)
            .set(CircuitState::Closed.gauge_value());
        CircuitBreaker {
            provider,
            settings,
            breaker: Mutex::new(Breaker {
                state: CircuitState::Closed,
                consecutive_failures: 0,
                opened_at: Instant::now(),
                trial_successes: 0,
                trials_in_flight: 0,
            }),
        }
    }

    /// The state as of now (an open breaker whose pause has passed reports half-open).
    pub fn state(&self) -> CircuitState {
        let breaker = self.breaker.lock();
        match breaker.state {
            CircuitState::Open if breaker.opened_at.elapsed() >= self.settings.open_for => {
                CircuitState::HalfOpen
            }
            state => state,
        }
    }

    /// Runs `call` if the breaker lets it through, and records how it went.
    pub(crate) async fn call<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        let mut permit = self.permit()?;
        let result = call.await;
        permit.record(result.as_ref().err().map(QueueError::kind));
        result
    }

    fn permit(&self) -> Result<Permit<'_>> {
        let mut breaker = self.breaker.lock();
        if breaker.state == CircuitState::Open {
            let open_for = breaker.opened_at.elapsed();
            if open_for < self.settings.open_for {
                drop(breaker);
                return Err(self.open_error(self.settings.open_for - open_for));
            }
            self.set_state(&mut breaker, CircuitState::HalfOpen);
        }
        if breaker.state == CircuitState::HalfOpen {
            // Only as many trials at once as it takes to close: a sick provider gets a trickle.
            if breaker.trials_in_flight + breaker.trial_successes >= self.settings.success_threshold
            {
                drop(breaker);
                return Err(self.open_error(Duration::ZERO));
            }
            breaker.trials_in_flight += 1;
            return Ok(Permit {
                breaker: self,
                trial: true,
                recorded: false,
            });
        }
        Ok(Permit {
            breaker: self,
            trial: false,
            recorded: false,
        })
    }

    fn open_error(&self, retry_after: Duration) -> QueueError {
        metrics::counter!(metric::CIRCUIT_REJECTED, "provider" => self.provider).increment(1);
        QueueError::new(
            ErrorKind::CircuitOpen,
            format!(
                "the circuit breaker of the {} provider is open after repeated failures; \
                 calls fail fast until a trial call succeeds",
                self.provider
            ),
        )
        .with_retry_after(retry_after)
    }

    fn record(&self, trial: bool, error: Option<ErrorKind>) {
        let mut breaker = self.breaker.lock();
        if trial {
            breaker.trials_in_flight = breaker.trials_in_flight.saturating_sub(1);
        }
        let failed = error.is_some_and(ErrorKind::is_provider_failure);
        match (breaker.state, failed) {
            (CircuitState::Closed, true) => {
                breaker.consecutive_failures += 1;
                if breaker.consecutive_failures >= self.settings.failure_threshold {
                    self.open(&mut breaker);
                }
            }
            (CircuitState::Closed, false) => breaker.consecutive_failures = 0,
            (CircuitState::HalfOpen, true) => self.open(&mut breaker),
            (CircuitState::HalfOpen, false) if trial => {
                breaker.trial_successes += 1;
                if breaker.trial_successes >= self.settings.success_threshold {
                    breaker.consecutive_failures = 0;
                    self.set_state(&mut breaker, CircuitState::Closed);
                    info!(provider = self.provider, "circuit breaker closed");
                }
            }
            // A call let through before the breaker opened says nothing about now.
            _ => {}
        }
    }

    fn open(&self, breaker: &mut Breaker) {
        breaker.opened_at = Instant::now();
        self.set_state(breaker, CircuitState::Open);
        warn!(
            provider = self.provider,
            open_for = ?self.settings.open_for,
            "circuit breaker opened: calls fail fast"
        );
    }

    fn set_state(&self, breaker: &mut Breaker, state: CircuitState) {
        breaker.state = state;
        breaker.trial_successes = 0;
        metrics::gauge!(metric::CIRCUIT_STATE, "provider" => self.provider)
            .set(state.gauge_value());
    }
}

/// Leave to make one call. A trial whose call was dropped before it finished gives its slot back.
struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    trial: bool,
    recorded: bool,
}

impl Permit<'_> {
    fn record(&mut self, error: Option<ErrorKind>) {
        self.recorded = true;
        self.breaker.record(self.trial, error);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.trial && !self.recorded {
            let mut breaker = self.breaker.breaker.lock();
            breaker.trials_in_flight = breaker.trials_in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fail(breaker: &CircuitBreaker) -> Result<()> {
        breaker
            .call(async { Err(QueueError::new(ErrorKind::Connection, "down")) })
            .await
    }

    async fn succeed(breaker: &CircuitBreaker) -> Result<()> {
        breaker.call(async { Ok(()) }).await
    }

    #[tokio::test(start_paused = true)]
    async fn opens_fails_fast_half_opens_and_closes() {
        let breaker = CircuitBreaker::new("test", CircuitSettings::default());
        for _ in 0..4 {
            let _ = fail(&breaker).await;
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
        let _ = fail(&breaker).await;
        assert_eq!(breaker.state(), CircuitState::Open);

        let error = succeed(&breaker).await.expect_err("fails fast");
        assert_eq!(error.kind(), ErrorKind::CircuitOpen);
        assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));

        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        for _ in 0..3 {
            succeed(&breaker).await.expect("trial passes");
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_trial_opens_again() {
        let breaker = CircuitBreaker::new("test", CircuitSettings::default());
        for _ in 0..5 {
            let _ = fail(&breaker).await;
        }
        tokio::time::advance(Duration::from_secs(30)).await;
        succeed(&breaker).await.expect("first trial");
        let _ = fail(&breaker).await;
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(
            succeed(&breaker).await.map_err(|e| e.kind()),
            Err(ErrorKind::CircuitOpen)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn answers_that_are_not_failures_reset_the_count() {
        let breaker = CircuitBreaker::new("test", CircuitSettings::default());
        for _ in 0..4 {
            let _ = fail(&breaker).await;
        }
        let _ = breaker
            .call(async { Err::<(), _>(QueueError::new(ErrorKind::LockLost, "gone")) })
            .await;
        for _ in 0..4 {
            let _ = fail(&breaker).await;
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_lets_only_a_few_trials_through_at_once() {
        let breaker = CircuitBreaker::new("test", CircuitSettings::default());
        for _ in 0..5 {
            let _ = fail(&breaker).await;
        }
        tokio::time::advance(Duration::from_secs(30)).await;
        let trials: Vec<_> = (0..3).map(|_| breaker.permit().expect("trial")).collect();
        assert!(breaker.permit().is_err(), "a fourth concurrent trial");
        drop(trials);
        assert!(
            breaker.permit().is_ok(),
            "dropped trials give their slots back"
        );
    }

    #[test]
    fn invalid_settings_are_refused() {
        let settings = CircuitSettings {
            failure_threshold: 0,
            ..CircuitSettings::default()
        };
        assert!(settings.validate().is_err());
    }
}
