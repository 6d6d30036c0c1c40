//! The provider contract: what every queue backend implements, and the conveniences built on it.

use std::fmt::Debug;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use crate::capabilities::Capabilities;
use crate::error::{QueueError, Result};
use crate::ids::{MessageId, QueueName, SessionId};
use crate::message::Message;
use crate::received::{DeadLetterReason, PeekedMessage, Receipt, ReceivedMessage};

/// Which part of a queue to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubQueue {
    /// The queue itself.
    #[default]
    Main,
    /// The queue's dead-letter queue.
    DeadLetter,
}

/// How to receive: how many messages at most, how long to wait for the first, from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveOptions {
    /// The most messages to return (at least 1; capped at the provider's
    /// [`max_receive_messages`](Capabilities::max_receive_messages)).
    pub max_messages: usize,
    /// How long to wait when no message is available. Zero returns at once.
    pub wait: Duration,
    /// The queue itself or its dead-letter queue.
    pub sub_queue: SubQueue,
}

impl ReceiveOptions {
    /// Up to `max_messages` from the queue itself, waiting up to `wait` for the first.
    pub fn new(max_messages: usize, wait: Duration) -> Self {
        ReceiveOptions {
            max_messages,
            wait,
            sub_queue: SubQueue::Main,
        }
    }

    /// The same, from the dead-letter queue.
    pub fn dead_letter(mut self) -> Self {
        self.sub_queue = SubQueue::DeadLetter;
        self
    }
}

/// How to peek: how many, from which sequence number, from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeekOptions {
    /// The most messages to return (at least 1).
    pub max_messages: usize,
    /// Start at this sequence number (inclusive); from the oldest message when `None`.
    pub from_sequence_number: Option<u64>,
    /// The queue itself or its dead-letter queue.
    pub sub_queue: SubQueue,
}

impl PeekOptions {
    /// Up to `max_messages` from the oldest message of the queue itself.
    pub fn new(max_messages: usize) -> Self {
        PeekOptions {
            max_messages,
            from_sequence_number: None,
            sub_queue: SubQueue::Main,
        }
    }

    /// The same, from the dead-letter queue.
    pub fn dead_letter(mut self) -> Self {
        self.sub_queue = SubQueue::DeadLetter;
        self
    }
}

/// Which session to accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionSelector {
    /// The next session that has a message available and is not locked by another receiver.
    Next,
    /// This session, whether or not it has messages, once no other receiver holds it.
    Named(SessionId),
}

/// How to accept a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptSessionOptions {
    /// Which session.
    pub session: SessionSelector,
    /// How long to wait for it.
    pub wait: Duration,
}

/// How many messages a queue holds, as far as its broker tells (approximate on SQS). A count
/// the broker does not give is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueCounts {
    /// Messages waiting to be received.
    pub active: Option<u64>,
    /// Messages received and not yet settled (locked, or invisible on SQS).
    pub in_flight: Option<u64>,
    /// Messages scheduled for later (or delayed).
    pub scheduled: Option<u64>,
    /// Messages in the dead-letter queue.
    pub dead_letter: Option<u64>,
    /// When the oldest message still in the queue was enqueued.
    pub oldest_enqueued_at: Option<SystemTime>,
}

/// What the broker said of a sent message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOutcome {
    /// The id of the sent message.
    pub message_id: MessageId,
    /// The broker's sequence number, where it assigns one at send time (needed to cancel a
    /// scheduled message).
    pub sequence_number: Option<u64>,
}

/// A queue backend: the full-option form of every operation.
///
/// Implementations are shared as `Arc<dyn QueueProvider>`, so every method takes `&self` and the
/// provider is chosen at run time. Callers use [`QueueProviderExt`] for the short forms. The
/// `# Behavior` list of each method is the contract the conformance suite checks.
#[async_trait]
pub trait QueueProvider: Send + Sync + Debug {
    /// A short, stable name: `"memory"`, `"sqs"`, `"azure"`.
    fn name(&self) -> &'static str;

    /// The system's name in OpenTelemetry's messaging conventions (`messaging.system`):
    /// `"aws_sqs"`, `"servicebus"`, or the provider's own.
    fn messaging_system(&self) -> &'static str;

    /// What this provider supports, and its limits.
    fn capabilities(&self) -> &Capabilities;

