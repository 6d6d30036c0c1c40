//! The conformance suite against the embedded broker, under tokio's paused clock.

use std::sync::Arc;

use async_trait::async_trait;
use queue_conformance::{Fixture, QueueSpec, Skip, TimeMode};
use queue_core::{QueueName, QueueProvider};
use queue_memory::{MemoryConfig, MemoryProvider, QueueOptions};

struct MemoryFixture {
    broker: MemoryProvider,
}

impl MemoryFixture {
    fn new() -> Self {
        // Like a real broker: queues exist only when created, so a missing one is `NotFound`.
        let config = MemoryConfig::default().with_auto_create_queues(false);
        MemoryFixture {
            broker: MemoryProvider::new(config),
        }
    }
}

#[async_trait]
impl Fixture for MemoryFixture {
    fn provider(&self) -> Arc<dyn QueueProvider> {
        Arc::new(self.broker.clone())
    }

    async fn queue(&self, spec: &QueueSpec) -> Result<QueueName, Skip> {
        let name = QueueName::new(format!("conformance-{}", uuid::Uuid::new_v4()))
            .map_err(|error| Skip(error.to_string()))?;
        let options = QueueOptions::default()
            .with_sessions(spec.sessions)
            .with_lock_duration(spec.lock_duration)
            .with_session_lock_duration(spec.lock_duration)
            .with_max_delivery_count(spec.max_delivery_count)
            .with_default_time_to_live(spec.default_time_to_live)
            .with_dead_letter_on_expiration(spec.dead_letter_on_expiration);
        self.broker
            .create_queue(&name, options)
            .map_err(|error| Skip(error.to_string()))?;
        Ok(name)
    }

    fn time(&self) -> TimeMode {
        TimeMode::Paused
    }

    fn missing_queue(&self) -> Option<QueueName> {
        QueueName::new(format!("missing-{}", uuid::Uuid::new_v4())).ok()
    }
}

mod conformance {
    use super::*;

    queue_conformance::conformance_suite!(TimeMode::Paused, MemoryFixture::new());
}

/// The memory provider declares every capability: nothing may be skipped for it.
#[test]
fn memory_skips_nothing() {
    let skipped = queue_conformance::run_all(TimeMode::Paused, MemoryFixture::new);
    assert!(skipped.is_empty(), "skipped on memory: {skipped:?}");
}
