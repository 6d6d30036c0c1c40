//! Dead-letter tooling: inspect, replay and purge a queue's dead-letter queue.
//!
//! A library API (a CLI builds on it). Inspection opens sealed messages when the keys allow,
//! without the freshness or replay checks (dead letters are old by nature) and reports their age.
//! Replay re-seals under the current primary key with a new message id and seal time, sends to
//! the source queue first, and only then removes the dead-letter copy: a failure in between
//! leaves a copy in both queues, never in neither.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use queue_core::{
    DeliveryInfo, Message, MessageId, PeekOptions, QueueName, ReceivedMessage, Result, SealInfo,
};
use tracing::{info, warn};

use crate::client::QueueClient;
use crate::security::UnsealedPolicy;

/// How long one receive from the dead-letter queue waits before the queue counts as drained.
const DRAIN_WAIT: Duration = Duration::from_millis(500);
/// Messages per receive from the dead-letter queue.
const DRAIN_BATCH: usize = 10;

/// One dead-lettered message, as inspected.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The message: opened when it was sealed and the keys open it (then `seal` is set),
    /// otherwise exactly as it sits in the queue, unauthenticated.
    pub message: Message,
    /// Why it was dead-lettered, as the broker or the dead-lettering party recorded it.
    pub reason: Option<String>,
    /// The longer explanation.
    pub description: Option<String>,
    /// Deliveries so far.
    pub delivery_count: u32,
    /// When the broker enqueued it (where it reports it for dead letters: the original enqueue).
    pub enqueued_at: SystemTime,
    /// How long ago that was.
    pub age: Duration,
    /// The broker's sequence number, where it has one.
    pub sequence_number: Option<u64>,
    /// What was authenticated, when the message was sealed and opened.
    pub seal: Option<SealInfo>,
}

impl DeadLetter {
    fn new(message: &Message, delivery: &DeliveryInfo) -> Self {
        DeadLetter {
            message: message.clone(),
            reason: delivery.dead_letter.as_ref().map(|r| r.reason.clone()),
            description: delivery.dead_letter.as_ref().map(|r| r.description.clone()),
            delivery_count: delivery.delivery_count,
            enqueued_at: delivery.enqueued_at,
            age: SystemTime::now()
                .duration_since(delivery.enqueued_at)
                .unwrap_or(Duration::ZERO),
            sequence_number: delivery.sequence_number,
            seal: delivery.seal.clone(),
        }
    }

    /// Whether the body was authenticated (sealed, and opened with our keys).
    pub fn is_authenticated(&self) -> bool {
        self.seal.is_some()
    }
}

/// Which dead letters an operation applies to: all that match every condition set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    reason: Option<String>,
    older_than: Option<Duration>,
    message_ids: Option<HashSet<MessageId>>,
    limit: Option<usize>,
}

impl DeadLetterFilter {
    /// Every dead letter.
    pub fn all() -> Self {
        DeadLetterFilter::default()
    }

    /// Only those dead-lettered with exactly this reason.
    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Only those enqueued longer ago than `age`.
    #[must_use]
    pub fn older_than(mut self, age: Duration) -> Self {
        self.older_than = Some(age);
        self
    }

    /// Only these messages.
    #[must_use]
    pub fn with_message_ids(mut self, ids: impl IntoIterator<Item = MessageId>) -> Self {
        self.message_ids = Some(ids.into_iter().collect());
        self
    }

    /// At most this many.
    #[must_use]
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Whether `dead_letter` is selected (the limit aside).
    pub fn matches(&self, dead_letter: &DeadLetter) -> bool {
        self.reason
            .as_ref()
            .is_none_or(|reason| dead_letter.reason.as_ref() == Some(reason))
            && self.older_than.is_none_or(|age| dead_letter.age > age)
            && self
                .message_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(dead_letter.message.message_id()))
    }
}

/// What a replay did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Replayed: the dead letter's id, and the id of the new message in the source queue.
    pub replayed: Vec<(MessageId, MessageId)>,
    /// Selected but not replayed, and why (left in the dead-letter queue).
    pub skipped: Vec<(MessageId, String)>,
    /// Replayed, but the dead-letter copy could not be removed: it is still there, and a later
    /// replay would send it again.
    pub not_removed: Vec<(MessageId, String)>,
}

/// What a purge did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct PurgeReport {
    /// Removed for good.
    pub purged: Vec<MessageId>,
    /// Selected but still there, and why.
    pub failed: Vec<(MessageId, String)>,
}