    /// Checks `queue` against this provider's own naming rules (stricter than [`QueueName`]'s).
    ///
    /// # Behavior
    /// - Returns [`InvalidInput`](crate::ErrorKind::InvalidInput) naming the rule broken.
    /// - Every operation taking a queue name applies the same check.
    fn validate_queue_name(&self, queue: &QueueName) -> Result<()>;

    /// Sends one message.
    ///
    /// # Behavior
    /// - On success the message is durable in the queue (or scheduled) and will be delivered.
    /// - A message larger than [`Capabilities::max_message_bytes`] fails with
    ///   [`MessageTooLarge`](crate::ErrorKind::MessageTooLarge), carrying size and limit.
    /// - A message without a session id sent to a session queue (or with one, to a queue without
    ///   sessions, where the provider can tell) fails with `InvalidInput`.
    /// - A scheduled message stays invisible until its time; without
    ///   [`Capabilities::scheduling`] it fails with `Unsupported`.
    /// - A missing queue fails with [`NotFound`](crate::ErrorKind::NotFound).
    async fn send(&self, queue: &QueueName, message: Message) -> Result<SendOutcome>;

    /// A consumer of `queue` (the processor) handles `messages` at once (per link, for a session
    /// receiver). A provider whose SDK fetches messages ahead of receive calls (Service Bus
    /// prefetch) sizes that buffer from it for the links it opens afterwards, so messages do not
    /// wait, locked, in a buffer no handler reaches within their lock. The default does nothing.
    fn set_prefetch_hint(&self, queue: &QueueName, messages: usize) {
        let _ = (queue, messages);
    }

    /// The bytes `message` takes in a [`send_batch`](Self::send_batch) request, as counted
    /// against [`Capabilities::max_batch_bytes`] (SQS: its body and attributes as encoded for
    /// the wire). The default is [`Message::approximate_size`].
    fn batch_entry_bytes(&self, message: &Message) -> usize {
        message.approximate_size()
    }

    /// Sends several messages.
    ///
    /// # Behavior
    /// - Returns one result per message, in order; some may fail while others succeed.
    /// - An error for the whole call (no such queue, connection lost) is the outer `Err`; then
    ///   nothing was sent.
    /// - Batches larger than [`Capabilities::max_batch_messages`] are split.
    async fn send_batch(
        &self,
        queue: &QueueName,
        messages: Vec<Message>,
    ) -> Result<Vec<Result<SendOutcome>>>;

    /// Receives up to `options.max_messages` messages under a lock.
    ///
    /// # Behavior
    /// - Returns as soon as at least one message is available; waits up to `options.wait`
    ///   otherwise, then returns an empty `Vec` (not an error).
    /// - A received message is invisible to other receivers until it is settled or its lock
    ///   expires; then it is delivered again with its delivery count raised by one.
    /// - A message delivered more than the queue's maximum delivery count is moved to the
    ///   dead-letter queue with reason `MaxDeliveryCountExceeded` instead of being delivered.
    /// - Expired messages are never delivered.
    /// - Concurrent receivers never hold the same message at once.
    /// - On a session queue, use [`accept_session`](Self::accept_session) instead: this fails
    ///   with `InvalidInput` where the provider can tell.
    async fn receive(
        &self,
        queue: &QueueName,
        options: ReceiveOptions,
    ) -> Result<Vec<ReceivedMessage>>;

    /// Reads messages without locking them or raising their delivery count.
    ///
    /// # Behavior
    /// - Peeked messages stay available to receivers.
    /// - Messages come in sequence order from `from_sequence_number` (or the oldest).
    /// - Without [`Capabilities::peek`] fails with `Unsupported`.
    async fn peek(&self, queue: &QueueName, options: PeekOptions) -> Result<Vec<PeekedMessage>>;

    /// Settles a delivery as done: the message is removed.
    ///
    /// # Behavior
    /// - Works for every receipt of this provider: from [`receive`](Self::receive) and from
    ///   session receivers alike.
    /// - After the lock expired, or the message was settled or delivered again, fails with
    ///   [`LockLost`](crate::ErrorKind::LockLost) and changes nothing.
    /// - A transient error leaves the lock in place: the caller may call again.
    async fn complete(&self, receipt: &Receipt) -> Result<()>;

