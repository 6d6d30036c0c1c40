//! The embedded broker as a [`QueueProvider`]: the contract's operations on the broker handle.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use queue_core::raw::check_max_messages;
use queue_core::{
    AcceptSessionOptions, Capabilities, DeadLetterReason, ErrorKind, Message, PeekOptions,
    PeekedMessage, QueueCounts, QueueError, QueueName, QueueProvider, Receipt, ReceiveOptions,
    ReceivedMessage, Result, SendOutcome, SessionReceiver, SessionSelector,
};
use tokio::time::Instant;

use crate::broker::{Broker, MemoryReceipt, Queue};
use crate::state::{LaneKind, QueueStats};
use crate::{MemoryConfig, PROVIDER_NAME, QueueOptions};

/// The embedded broker as a [`QueueProvider`]. Clones share the same broker.
///
/// ```
/// use std::time::Duration;
/// use queue_core::{Message, QueueName, QueueProvider, QueueProviderExt};
/// use queue_memory::MemoryProvider;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let broker = MemoryProvider::default();
/// let queue = QueueName::new("orders")?;
/// broker.send(&queue, Message::new("hello")).await?;
/// let received = broker.receive_one(&queue, Duration::from_secs(1)).await?.expect("a message");
/// assert_eq!(received.body().as_ref(), b"hello");
/// broker.complete(&received.receipt).await?;
/// # Ok::<(), queue_core::QueueError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct MemoryProvider {
    broker: Arc<Broker>,
}

impl Default for MemoryProvider {
    fn default() -> Self {
        MemoryProvider::new(MemoryConfig::default())
    }
}

impl MemoryProvider {
    /// A broker with this configuration and no queues yet (see [`create_queue`](Self::create_queue),
    /// and [`MemoryConfig::with_auto_create_queues`]).
    pub fn new(config: MemoryConfig) -> Self {
        let mut capabilities = Capabilities::default();
        capabilities.sessions = true;
        capabilities.accept_named_session = true;
        capabilities.session_state = true;
        capabilities.scheduling = true;
        capabilities.cancel_scheduled = true;
        capabilities.abandon_with_delay = true;
        capabilities.native_dead_letter = true;
        capabilities.max_delivery_count = true;
        capabilities.time_to_live = true;
        capabilities.peek = true;
        capabilities.lock_renewal = true;
        capabilities.sequence_numbers = true;
        capabilities.counts = true;
        capabilities.max_message_bytes = config.accepted_message_bytes();
        capabilities.max_batch_messages = MAX_BATCH_MESSAGES;
        capabilities.max_receive_messages = MAX_RECEIVE_MESSAGES;
        capabilities.max_properties = queue_core::MAX_PROPERTIES;
        MemoryProvider {
            broker: Arc::new(Broker::new(config, capabilities)),
        }
    }

    /// A broker from a checked configuration, with its declared queues created: the entry point
    /// configuration-driven code uses (queue-runtime's `QueueClient::connect`).
    pub fn connect(config: MemoryConfig) -> Result<Self> {
        config.check()?;
        let queues = config.queues().to_vec();
        let broker = MemoryProvider::new(config);
        for (name, options) in queues {
            broker.create_queue(&name, options)?;
        }
        Ok(broker)
    }

    /// Creates a queue. Fails when it exists, or when the options are invalid.
    pub fn create_queue(&self, name: &QueueName, options: QueueOptions) -> Result<()> {
        self.broker.check_open()?;
        self.broker.create(name, options).map(|_| ())
    }

    /// Deletes a queue and everything in it. Waiting receivers get `NotFound` on their next look.
    pub fn delete_queue(&self, name: &QueueName) -> Result<()> {
        self.broker.check_open()?;
        let removed = self.broker.queues.write().remove(name);
        match removed {
            Some(queue) => {
                queue.mark_deleted();
                Ok(())
            }
            None => Err(QueueError::new(
                ErrorKind::NotFound,
                format!("queue {name} does not exist"),
            )),
        }
    }

    /// How many messages the queue holds, by where they are.
    pub fn queue_stats(&self, name: &QueueName) -> Result<QueueStats> {
        let queue = self.broker.find(name)?;
        self.broker.with_state(&queue, |state, _| Ok(state.stats()))
    }

    /// The options a queue was created with.
    pub fn queue_options(&self, name: &QueueName) -> Result<QueueOptions> {
        let queue = self.broker.find(name)?;
        let options = queue.state.lock().options().clone();
        Ok(options)
    }

    fn receipt_queue(&self, receipt: &Receipt) -> Result<(Arc<Queue>, MemoryReceipt)> {
        self.broker.receipt_queue(receipt)
    }
}

/// The most messages one `send_batch` call sends at once.
pub const MAX_BATCH_MESSAGES: usize = 100;
/// The most messages one `receive` call returns.
pub const MAX_RECEIVE_MESSAGES: usize = 1000;

