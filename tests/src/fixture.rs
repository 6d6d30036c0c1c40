//! What a provider gives the suite: itself, fresh queues, and how time passes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use queue_core::{QueueName, QueueProvider};

/// How a fixture's time passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeMode {
    /// tokio's clock is paused and jumps ahead when every task waits (the embedded broker):
    /// scenarios that wait for a lock to expire take no real time.
    Paused,
    /// Real time (network brokers): waits are real, so specs ask for short locks.
    Real,
}

/// The queue a scenario needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// A session queue.
    pub sessions: bool,
    /// The message (and session) lock duration. Scenarios that wait for a lock to expire wait
    /// this long plus a margin.
    pub lock_duration: Duration,
    /// Deliveries before the broker dead-letters a message.
    pub max_delivery_count: u32,
    /// The queue's default time to live.
    pub default_time_to_live: Option<Duration>,
    /// Whether expired messages go to the dead-letter queue.
    pub dead_letter_on_expiration: bool,
}

impl Default for QueueSpec {
    fn default() -> Self {
        QueueSpec {
            sessions: false,
            // The shortest lock every broker accepts (Service Bus: 5 s).
            lock_duration: Duration::from_secs(5),
            max_delivery_count: 10,
            default_time_to_live: None,
            dead_letter_on_expiration: false,
        }
    }
}

impl QueueSpec {
    /// A session queue with the default settings.
    pub fn sessions() -> Self {
        QueueSpec {
            sessions: true,
            ..QueueSpec::default()
        }
    }
}

/// Why a fixture cannot provide what a scenario needs: the scenario is skipped, not passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip(pub String);

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A provider under test, and a source of fresh queues.
#[async_trait]
pub trait Fixture: Send + Sync {
    /// The provider under test.
    fn provider(&self) -> Arc<dyn QueueProvider>;

    /// A new, empty queue matching `spec`, used by this scenario alone; `Skip` when the
    /// provider cannot have such a queue.
    async fn queue(&self, spec: &QueueSpec) -> Result<QueueName, Skip>;

    /// How time passes for this provider.
    fn time(&self) -> TimeMode;

    /// A queue name that certainly does not exist, when the fixture can promise one.
    fn missing_queue(&self) -> Option<QueueName>;

    /// Why this fixture's queues cannot serve the named scenario, when a kind of queue lacks
    /// what the provider as a whole declares (SQS FIFO queues take no per-message delay while
    /// standard queues do). The scenario is then skipped with this reason.
    fn cannot_run(&self, scenario: &str) -> Option<Skip> {
        let _ = scenario;
        None
    }
}
