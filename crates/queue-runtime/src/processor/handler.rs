//! What the application gives the processor (a [`Handler`]) and what it answers ([`Outcome`]).

use std::time::Duration;

use async_trait::async_trait;
use queue_core::{DeadLetterReason, QueueName, ReceivedMessage};
use tokio_util::sync::CancellationToken;

/// What the handler decided for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done: the message is completed (and, when sealed, remembered by the replay guard).
    Complete,
    /// Not now: the message is given back and delivered again, after `after` when given. Where
    /// the provider cannot delay a redelivery (Service Bus), the processor holds the message,
    /// renewing its lock, for the delay, then gives it back.
    Retry {
        /// How long to wait before the next delivery.
        after: Option<Duration>,
    },
    /// Never: the message is moved to the dead-letter queue with this reason.
    DeadLetter(DeadLetterReason),
}

impl Outcome {
    /// Give the message back for another delivery at once.
    pub fn retry() -> Self {
        Outcome::Retry { after: None }
    }

    /// Give the message back, to be delivered again after `delay`.
    pub fn retry_after(delay: Duration) -> Self {
        Outcome::Retry { after: Some(delay) }
    }

    /// Dead-letter the message. Keep `reason` short and stable: it labels a metric.
    pub fn dead_letter(reason: impl Into<String>, description: impl Into<String>) -> Self {
        Outcome::DeadLetter(DeadLetterReason::new(reason, description))
    }
}

/// What a handler gets besides the message.
#[derive(Debug, Clone)]
pub struct HandlerContext {
    pub(super) queue: QueueName,
    pub(super) cancellation: CancellationToken,
}

impl HandlerContext {
    /// The queue the message came from.
    pub fn queue(&self) -> &QueueName {
        &self.queue
    }

    /// Cancelled when the handler should stop: the shutdown deadline passed, or the message's
    /// (or session's) lock was lost. The processor then stops waiting for the handler at its
    /// next `.await` and does not settle the message; long handlers may watch it to stop at a
    /// point of their choosing.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancellation
    }
}

/// The application's code for one message. Implemented for every
/// `Fn(ReceivedMessage, HandlerContext) -> impl Future<Output = Outcome>`.
///
/// The message arrives opened and authenticated (when the queue is sealed), with its lock held
/// (`locked_until` is the deadline as last renewed); a panic is caught and treated as
/// [`Outcome::retry`].
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Handles one message.
    async fn handle(&self, message: ReceivedMessage, context: HandlerContext) -> Outcome;
}

#[async_trait]
impl<F, Fut> Handler for F
where
    F: Fn(ReceivedMessage, HandlerContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    async fn handle(&self, message: ReceivedMessage, context: HandlerContext) -> Outcome {
        self(message, context).await
    }
}
