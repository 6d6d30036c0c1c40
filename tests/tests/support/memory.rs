//! The embedded broker as a conformance fixture: plain, or behind a decorator.

// Each test file uses the constructor it needs.
#![allow(dead_code)]

use std::sync::Arc;

use async_trait::async_trait;
use queue_conformance::{Fixture, QueueSpec, Skip, TimeMode};
use queue_core::{QueueName, QueueProvider};
use queue_memory::{MemoryConfig, MemoryProvider, QueueOptions};

pub(crate) struct MemoryFixture {
    broker: MemoryProvider,
    /// What the suite talks to: the broker itself, or a decorator around it.
    provider: Arc<dyn QueueProvider>,
}

impl MemoryFixture {
    /// The broker, called directly.
    pub(crate) fn new() -> Self {
        Self::wrapped(|broker| broker)
    }

    /// The broker behind `wrap` (a decorator that must keep every behaviour).
    pub(crate) fn wrapped(
        wrap: impl FnOnce(Arc<dyn QueueProvider>) -> Arc<dyn QueueProvider>,
    ) -> Self {
        // Like a real broker: queues exist only when created, so a missing one is `NotFound`.
        let config = MemoryConfig::default().with_auto_create_queues(false);
        let broker = MemoryProvider::new(config);
        let provider = wrap(Arc::new(broker.clone()));
        MemoryFixture { broker, provider }
    }
}

#[async_trait]
impl Fixture for MemoryFixture {
    fn provider(&self) -> Arc<dyn QueueProvider> {
        Arc::clone(&self.provider)
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
