//! Resilience for provider calls: retries of transient errors with exponential backoff and full
//! jitter, and a circuit breaker, as one decorator over any provider ([`ResilientProvider`]).
//!
//! Where each layer sits, and why: [docs/resilience.md](../../../docs/resilience.md).

mod circuit;
mod provider;
mod retry;

pub use circuit::{CircuitBreaker, CircuitSettings, CircuitState};
pub use provider::ResilientProvider;
pub use retry::RetryPolicy;

use queue_core::Result;

/// How provider calls are retried and when the breaker opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resilience {
    /// Retries of transient errors.
    pub retry: RetryPolicy,
    /// The circuit breaker.
    pub circuit: CircuitSettings,
}

impl Resilience {
    /// These retries.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// This breaker.
    #[must_use]
    pub fn with_circuit(mut self, circuit: CircuitSettings) -> Self {
        self.circuit = circuit;
        self
    }

    /// Fails with a [`Config`](queue_core::ErrorKind::Config) error naming the first invalid field.
    pub fn validate(&self) -> Result<()> {
        self.retry.validate()?;
        self.circuit.validate()
    }
}
