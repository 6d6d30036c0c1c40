//! `QueueClient`: one API over every provider, chosen at run time.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use queue_core::{
    AcceptSessionOptions, Capabilities, DeadLetterReason, Message, PeekOptions, PeekedMessage,
    QueueName, QueueProvider, ReceiveOptions, ReceivedMessage, Result, SendOutcome, SessionId,
    SessionReceiver, SessionSelector,
};
use tracing::debug;

use crate::config::{ClientConfig, ProviderConfig};

/// Sends, receives and settles messages through the provider chosen by configuration.
///
/// Cheap to clone: clones share the provider. Every operation first checks the queue name
/// against the provider's own rules. Logs carry queue names and message ids, never bodies.
#[derive(Debug, Clone)]
pub struct QueueClient {
    provider: Arc<dyn QueueProvider>,
}

impl QueueClient {
    /// A client over any provider.
    pub fn new(provider: Arc<dyn QueueProvider>) -> Self {
        QueueClient { provider }
    }

    /// A client over the embedded broker with its defaults.
    #[cfg(feature = "memory")]
    pub fn memory() -> Self {
        QueueClient::new(Arc::new(queue_memory::MemoryProvider::default()))
    }

    /// A client built from a validated configuration: the provider is created and its declared
    /// queues set up.
    pub fn from_config(config: &ClientConfig) -> Result<Self> {
        match &config.provider {
            #[cfg(feature = "memory")]
            ProviderConfig::Memory(settings) => {
                let broker = queue_memory::MemoryProvider::new(
                    queue_memory::MemoryConfig::default()
                        .with_max_message_bytes(settings.max_message_bytes)
                        .with_auto_create_queues(settings.auto_create_queues)
                        .with_default_queue_options(
                            queue_memory::QueueOptions::default()
                                .with_lock_duration(settings.lock_duration)
                                .with_session_lock_duration(settings.lock_duration)
                                .with_max_delivery_count(settings.max_delivery_count),
                        ),
                );
                for queue in &settings.queues {
                    let lock = queue.lock_duration.unwrap_or(settings.lock_duration);
                    let mut options = queue_memory::QueueOptions::default()
                        .with_sessions(queue.sessions)
                        .with_lock_duration(lock)
                        .with_session_lock_duration(lock)
                        .with_max_delivery_count(
                            queue
                                .max_delivery_count
                                .unwrap_or(settings.max_delivery_count),
                        )
                        .with_default_time_to_live(queue.default_time_to_live)
                        .with_dead_letter_on_expiration(queue.dead_letter_on_expiration);
                    if let Some(capacity) = queue.capacity {
                        options = options.with_capacity(capacity);
                    }
                    broker.create_queue(&queue.name, options)?;
                }
                Ok(QueueClient::new(Arc::new(broker)))
            }
        }
    }

    /// A client configured from the environment (see [`crate::config`]).
    pub fn from_env() -> Result<Self> {
        QueueClient::from_config(&ClientConfig::from_env()?)
    }

    /// The provider underneath.
    pub fn provider(&self) -> &Arc<dyn QueueProvider> {
        &self.provider
    }

    /// What the provider supports, and its limits.
    pub fn capabilities(&self) -> &Capabilities {
        self.provider.capabilities()
    }

    /// Sends one message.
    pub async fn send(&self, queue: &QueueName, message: Message) -> Result<SendOutcome> {
        self.provider.validate_queue_name(queue)?;
        let message_id = message.message_id().clone();
        let outcome = self.provider.send(queue, message).await;
        debug!(
            messaging.system = self.provider.name(),
            messaging.destination.name = %queue,
            messaging.message.id = %message_id,
            ok = outcome.is_ok(),
            "send"
        );
        outcome
    }

    /// Sends several messages; one result per message (some may fail while others succeed).
    pub async fn send_batch(
        &self,
        queue: &QueueName,
        messages: Vec<Message>,
    ) -> Result<Vec<Result<SendOutcome>>> {
        self.provider.validate_queue_name(queue)?;
        let count = messages.len();
        let outcomes = self.provider.send_batch(queue, messages).await;
        debug!(messaging.destination.name = %queue, count, "send_batch");
        outcomes
    }