#[async_trait]
impl QueueProvider for MemoryProvider {
    fn name(&self) -> &'static str {
        PROVIDER_NAME
    }

    fn messaging_system(&self) -> &'static str {
        "queue_runtime_memory"
    }

    fn capabilities(&self) -> &Capabilities {
        &self.broker.capabilities
    }

    /// Every [`QueueName`] is valid here.
    fn validate_queue_name(&self, _queue: &QueueName) -> Result<()> {
        Ok(())
    }

    async fn send(&self, queue: &QueueName, message: Message) -> Result<SendOutcome> {
        let target = self.broker.find_or_create(queue)?;
        let message_id = message.message_id().clone();
        let sequence_number = {
            let mut state = target.state.lock();
            state.send(message, Instant::now())?
        };
        target.wake();
        Ok(SendOutcome {
            message_id,
            sequence_number: Some(sequence_number),
        })
    }

    async fn send_batch(
        &self,
        queue: &QueueName,
        messages: Vec<Message>,
    ) -> Result<Vec<Result<SendOutcome>>> {
        let target = self.broker.find_or_create(queue)?;
        let mut outcomes = Vec::with_capacity(messages.len());
        {
            let mut state = target.state.lock();
            let now = Instant::now();
            for message in messages {
                let message_id = message.message_id().clone();
                outcomes.push(state.send(message, now).map(|sequence_number| SendOutcome {
                    message_id,
                    sequence_number: Some(sequence_number),
                }));
            }
        }
        target.wake();
        Ok(outcomes)
    }

    async fn receive(
        &self,
        queue: &QueueName,
        options: ReceiveOptions,
    ) -> Result<Vec<ReceivedMessage>> {
        let max = check_max_messages(options.max_messages, self.capabilities())?;
        let source = self.broker.find(queue)?;
        let kind = LaneKind::from(options.sub_queue);
        let broker = &self.broker;
        let received = broker
            .wait_for(&source, options.wait, |state, now| {
                state.check_plain_receive(kind)?;
                let received = state.receive_with(kind, max, now, |delivery| {
                    broker.received(&source, kind, None, delivery)
                });
                Ok((!received.is_empty()).then_some(received))
            })
            .await?
            .unwrap_or_default();
        Ok(received)
    }

    async fn peek(&self, queue: &QueueName, options: PeekOptions) -> Result<Vec<PeekedMessage>> {
        let max = check_max_messages(options.max_messages, self.capabilities())?;
        let source = self.broker.find(queue)?;
        let kind = LaneKind::from(options.sub_queue);
        let from = options.from_sequence_number.unwrap_or(0);
        self.broker
            .with_state(&source, |state, _| Ok(state.peek(kind, from, max)))
    }

    async fn complete(&self, receipt: &Receipt) -> Result<()> {
        let (queue, data) = self.receipt_queue(receipt)?;
        match (receipt.session_id(), data.session_lock) {
            (Some(session), Some(lock)) => self.broker.with_state(&queue, |state, now| {
                state.session_complete(session, lock, data.token, now)
            }),
            _ => self
                .broker
                .with_state(&queue, |state, _| state.complete(data.kind, data.token)),
        }
    }

    async fn abandon(&self, receipt: &Receipt, delay: Option<Duration>) -> Result<()> {
        let (queue, data) = self.receipt_queue(receipt)?;
        match (receipt.session_id(), data.session_lock) {
            (Some(session), Some(lock)) => self.broker.with_state(&queue, |state, now| {
                state.session_abandon(session, lock, data.token, delay, now)
            }),
            _ => self.broker.with_state(&queue, |state, now| {
                state.abandon_locked(data.kind, data.token, delay, now)
            }),
        }
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: DeadLetterReason) -> Result<()> {
        let (queue, data) = self.receipt_queue(receipt)?;
        match (receipt.session_id(), data.session_lock) {
            (Some(session), Some(lock)) => self.broker.with_state(&queue, |state, now| {
                state.session_dead_letter(session, lock, data.token, reason, now)
            }),
            _ => self.broker.with_state(&queue, |state, _| {
                state.dead_letter(data.kind, data.token, reason)
            }),
        }
    }

    async fn renew_lock(&self, receipt: &Receipt) -> Result<SystemTime> {
        let (queue, data) = self.receipt_queue(receipt)?;
        let until = match (receipt.session_id(), data.session_lock) {
            (Some(session), Some(lock)) => self
                .broker
                .with_state(&queue, |state, now| state.session_renew(session, lock, now))?,
            _ => self
                .broker
                .with_state(&queue, |state, now| state.renew(data.kind, data.token, now))?,
        };
        Ok(self.broker.clock().system(until))
    }

    async fn accept_session(
        &self,
        queue: &QueueName,
        options: AcceptSessionOptions,
    ) -> Result<Option<Box<dyn SessionReceiver>>> {
        let source = self.broker.find(queue)?;
        source.state.lock().check_sessions()?;
        let named = match &options.session {
            SessionSelector::Next => None,
            SessionSelector::Named(session) => Some(session.clone()),
        };
        let accepted = self
            .broker
            .wait_for(&source, options.wait, |state, now| {
                Ok(state.accept(named.as_ref(), now))
            })
            .await?;
        Ok(accepted.map(|(session_id, lock, until)| {
            Box::new(crate::session::MemorySession::new(
                Arc::clone(&self.broker),
                source,
                session_id,
                lock,
                self.broker.clock().system(until),
            )) as Box<dyn SessionReceiver>
        }))
    }

    async fn counts(&self, queue: &QueueName) -> Result<QueueCounts> {
        let stats = self.queue_stats(queue)?;
        let count = |n: usize| Some(u64::try_from(n).unwrap_or(u64::MAX));
        let mut counts = QueueCounts::default();
        counts.active = count(stats.active);
        counts.in_flight = count(stats.in_flight);
        counts.scheduled = count(stats.scheduled);
        counts.dead_letter = count(stats.dead_letter);
        counts.oldest_enqueued_at = stats.oldest_enqueued_at;
        Ok(counts)
    }

    async fn cancel_scheduled(&self, queue: &QueueName, sequence_number: u64) -> Result<()> {
        let source = self.broker.find(queue)?;
        self.broker
            .with_state(&source, |state, _| state.cancel_scheduled(sequence_number))
    }

    async fn close(&self) -> Result<()> {
        self.broker.closed.store(true, Ordering::Release);
        let queues: Vec<Arc<Queue>> = self.broker.queues.read().values().cloned().collect();
        for queue in queues {
            queue.wake_all();
        }
        Ok(())
    }
}
