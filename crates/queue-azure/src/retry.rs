//! The SDK's retry policy, limited to failures a retry can cure.
//!
//! azservicebus 0.25's `BasicRetryPolicy` retries every failure alike, with exponential
//! back-off: a lock that is lost, a sequence number that names nothing, a refused credential
//! are each tried four times over about eleven seconds before the caller hears of them (the
//! .NET client retries only what it calls transient). Measured against the test broker, that
//! made every settle of a lost lock take 11 s. This policy keeps the SDK's back-off and
//! timeouts, and gives up at once when the failure is known to be final; a failure it cannot
//! classify is retried as before. What stays transient is retried again, per operation, by the
//! facade's resilience layer, which sees the mapped [`ErrorKind`](queue_core::ErrorKind).

use std::time::Duration;

use azservicebus::core::BasicRetryPolicy;
use azservicebus::primitives::service_bus_retry_options::ServiceBusRetryOptions;
use azservicebus::primitives::service_bus_retry_policy::{
    ServiceBusRetryPolicy, ServiceBusRetryPolicyError, ServiceBusRetryPolicyState,
};

use crate::error::kind_for_detail;

/// [`BasicRetryPolicy`] that does not retry final failures.
#[derive(Debug, Clone)]
pub(crate) struct FinalFailuresNotRetried {
    basic: BasicRetryPolicy,
}

impl From<ServiceBusRetryOptions> for FinalFailuresNotRetried {
    fn from(options: ServiceBusRetryOptions) -> Self {
        Self {
            basic: BasicRetryPolicy::from(options),
        }
    }
}

/// Whether a retry may cure a failure with this debug form.
fn worth_retrying(detail: &str) -> bool {
    kind_for_detail(detail).is_none_or(queue_core::ErrorKind::is_transient)
}

impl ServiceBusRetryPolicy for FinalFailuresNotRetried {
    fn options(&self) -> &ServiceBusRetryOptions {
        self.basic.options()
    }

    fn state(&self) -> &dyn ServiceBusRetryPolicyState {
        self.basic.state()
    }

    fn state_mut(&mut self) -> &mut dyn ServiceBusRetryPolicyState {
        self.basic.state_mut()
    }

    fn calculate_try_timeout(&self, attempt_count: u32) -> Duration {
        self.basic.calculate_try_timeout(attempt_count)
    }

    fn calculate_retry_delay(
        &self,
        last_error: &dyn ServiceBusRetryPolicyError,
        attempt_count: u32,
    ) -> Option<Duration> {
        // A broken link or connection is recovered before the next try: always worth it.
        if !last_error.should_try_recover() && !worth_retrying(&format!("{last_error:?}")) {
            return None;
        }
        self.basic.calculate_retry_delay(last_error, attempt_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_failures_are_not_retried() {
        for detail in [
            r#"Rejected(Error { condition: Custom(Symbol("com.microsoft:message-lock-lost")) })"#,
            "StatusError { code: StatusCode(404), description: Some(\"no such message\") }",
            "StatusError { code: StatusCode(410), description: None }",
            "AmqpError(UnauthorizedAccess)",
            "Recv(MessageDecode(DecodeError(\"invalid type: null, expected bytes\")))",
        ] {
            assert!(!worth_retrying(detail), "{detail}");
        }
    }

    #[test]
    fn transient_and_unknown_failures_are_retried() {
        for detail in [
            r#"Custom(Symbol("com.microsoft:server-busy"))"#,
            "StatusError { code: StatusCode(503), description: None }",
            "Elapsed(())",
            "something nobody has seen before",
        ] {
            assert!(worth_retrying(detail), "{detail}");
        }
    }
}
