//! The async face of the broker: queue lookup, locking, waiting, receipts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use queue_core::{
    AcceptSessionOptions, Capabilities, DeadLetterReason, ErrorKind, Message, PeekOptions,
    PeekedMessage, QueueError, QueueName, QueueProvider, Receipt, ReceiveOptions, ReceivedMessage,
    Result, SendOutcome, SessionId, SessionReceiver, SessionSelector, check_max_messages,
};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::state::{Clock, Delivery, LaneKind, QueueState, QueueStats, later};
use crate::{MemoryConfig, PROVIDER_NAME, QueueOptions};

/// One queue: its state behind its own lock, and the waiters to wake when it changes.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) name: QueueName,
    pub(crate) state: Mutex<QueueState>,
    pub(crate) changed: Notify,
}

#[derive(Debug)]
pub(crate) struct Broker {
    config: MemoryConfig,
    capabilities: Capabilities,
    clock: Clock,
    queues: RwLock<HashMap<QueueName, Arc<Queue>>>,
    closed: AtomicBool,
}

impl Broker {
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(QueueError::new(
                ErrorKind::Closed,
                "the memory provider was closed",
            ));
        }
        Ok(())
    }

    pub(crate) fn clock(&self) -> Clock {
        self.clock
    }

    fn create(&self, name: &QueueName, options: QueueOptions) -> Result<Arc<Queue>> {
        options.validate()?;
        let mut queues = self.queues.write();
        if queues.contains_key(name) {
            return Err(QueueError::invalid_input(format!(
                "queue {name} already exists"
            )));
        }
        if queues.len() >= self.config.max_queues() {
            return Err(QueueError::new(
                ErrorKind::QueueFull,
                format!(
                    "the broker already holds its maximum of {} queues",
                    self.config.max_queues()
                ),
            ));
        }
        let queue = Arc::new(Queue {
            name: name.clone(),
            state: Mutex::new(QueueState::new(
                options,
                self.clock,
                self.config.max_message_bytes(),
            )),
            changed: Notify::new(),
        });
        queues.insert(name.clone(), Arc::clone(&queue));
        Ok(queue)
    }

    fn find(&self, name: &QueueName) -> Result<Arc<Queue>> {
        self.check_open()?;
        self.queues.read().get(name).cloned().ok_or_else(|| {
            QueueError::new(ErrorKind::NotFound, format!("queue {name} does not exist"))
        })
    }

    /// The queue to send to: created with the default options when the broker allows it.
    fn find_or_create(&self, name: &QueueName) -> Result<Arc<Queue>> {
        match self.find(name) {
            Err(error)
                if error.kind() == ErrorKind::NotFound && self.config.auto_create_queues() =>
            {
                match self.create(name, self.config.default_queue_options().clone()) {
                    Ok(queue) => Ok(queue),
                    // Another sender created it first.
                    Err(_) => self.find(name),
                }
            }
            found => found,
        }
    }

    /// Runs `attempt` under the queue's lock until it yields something or `wait` passes.
    ///
    /// Between attempts the task sleeps until the queue changes (a send, a settle) or the next
    /// timed event of the queue (a lock expiry, a scheduled arrival) or the deadline, whichever
    /// comes first: no polling.
    pub(crate) async fn wait_for<T>(
        &self,
        queue: &Queue,
        wait: Duration,
        mut attempt: impl FnMut(&mut QueueState, Instant) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let deadline = later(Instant::now(), wait);
        loop {
            let (changed, wake_at) = {
                let mut state = queue.state.lock();
                self.check_open()?;
                let now = Instant::now();
                if state.advance(now) {
                    queue.changed.notify_waiters();
                }
                if let Some(found) = attempt(&mut state, now)? {
                    return Ok(Some(found));
                }
                if now >= deadline {
                    return Ok(None);
                }
                // Created under the lock, so a change made after we release it wakes us.
                let changed = queue.changed.notified();
                let wake_at = state.next_event().map_or(deadline, |at| at.min(deadline));
                (changed, wake_at)
            };
            // Either outcome means: look again.
            let _ = tokio::time::timeout_at(wake_at, changed).await;
        }
    }

    /// Runs a quick operation under the queue's lock, after applying what became due.
    pub(crate) fn with_state<T>(
        &self,
        queue: &Queue,
        operation: impl FnOnce(&mut QueueState, Instant) -> Result<T>,
    ) -> Result<T> {
        self.check_open()?;
        let mut state = queue.state.lock();
        let now = Instant::now();
        let mut woke = state.advance(now);
        let result = operation(&mut state, now);
        // Settling and abandoning can free capacity or return messages; wake waiters then.
        woke |= result.is_ok();
        drop(state);
        if woke {
            queue.changed.notify_waiters();
        }
        result
    }

    pub(crate) fn received(
        &self,
        queue: &Queue,
        kind: LaneKind,
        session: Option<(SessionId, u64)>,
        delivery: Delivery,
    ) -> ReceivedMessage {
        let session_id = session.as_ref().map(|(id, _)| id.clone());
        ReceivedMessage {
            message: delivery.message,
            delivery: delivery.info,
            locked_until: self.clock.system(delivery.locked_until),
            receipt: Receipt::new(
                PROVIDER_NAME,
                queue.name.clone(),
                session_id,
                MemoryReceipt {
                    token: delivery.token,
                    kind,
                    session_lock: session.map(|(_, lock)| lock),
                },
            ),
        }
    }
}

/// What a memory receipt holds: the lock token, the lane, and the session lock if any.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemoryReceipt {
    pub(crate) token: u64,
    pub(crate) kind: LaneKind,
    pub(crate) session_lock: Option<u64>,
}

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
        capabilities.max_message_bytes = config.max_message_bytes();
        capabilities.max_batch_messages = MAX_BATCH_MESSAGES;
        capabilities.max_receive_messages = MAX_RECEIVE_MESSAGES;
        capabilities.max_properties = queue_core::MAX_PROPERTIES;
        MemoryProvider {
            broker: Arc::new(Broker {
                config,
                capabilities,
                clock: Clock::new(),
                queues: RwLock::new(HashMap::new()),
                closed: AtomicBool::new(false),
            }),
        }
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
                queue.changed.notify_waiters();
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
        let data = *receipt.data::<MemoryReceipt>(PROVIDER_NAME)?;
        let queue = self.broker.find(receipt.queue())?;
        Ok((queue, data))
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
        target.changed.notify_waiters();
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
        target.changed.notify_waiters();
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
        source.state.lock().check_plain_receive(kind)?;
        let deliveries = self
            .broker
            .wait_for(&source, options.wait, |state, now| {
                let deliveries = state.receive(kind, max, now);
                Ok((!deliveries.is_empty()).then_some(deliveries))
            })
            .await?
            .unwrap_or_default();
        Ok(deliveries
            .into_iter()
            .map(|delivery| self.broker.received(&source, kind, None, delivery))
            .collect())
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
                state.abandon(data.kind, data.token, delay, now)
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

    async fn cancel_scheduled(&self, queue: &QueueName, sequence_number: u64) -> Result<()> {
        let source = self.broker.find(queue)?;
        self.broker
            .with_state(&source, |state, _| state.cancel_scheduled(sequence_number))
    }

    async fn close(&self) -> Result<()> {
        self.broker.closed.store(true, Ordering::Release);
        let queues: Vec<Arc<Queue>> = self.broker.queues.read().values().cloned().collect();
        for queue in queues {
            queue.changed.notify_waiters();
        }
        Ok(())
    }
}
