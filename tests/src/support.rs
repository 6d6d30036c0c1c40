//! Short helpers that keep the scenarios readable.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use queue_core::{
    ErrorKind, Message, QueueName, QueueProvider, ReceiveOptions, ReceivedMessage, SendOutcome,
    SessionReceiver,
};

use crate::fixture::{Fixture, QueueSpec, TimeMode};
use crate::runner::Outcome;

/// A provider and a fresh queue for one scenario.
pub(crate) struct Setup {
    pub(crate) provider: Arc<dyn QueueProvider>,
    pub(crate) queue: QueueName,
    pub(crate) spec: QueueSpec,
    pub(crate) time: TimeMode,
}

impl Setup {
    /// Longer than the queue's lock: waiting this long lets every lock expire.
    pub(crate) fn past_lock(&self) -> Duration {
        self.spec.lock_duration + self.margin()
    }

    /// Slack for real brokers' clocks and round trips.
    pub(crate) fn margin(&self) -> Duration {
        match self.time {
            TimeMode::Paused => Duration::from_millis(100),
            TimeMode::Real => Duration::from_secs(2),
        }
    }

    /// How long to look before concluding that nothing is there.
    pub(crate) fn quiet_wait(&self) -> Duration {
        match self.time {
            TimeMode::Paused => Duration::from_secs(1),
            TimeMode::Real => Duration::from_secs(2),
        }
    }

    pub(crate) async fn send_text(&self, text: &str) -> SendOutcome {
        self.provider
            .send(&self.queue, Message::new(text.to_owned()))
            .await
            .unwrap_or_else(|error| panic!("sending {text:?} failed: {error}"))
    }

    pub(crate) async fn send_in_session(&self, session: &str, text: &str) -> SendOutcome {
        let message = Message::builder(text.to_owned())
            .session_id(session)
            .build()
            .expect("a valid message");
        self.provider
            .send(&self.queue, message)
            .await
            .unwrap_or_else(|error| panic!("sending {text:?} to {session} failed: {error}"))
    }

    /// Receives until `count` messages arrived or `wait` passed.
    pub(crate) async fn receive_up_to(&self, count: usize, wait: Duration) -> Vec<ReceivedMessage> {
        receive_up_to(
            &*self.provider,
            &self.queue,
            ReceiveOptions::new(count, wait),
        )
        .await
    }

    pub(crate) async fn receive_dead_letters(
        &self,
        count: usize,
        wait: Duration,
    ) -> Vec<ReceivedMessage> {
        receive_up_to(
            &*self.provider,
            &self.queue,
            ReceiveOptions::new(count, wait).dead_letter(),
        )
        .await
    }

    /// Receives exactly one message within `wait`, or fails the scenario.
    pub(crate) async fn receive_single(&self, wait: Duration) -> ReceivedMessage {
        let mut received = self.receive_up_to(1, wait).await;
        assert_eq!(received.len(), 1, "expected one message within {wait:?}");
        received.remove(0)
    }

    pub(crate) async fn assert_empty(&self) {
        let received = self.receive_up_to(1, self.quiet_wait()).await;
        assert!(
            received.is_empty(),
            "expected no message, got {:?}",
            received.iter().map(text).collect::<Vec<_>>()
        );
    }
}

/// Loops over `receive` (providers may return fewer than asked) until enough arrived or the wait
/// is over.
pub(crate) async fn receive_up_to(
    provider: &dyn QueueProvider,
    queue: &QueueName,
    options: ReceiveOptions,
) -> Vec<ReceivedMessage> {
    let deadline = tokio::time::Instant::now() + options.wait;
    let mut received = Vec::new();
    while received.len() < options.max_messages {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let batch = provider
            .receive(
                queue,
                ReceiveOptions {
                    max_messages: options.max_messages - received.len(),
                    wait: left,
                    ..options
                },
            )
            .await
            .unwrap_or_else(|error| panic!("receive failed: {error}"));
        received.extend(batch);
        if left.is_zero() {
            break;
        }
    }
    received
}

/// Receives from a session until `count` messages arrived or `wait` passed.
pub(crate) async fn receive_in_session(
    session: &dyn SessionReceiver,
    count: usize,
    wait: Duration,
) -> Vec<ReceivedMessage> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut received = Vec::new();
    while received.len() < count {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let batch = session
            .receive(count - received.len(), left)
            .await
            .unwrap_or_else(|error| panic!("session receive failed: {error}"));
        received.extend(batch);
        if left.is_zero() {
            break;
        }
    }
    received
}

/// A fresh queue for the scenario, or the outcome to return when the fixture cannot have one.
pub(crate) async fn prepare(fixture: &dyn Fixture, spec: QueueSpec) -> Result<Setup, Outcome> {
    match fixture.queue(&spec).await {
        Ok(queue) => Ok(Setup {
            provider: fixture.provider(),
            queue,
            spec,
            time: fixture.time(),
        }),
        Err(skip) => Err(Outcome::Skipped(format!("fixture: {skip}"))),
    }
}

/// The body as text.
pub(crate) fn text(message: &ReceivedMessage) -> String {
    String::from_utf8_lossy(message.body()).into_owned()
}

/// Asserts that `result` failed with `kind`.
#[track_caller]
pub(crate) fn assert_kind<T: Debug>(result: queue_core::Result<T>, kind: ErrorKind, doing: &str) {
    match result {
        Ok(value) => panic!("{doing}: expected a {kind:?} error, got Ok({value:?})"),
        Err(error) => assert_eq!(
            error.kind(),
            kind,
            "{doing}: expected a {kind:?} error, got {error}"
        ),
    }
}

/// Sets up a queue or returns the skip outcome from the scenario.
macro_rules! setup {
    ($fixture:expr, $spec:expr) => {
        match $crate::support::prepare($fixture, $spec).await {
            Ok(setup) => setup,
            Err(outcome) => return outcome,
        }
    };
}

/// Returns a skip from the scenario unless the provider declares the capability.
macro_rules! require {
    ($provider:expr, $capability:ident) => {
        if !$provider.capabilities().$capability {
            return $crate::Outcome::Skipped(format!(
                "the {} provider does not declare `{}`",
                $provider.name(),
                stringify!($capability)
            ));
        }
    };
}

pub(crate) use {require, setup};