/// The dead-letter queue of one queue. Get it with [`QueueClient::dead_letters`].
#[derive(Debug, Clone)]
pub struct DeadLetters {
    client: QueueClient,
    queue: QueueName,
}

impl QueueClient {
    /// Tools for `queue`'s dead-letter queue: inspect, replay, purge.
    pub fn dead_letters(&self, queue: &QueueName) -> DeadLetters {
        DeadLetters {
            client: self.clone(),
            queue: queue.clone(),
        }
    }
}

impl DeadLetters {
    /// The oldest `max` dead letters, without taking them. Peeks where the provider can; SQS
    /// cannot, so there they are received and given straight back (their receive count rises).
    pub async fn list(&self, max: usize) -> Result<Vec<DeadLetter>> {
        if self.client.capabilities().peek {
            let peeked = self
                .client
                .peek(&self.queue, PeekOptions::new(max).dead_letter())
                .await?;
            return Ok(peeked
                .iter()
                .map(|m| DeadLetter::new(&m.message, &m.delivery))
                .collect());
        }
        let mut listed = Vec::new();
        let mut held = Vec::new();
        while listed.len() < max {
            let batch = self
                .client
                .receive_dead_letters(
                    &self.queue,
                    (max - listed.len()).min(DRAIN_BATCH),
                    DRAIN_WAIT,
                )
                .await?;
            if batch.is_empty() {
                break;
            }
            listed.extend(
                batch
                    .iter()
                    .map(|m| DeadLetter::new(&m.message, &m.delivery)),
            );
            held.extend(batch);
        }
        self.release(held).await;
        Ok(listed)
    }

    /// Sends the selected dead letters back to their queue as new messages (sealed anew under
    /// the current primary key when the queue is sealed: new message id, new seal time, so they
    /// pass the freshness and replay checks), then removes each dead-letter copy.
    ///
    /// A dead letter that did not authenticate is skipped when the queue refuses unsealed
    /// messages: re-sealing it would launder a forgery into a trusted message.
    pub async fn replay(&self, filter: &DeadLetterFilter) -> Result<ReplayReport> {
        self.replay_with_progress(filter, &|_| {}).await
    }