    /// Receives up to `max_messages`, waiting up to `wait` for the first one.
    pub async fn receive(
        &self,
        queue: &QueueName,
        max_messages: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>> {
        self.provider.validate_queue_name(queue)?;
        let received = self
            .provider
            .receive(queue, ReceiveOptions::new(max_messages, wait))
            .await?;
        for message in &received {
            debug!(
                messaging.destination.name = %queue,
                messaging.message.id = %message.message_id(),
                delivery_count = message.delivery_count(),
                "received"
            );
        }
        Ok(received)
    }

    /// Receives at most one message, waiting up to `wait`.
    pub async fn receive_one(
        &self,
        queue: &QueueName,
        wait: Duration,
    ) -> Result<Option<ReceivedMessage>> {
        Ok(self.receive(queue, 1, wait).await?.into_iter().next())
    }

    /// Receives from the queue's dead-letter queue.
    pub async fn receive_dead_letters(
        &self,
        queue: &QueueName,
        max_messages: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>> {
        self.provider.validate_queue_name(queue)?;
        self.provider
            .receive(queue, ReceiveOptions::new(max_messages, wait).dead_letter())
            .await
    }

    /// Reads messages without locking them.
    pub async fn peek(
        &self,
        queue: &QueueName,
        options: PeekOptions,
    ) -> Result<Vec<PeekedMessage>> {
        self.provider.validate_queue_name(queue)?;
        self.provider.peek(queue, options).await
    }

    /// Settles a delivery as done.
    pub async fn complete(&self, message: &ReceivedMessage) -> Result<()> {
        let outcome = self.provider.complete(&message.receipt).await;
        debug!(messaging.message.id = %message.message_id(), ok = outcome.is_ok(), "complete");
        outcome
    }

    /// Gives a delivery back, to be delivered again (after `delay`, where supported).
    pub async fn abandon(&self, message: &ReceivedMessage, delay: Option<Duration>) -> Result<()> {
        let outcome = self.provider.abandon(&message.receipt, delay).await;
        debug!(messaging.message.id = %message.message_id(), ok = outcome.is_ok(), "abandon");
        outcome
    }

    /// Moves a delivery to the dead-letter queue with a reason and a description.
    pub async fn dead_letter(
        &self,
        message: &ReceivedMessage,
        reason: &str,
        description: &str,
    ) -> Result<()> {
        let outcome = self
            .provider
            .dead_letter(&message.receipt, DeadLetterReason::new(reason, description))
            .await;
        debug!(messaging.message.id = %message.message_id(), reason, ok = outcome.is_ok(), "dead_letter");
        outcome
    }

    /// Extends the lock of a delivery; returns the new deadline.
    pub async fn renew_lock(&self, message: &ReceivedMessage) -> Result<SystemTime> {
        self.provider.renew_lock(&message.receipt).await
    }

    /// Accepts a session (the next available one, or a named one), waiting up to `wait`.
    pub async fn accept_session(
        &self,
        queue: &QueueName,
        session: SessionSelector,
        wait: Duration,
    ) -> Result<Option<ClientSession>> {
        self.provider.validate_queue_name(queue)?;
        let accepted = self
            .provider
            .accept_session(queue, AcceptSessionOptions { session, wait })
            .await?;
        if let Some(receiver) = &accepted {
            debug!(
                messaging.destination.name = %queue,
                session_id = %receiver.session_id(),
                "session accepted"
            );
        }
        Ok(accepted.map(|receiver| ClientSession { receiver }))
    }

    /// Accepts the next session with messages, waiting up to `wait`.
    pub async fn accept_next_session(
        &self,
        queue: &QueueName,
        wait: Duration,
    ) -> Result<Option<ClientSession>> {
        self.accept_session(queue, SessionSelector::Next, wait)
            .await
    }

    /// Accepts the named session, waiting up to `wait` for its holder to release it.
    pub async fn accept_named_session(
        &self,
        queue: &QueueName,
        session: &SessionId,
        wait: Duration,
    ) -> Result<Option<ClientSession>> {
        self.accept_session(queue, SessionSelector::Named(session.clone()), wait)
            .await
    }

    /// Cancels a scheduled message by the sequence number its send returned.
    pub async fn cancel_scheduled(&self, queue: &QueueName, sequence_number: u64) -> Result<()> {
        self.provider.validate_queue_name(queue)?;
        self.provider.cancel_scheduled(queue, sequence_number).await
    }

    /// Releases the provider's connections; later calls fail with `Closed`.
    pub async fn close(&self) -> Result<()> {
        self.provider.close().await
    }
}

/// An accepted session: its messages in order, its lock, its state.
#[derive(Debug)]
pub struct ClientSession {
    receiver: Box<dyn SessionReceiver>,
}

impl ClientSession {
    /// The session's id.
    pub fn session_id(&self) -> &SessionId {
        self.receiver.session_id()
    }

    /// The queue the session belongs to.
    pub fn queue(&self) -> &QueueName {
        self.receiver.queue()
    }

    /// Until when the session lock is held, as last known.
    pub fn locked_until(&self) -> SystemTime {
        self.receiver.locked_until()
    }

    /// Receives up to `max_messages` of the session's messages, in order, waiting up to `wait`.
    pub async fn receive(
        &self,
        max_messages: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>> {
        self.receiver.receive(max_messages, wait).await
    }

    /// Settles a delivery as done.
    pub async fn complete(&self, message: &ReceivedMessage) -> Result<()> {
        self.receiver.complete(&message.receipt).await
    }

    /// Gives a delivery back: it comes first again (after `delay`, holding the session).
    pub async fn abandon(&self, message: &ReceivedMessage, delay: Option<Duration>) -> Result<()> {
        self.receiver.abandon(&message.receipt, delay).await
    }

    /// Moves a delivery to the dead-letter queue.
    pub async fn dead_letter(
        &self,
        message: &ReceivedMessage,
        reason: &str,
        description: &str,
    ) -> Result<()> {
        self.receiver
            .dead_letter(&message.receipt, DeadLetterReason::new(reason, description))
            .await
    }

    /// Extends the session lock; returns the new deadline.
    pub async fn renew_lock(&self) -> Result<SystemTime> {
        self.receiver.renew_session_lock().await
    }

    /// The session state.
    pub async fn state(&self) -> Result<Option<Bytes>> {
        self.receiver.state().await
    }

    /// Replaces (or with `None`, clears) the session state.
    pub async fn set_state(&self, state: Option<Bytes>) -> Result<()> {
        self.receiver.set_state(state).await
    }

    /// Releases the session: unsettled messages become available again.
    pub async fn close(&self) -> Result<()> {
        self.receiver.close().await
    }
}