    /// Settles several deliveries as done, in as few broker calls as the provider can make.
    ///
    /// # Behavior
    /// - Returns one result per receipt, in order, each what [`complete`](Self::complete) would
    ///   have returned for it: some may fail (`LockLost`) while others succeed.
    /// - An error for the whole call is the outer `Err`; then nothing was settled. The default
    ///   implementation calls `complete` once per receipt.
    async fn complete_batch(&self, receipts: &[Receipt]) -> Result<Vec<Result<()>>> {
        let mut results = Vec::with_capacity(receipts.len());
        for receipt in receipts {
            results.push(self.complete(receipt).await);
        }
        Ok(results)
    }

    /// Gives a delivery back: the message becomes available again (after `delay`, if given),
    /// with its delivery count raised on the next delivery.
    ///
    /// # Behavior
    /// - With a `delay` and without [`Capabilities::abandon_with_delay`] fails with
    ///   `Unsupported` and changes nothing.
    /// - A lost lock fails with `LockLost`.
    async fn abandon(&self, receipt: &Receipt, delay: Option<Duration>) -> Result<()>;

    /// Moves a delivered message to the queue's dead-letter queue with a reason.
    ///
    /// # Behavior
    /// - The dead-lettered message keeps its body and metadata and carries `reason`.
    /// - A lost lock fails with `LockLost`.
    /// - Without [`Capabilities::native_dead_letter`] the message is copied first and deleted
    ///   second: a failure in between leaves it in both queues, never in neither.
    async fn dead_letter(&self, receipt: &Receipt, reason: DeadLetterReason) -> Result<()>;

    /// Extends the lock of a delivery; returns the new deadline.
    ///
    /// # Behavior
    /// - For a session message, renews the session's lock (which covers its messages).
    /// - A lost lock fails with `LockLost`; without [`Capabilities::lock_renewal`], `Unsupported`.
    async fn renew_lock(&self, receipt: &Receipt) -> Result<SystemTime>;

    /// Extends the locks of several deliveries, in as few broker calls as the provider can make
    /// (SQS: one `ChangeMessageVisibilityBatch` per ten).
    ///
    /// # Behavior
    /// - Returns one result per receipt, in order, each what [`renew_lock`](Self::renew_lock)
    ///   would have returned for it: some may fail (`LockLost`) while others succeed.
    /// - An error for the whole call is the outer `Err`; then no lock was extended. The default
    ///   implementation calls `renew_lock` once per receipt.
    async fn renew_lock_batch(&self, receipts: &[Receipt]) -> Result<Vec<Result<SystemTime>>> {
        let mut results = Vec::with_capacity(receipts.len());
        for receipt in receipts {
            results.push(self.renew_lock(receipt).await);
        }
        Ok(results)
    }

    /// Accepts a session of a session queue, holding its lock exclusively.
    ///
    /// # Behavior
    /// - Returns `Ok(None)` when no session could be had within `options.wait`.
    /// - [`SessionSelector::Next`] takes a session that has an available message and no holder.
    /// - [`SessionSelector::Named`] takes that session, even empty, once no one else holds it;
    ///   without [`Capabilities::accept_named_session`] it fails with `Unsupported`.
    /// - While held, no other receiver gets the session's messages; when its lock expires the
    ///   session and its unsettled messages become available again.
    /// - Without [`Capabilities::sessions`] fails with `Unsupported`.
    async fn accept_session(
        &self,
        queue: &QueueName,
        options: AcceptSessionOptions,
    ) -> Result<Option<Box<dyn SessionReceiver>>>;

    /// How many messages `queue` holds, for operators (`queue-runtime stats`).
    ///
    /// # Behavior
    /// - Without [`Capabilities::counts`] fails with `Unsupported` (the default).
    /// - A missing queue fails with `NotFound`.
    async fn counts(&self, queue: &QueueName) -> Result<QueueCounts> {
        let _ = queue;
        Err(QueueError::unsupported(self.name(), "counting messages"))
    }

    /// Cancels a scheduled message before it becomes visible.
    ///
    /// # Behavior
    /// - A sequence number that names no scheduled message fails with `NotFound`.
    /// - Without [`Capabilities::cancel_scheduled`] fails with `Unsupported`.
    async fn cancel_scheduled(&self, queue: &QueueName, sequence_number: u64) -> Result<()>;

    /// Releases connections and links. Later calls fail with
    /// [`Closed`](crate::ErrorKind::Closed). Closing twice is fine.
    async fn close(&self) -> Result<()>;
}

