//! The conformance suite against a real local SQS server (moto, started by `cargo xtask test`),
//! on standard queues and on FIFO queues, each scenario on a fresh queue with its own
//! dead-letter queue.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use async_trait::async_trait;
use queue_conformance::{Fixture, QueueSpec, Skip, TimeMode};
use queue_core::{QueueName, QueueProvider};
use queue_sqs::admin::{QueueSetup, create_queue_with_dead_letter};
use queue_sqs::testing::test_server_or_skip;
use queue_sqs::{SqsConfig, SqsProvider, UnsessionedFifo};

/// Scenarios of capabilities SQS does not declare: sessions (SQS has no session lock;
/// FIFO groups keep order through plain receive instead), peeking, sequence numbers and
/// cancelling schedules, and broker-side dead-lettering of expired messages.
const SKIPPED_ON_SQS: &[&str] = &[
    "accept_next_without_sessions_returns_none",
    "cancel_scheduled_removes_the_message",
    "cancel_unknown_sequence_number_is_not_found",
    "dead_letter_queue_can_be_peeked",
    "expired_messages_are_dead_lettered_when_configured",
    "interleaved_sessions_keep_their_own_order",
    "peek_does_not_lock_or_count",
    "renew_session_lock_extends_it",
    "sequence_numbers_increase",
    "session_close_returns_unsettled_messages",
    "session_lock_expiry_releases_the_session",
    "session_lock_is_exclusive",
    "session_lost_lock_fails_settles",
    "session_messages_settle_through_the_provider",
    "session_messages_come_in_order",
    "session_queue_refuses_messages_without_session",
    "session_state_round_trips",
];

/// FIFO queues take no per-message delay, so on them scheduling is skipped too.
const SKIPPED_ON_FIFO_ONLY: &[&str] = &["scheduled_message_is_invisible_until_due"];

/// Scenarios run at once: they mostly wait on locks and long polls, but moto serves one request
/// at a time, and scenarios that drain hundreds of messages must not be starved past their locks.
const PARALLEL: usize = 4;

struct SqsFixture {
    provider: SqsProvider,
    fifo: bool,
}

impl SqsFixture {
    fn new(endpoint: &str, fifo: bool) -> Self {
        // A FIFO queue needs a message group for every message; the suite's messages have no
        // session, so each gets a group of its own (and keeps every standard-queue behaviour).
        let config = SqsConfig::new().with_unsessioned_fifo(UnsessionedFifo::GroupPerMessage);
        SqsFixture {
            provider: SqsProvider::for_local_server(endpoint, &config)
                .expect("a provider for the local server"),
            fifo,
        }
    }
}

#[async_trait]
impl Fixture for SqsFixture {
    fn provider(&self) -> Arc<dyn QueueProvider> {
        Arc::new(self.provider.clone())
    }

    async fn queue(&self, spec: &QueueSpec) -> Result<QueueName, Skip> {
        if spec.sessions {
            return Err(Skip("SQS has no session queues".into()));
        }
        if spec.default_time_to_live.is_some() || spec.dead_letter_on_expiration {
            return Err(Skip("SQS queues have no default time to live".into()));
        }
        let suffix = if self.fifo { ".fifo" } else { "" };
        let name = QueueName::new(format!("c-{}{suffix}", uuid::Uuid::new_v4().simple()))
            .map_err(|error| Skip(error.to_string()))?;
        let setup = QueueSetup {
            fifo: self.fifo,
            visibility_timeout: spec.lock_duration,
            max_receive_count: spec.max_delivery_count,
            ..QueueSetup::default()
        };
        create_queue_with_dead_letter(&self.provider, &name, &setup)
            .await
            .map_err(|error| Skip(format!("creating the queue failed: {error}")))?;
        Ok(name)
    }

    fn time(&self) -> TimeMode {
        TimeMode::Real
    }

    fn missing_queue(&self) -> Option<QueueName> {
        QueueName::new(format!("missing-{}", uuid::Uuid::new_v4().simple())).ok()
    }

    fn cannot_run(&self, scenario: &str) -> Option<Skip> {
        (self.fifo && SKIPPED_ON_FIFO_ONLY.contains(&scenario)).then(|| {
            Skip(
                "SQS FIFO queues take no per-message delay (the send fails with Unsupported)"
                    .into(),
            )
        })
    }
}

fn expected(extra: &[&'static str]) -> Vec<&'static str> {
    let mut expected: Vec<&'static str> = SKIPPED_ON_SQS
        .iter()
        .chain(extra)
        .copied()
        .filter(|name| queue_conformance::selected(name))
        .collect();
    expected.sort_unstable();
    expected
}

#[test]
fn standard_queues_pass_the_conformance_suite() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let skipped = queue_conformance::run_all_parallel(
        TimeMode::Real,
        || SqsFixture::new(&endpoint, false),
        PARALLEL,
    );
    assert_eq!(skipped, expected(&[]));
}

#[test]
fn fifo_queues_pass_the_conformance_suite() {
    let Some(endpoint) = test_server_or_skip().unwrap() else {
        return;
    };
    let skipped = queue_conformance::run_all_parallel(
        TimeMode::Real,
        || SqsFixture::new(&endpoint, true),
        PARALLEL,
    );
    assert_eq!(skipped, expected(SKIPPED_ON_FIFO_ONLY));
}
