//! The conformance suite against Service Bus: a real namespace or the official emulator named
//! by `QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING`. The test is `#[ignore]`d so that a run
//! without one shows it as ignored, never as passed; `cargo xtask test` runs it when the
//! variable is set (and says it skipped it otherwise), `cargo xtask conformance --provider
//! azure` always (and fails without the variable).
//!
//! Service Bus queues are created outside the data plane, so the scenarios share the fixed
//! queues of `queue_azure::testing::TEST_QUEUES`, run one at a time, and each starts by
//! emptying its queue.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use async_trait::async_trait;
use queue_azure::testing::{missing_connection_string, purge, test_config, test_queue};
use queue_azure::{AzureConfig, AzureProvider};
use queue_conformance::{Fixture, QueueSpec, Skip, TimeMode};
use queue_core::{QueueName, QueueProvider};

/// Scenarios of capabilities Service Bus does not declare.
const SKIPPED_ON_SERVICE_BUS: &[&str] = &["abandon_with_delay_hides_the_message_for_the_delay"];

struct AzureFixture {
    provider: AzureProvider,
}

#[async_trait]
impl Fixture for AzureFixture {
    fn provider(&self) -> Arc<dyn QueueProvider> {
        Arc::new(self.provider.clone())
    }

    async fn queue(&self, spec: &QueueSpec) -> Result<QueueName, Skip> {
        let queue = test_queue(
            spec.sessions,
            spec.lock_duration,
            spec.max_delivery_count,
            spec.default_time_to_live,
            spec.dead_letter_on_expiration,
        )
        .ok_or_else(|| Skip(format!("no pre-created test queue matches {spec:?}")))?;
        let name = QueueName::new(queue.name).map_err(|error| Skip(error.to_string()))?;
        // A failure to empty the queue is the test's failure, not a skip.
        purge(&self.provider, &name, queue.sessions)
            .await
            .unwrap_or_else(|error| panic!("emptying {name} failed: {error}"));
        Ok(name)
    }

    fn time(&self) -> TimeMode {
        TimeMode::Real
    }

    fn missing_queue(&self) -> Option<QueueName> {
        QueueName::new(format!("missing-{}", uuid::Uuid::new_v4().simple())).ok()
    }
}

fn connect(config: &AzureConfig) -> AzureFixture {
    let provider = tokio::runtime::Handle::current()
        .block_on(AzureProvider::connect(config))
        .unwrap_or_else(|error| panic!("connecting to Service Bus failed: {error}"));
    AzureFixture { provider }
}

#[test]
#[ignore = "needs QUEUE_RUNTIME_TEST_AZURE_CONNECTION_STRING; run by `cargo xtask conformance --provider azure`"]
fn service_bus_passes_the_conformance_suite() {
    let config = test_config().unwrap_or_else(|| panic!("{}", missing_connection_string()));
    let skipped = queue_conformance::run_all_parallel(
        TimeMode::Real,
        || tokio::task::block_in_place(|| connect(&config)),
        1,
    );
    let expected: Vec<&str> = SKIPPED_ON_SERVICE_BUS
        .iter()
        .copied()
        .filter(|name| queue_conformance::selected(name))
        .collect();
    assert_eq!(skipped, expected);
}
