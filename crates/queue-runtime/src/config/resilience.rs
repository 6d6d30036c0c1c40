//! `[resilience]`: the retry policy and the circuit breaker, flat.

use std::time::Duration;

use queue_core::config::Problems;
use serde::Deserialize;

use crate::resilience::{CircuitSettings, Resilience, RetryPolicy};

/// The section as written; every field optional (the defaults fill in).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResilienceSection {
    max_attempts: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    initial_delay: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    max_delay: Option<Duration>,
    multiplier: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    max_elapsed: Option<Duration>,
    failure_threshold: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    open_for: Option<Duration>,
    success_threshold: Option<u32>,
}

impl ResilienceSection {
    /// The settings, every invalid field noted under `resilience.`.
    pub(super) fn read(self, problems: &mut Problems) -> Resilience {
        let defaults = Resilience::default();
        let resilience = Resilience {
            retry: RetryPolicy {
                max_attempts: self.max_attempts.unwrap_or(defaults.retry.max_attempts),
                initial_delay: self.initial_delay.unwrap_or(defaults.retry.initial_delay),
                max_delay: self.max_delay.unwrap_or(defaults.retry.max_delay),
                multiplier: self.multiplier.unwrap_or(defaults.retry.multiplier),
                max_elapsed: self.max_elapsed.unwrap_or(defaults.retry.max_elapsed),
            },
            circuit: CircuitSettings {
                failure_threshold: self
                    .failure_threshold
                    .unwrap_or(defaults.circuit.failure_threshold),
                open_for: self.open_for.unwrap_or(defaults.circuit.open_for),
                success_threshold: self
                    .success_threshold
                    .unwrap_or(defaults.circuit.success_threshold),
            },
        };
        // Both halves are checked, so every invalid field is reported.
        let invalid = resilience
            .retry
            .problems()
            .into_iter()
            .chain(resilience.circuit.problems());
        for (field, reason) in invalid {
            problems.push(format!("resilience.{field}"), reason);
        }
        resilience
    }
}