/// A session held by one receiver: its messages, in order, its lock, and its state.
///
/// It receives and holds the session; it does not settle. The receipts of its messages carry
/// the session lock, and [`QueueProvider::complete`], [`abandon`](QueueProvider::abandon),
/// [`dead_letter`](QueueProvider::dead_letter) and [`renew_lock`](QueueProvider::renew_lock)
/// settle them like any other receipt: one settle route for every message.
///
/// # Behavior
/// - `receive` returns the session's messages in send order; a message abandoned (or whose
///   delivery was not settled before the session lock was lost) comes first again.
/// - Every operation after the session lock is lost fails with `LockLost`; after
///   [`close`](Self::close), with `Closed`. Settling a receipt of a closed (or lost) session
///   through the provider fails with `LockLost`: the message is available again.
#[async_trait]
pub trait SessionReceiver: Send + Sync + Debug {
    /// The queue the session belongs to.
    fn queue(&self) -> &QueueName;

    /// The session's id.
    fn session_id(&self) -> &SessionId;

    /// Until when the session lock is held, as last known.
    fn locked_until(&self) -> SystemTime;

    /// Receives up to `max_messages` of this session's messages, waiting up to `wait`.
    async fn receive(&self, max_messages: usize, wait: Duration) -> Result<Vec<ReceivedMessage>>;

    /// Extends the session lock; returns the new deadline.
    async fn renew_session_lock(&self) -> Result<SystemTime>;

    /// The session state, if any was set.
    async fn state(&self) -> Result<Option<Bytes>>;

    /// Replaces (or with `None`, clears) the session state.
    async fn set_state(&self, state: Option<Bytes>) -> Result<()>;

    /// Releases the session: its unsettled messages become available again at once. Closing
    /// twice is fine.
    async fn close(&self) -> Result<()>;
}

/// Short forms of [`QueueProvider`] calls, for every provider. Do not implement: it is
/// implemented for every `QueueProvider`.
#[async_trait]
pub trait QueueProviderExt: QueueProvider {
    /// Receives at most one message, waiting up to `wait`.
    async fn receive_one(
        &self,
        queue: &QueueName,
        wait: Duration,
    ) -> Result<Option<ReceivedMessage>> {
        Ok(self
            .receive(queue, ReceiveOptions::new(1, wait))
            .await?
            .into_iter()
            .next())
    }

    /// Receives up to `max_messages` from the queue's dead-letter queue.
    async fn receive_dead_letters(
        &self,
        queue: &QueueName,
        max_messages: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>> {
        self.receive(queue, ReceiveOptions::new(max_messages, wait).dead_letter())
            .await
    }

    /// Accepts the next available session, waiting up to `wait`.
    async fn accept_next_session(
        &self,
        queue: &QueueName,
        wait: Duration,
    ) -> Result<Option<Box<dyn SessionReceiver>>> {
        self.accept_session(
            queue,
            AcceptSessionOptions {
                session: SessionSelector::Next,
                wait,
            },
        )
        .await
    }

    /// Accepts the named session, waiting up to `wait` for another holder to release it.
    async fn accept_named_session(
        &self,
        queue: &QueueName,
        session: &SessionId,
        wait: Duration,
    ) -> Result<Option<Box<dyn SessionReceiver>>> {
        self.accept_session(
            queue,
            AcceptSessionOptions {
                session: SessionSelector::Named(session.clone()),
                wait,
            },
        )
        .await
    }

    /// Dead-letters a delivery with a reason and a description.
    async fn dead_letter_with(
        &self,
        receipt: &Receipt,
        reason: &str,
        description: &str,
    ) -> Result<()> {
        self.dead_letter(receipt, DeadLetterReason::new(reason, description))
            .await
    }
}

impl<P: QueueProvider + ?Sized> QueueProviderExt for P {}

/// Checks the arguments every provider checks the same way before doing any work.
pub fn check_max_messages(max_messages: usize, capabilities: &Capabilities) -> Result<usize> {
    if max_messages == 0 {
        return Err(QueueError::invalid_input("max_messages must be at least 1"));
    }
    Ok(max_messages.min(capabilities.max_receive_messages.max(1)))
}

/// Checks a message against the provider's size limit, the way every provider reports it.
pub fn check_message_size(size: usize, capabilities: &Capabilities) -> Result<()> {
    if size > capabilities.max_message_bytes {
        return Err(QueueError::message_too_large(
            size,
            capabilities.max_message_bytes,
        ));
    }
    Ok(())
}