    /// [`replay`](Self::replay), calling `progress` with the number of selected dead letters
    /// dealt with so far (replayed or skipped) after each one: for a progress bar.
    pub async fn replay_with_progress(
        &self,
        filter: &DeadLetterFilter,
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<ReplayReport> {
        let mut report = ReplayReport::default();
        let refuses_unauthenticated = self.client.security().is_some_and(|security| {
            security.policy(&self.queue).unsealed == UnsealedPolicy::Reject
        });
        let mut sweep = Sweep::new(filter);
        let outcome: Result<()> = async {
            while let Some(batch) = sweep.next_batch(self).await? {
            for (dead_letter, received) in batch {
                let old_id = received.message_id().clone();
                if refuses_unauthenticated && !dead_letter.is_authenticated() {
                    report.skipped.push((
                        old_id,
                        "not authenticated (unsealed, or did not open with our keys)".to_owned(),
                    ));
                    sweep.hold(received);
                    progress(report.replayed.len() + report.skipped.len());
                    continue;
                }
                let replay = match replay_of(&received.message) {
                    Ok(replay) => replay,
                    Err(error) => {
                        report.skipped.push((old_id, error.to_string()));
                        sweep.hold(received);
                        progress(report.replayed.len() + report.skipped.len());
                        continue;
                    }
                };
                let new_id = replay.message_id().clone();
                if let Err(error) = self.client.send(&self.queue, replay).await {
                    report
                        .skipped
                        .push((old_id, format!("sending failed: {error}")));
                    sweep.hold(received);
                    progress(report.replayed.len() + report.skipped.len());
                    continue;
                }
                if let Err(error) = self.client.complete(&received).await {
                    warn!(messaging.message.id = %old_id, %error, "replayed, but the dead-letter copy stays");
                    report.not_removed.push((old_id.clone(), error.to_string()));
                }
                info!(messaging.message.id = %old_id, new_message_id = %new_id, "dead letter replayed");
                report.replayed.push((old_id, new_id));
                progress(report.replayed.len() + report.skipped.len());
            }
            }
            Ok(())
        }
        .await;
        self.release(sweep.held).await;
        outcome.map(|()| report)
    }

    /// Removes the selected dead letters for good.
    pub async fn purge(&self, filter: &DeadLetterFilter) -> Result<PurgeReport> {
        self.purge_with_progress(filter, &|_| {}).await
    }

    /// [`purge`](Self::purge), calling `progress` with the number of selected dead letters dealt
    /// with so far after each one.
    pub async fn purge_with_progress(
        &self,
        filter: &DeadLetterFilter,
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<PurgeReport> {
        let mut report = PurgeReport::default();
        let mut sweep = Sweep::new(filter);
        let outcome: Result<()> = async {
            while let Some(batch) = sweep.next_batch(self).await? {
                for (_, received) in batch {
                    let id = received.message_id().clone();
                    match self.client.complete(&received).await {
                        Ok(()) => report.purged.push(id),
                        Err(error) => {
                            report.failed.push((id, error.to_string()));
                            sweep.hold(received);
                        }
                    }
                    progress(report.purged.len() + report.failed.len());
                }
            }
            Ok(())
        }
        .await;
        self.release(sweep.held).await;
        info!(
            messaging.destination.name = %self.queue,
            purged = report.purged.len(),
            "dead letters purged"
        );
        outcome.map(|()| report)
    }

    async fn release(&self, held: Vec<ReceivedMessage>) {
        for message in held {
            // Not lost either way: a copy whose give-back fails returns when its lock expires.
            if let Err(error) = self.client.abandon(&message, None).await {
                warn!(messaging.message.id = %message.message_id(), %error, "could not give a dead letter back");
            }
        }
    }
}

/// The new message that replays a dead letter: the same body, session, correlation id, content
/// type and application properties, under a new id, to be delivered now.
fn replay_of(dead: &Message) -> Result<Message> {
    let mut builder = Message::builder(dead.body().clone())
        .session(dead.session_id().cloned())
        .properties(dead.properties().without_reserved());
    if let Some(correlation_id) = dead.correlation_id() {
        builder = builder.correlation_id(correlation_id);
    }
    if let Some(content_type) = dead.content_type() {
        builder = builder.content_type(content_type);
    }
    if let Some(ttl) = dead.time_to_live() {
        builder = builder.time_to_live(ttl);
    }
    builder.build()
}

/// One pass through a dead-letter queue: batches of the selected messages, while the others are
/// held (locked) until the end so they do not come round again, then given back.
struct Sweep<'a> {
    filter: &'a DeadLetterFilter,
    seen: HashSet<(MessageId, Option<u64>)>,
    held: Vec<ReceivedMessage>,
    selected: usize,
}

impl<'a> Sweep<'a> {
    fn new(filter: &'a DeadLetterFilter) -> Self {
        Sweep {
            filter,
            seen: HashSet::new(),
            held: Vec::new(),
            selected: 0,
        }
    }

    /// Keeps a message until the end of the pass.
    fn hold(&mut self, message: ReceivedMessage) {
        self.held.push(message);
    }

    /// The next selected messages; `None` once the queue has been gone through (or the limit
    /// reached).
    async fn next_batch(
        &mut self,
        dead_letters: &DeadLetters,
    ) -> Result<Option<Vec<(DeadLetter, ReceivedMessage)>>> {
        loop {
            if self
                .filter
                .limit
                .is_some_and(|limit| self.selected >= limit)
            {
                return Ok(None);
            }
            let batch = dead_letters
                .client
                .receive_dead_letters(&dead_letters.queue, DRAIN_BATCH, DRAIN_WAIT)
                .await?;
            if batch.is_empty() {
                return Ok(None);
            }
            let mut any_new = false;
            let mut selected = Vec::new();
            for received in batch {
                let key = (
                    received.message_id().clone(),
                    received.delivery.sequence_number,
                );
                // One we hold came back (its lock expired): the queue has been gone through.
                if !self.seen.insert(key) {
                    self.held.push(received);
                    continue;
                }
                any_new = true;
                let dead_letter = DeadLetter::new(&received.message, &received.delivery);
                let within_limit = self.filter.limit.is_none_or(|limit| self.selected < limit);
                if within_limit && self.filter.matches(&dead_letter) {
                    self.selected += 1;
                    selected.push((dead_letter, received));
                } else {
                    self.held.push(received);
                }
            }
            if !any_new {
                return Ok(None);
            }
            if !selected.is_empty() {
                return Ok(Some(selected));
            }
        }
    }
}
