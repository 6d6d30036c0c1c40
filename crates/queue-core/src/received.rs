//! What a receiver gets: the message as sent, what the broker knows of it, and a receipt.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::error::QueueError;
use crate::ids::{MessageId, QueueName, SessionId};
use crate::message::Message;

/// The longest dead-letter reason, in bytes.
pub const MAX_DEAD_LETTER_REASON_LEN: usize = 256;
/// The longest dead-letter description, in bytes.
pub const MAX_DEAD_LETTER_DESCRIPTION_LEN: usize = 4096;
/// The room every provider keeps in each message for what dead-lettering adds (the reason and
/// the description, as the broker stores them), in bytes.
///
/// A provider accepts a message only if it is at least this much under the broker's limit, so
/// every message it accepts can also be dead-lettered with its reason. Reasons and descriptions
/// longer than fit are truncated, with a marker, when they are stored (see
/// [`DeadLetterReason::bounded`]).
pub const DEAD_LETTER_RESERVE: usize = 1024;

/// Why a message was moved to the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterReason {
    /// A short, stable reason (`MaxDeliveryCountExceeded`, `TTLExpiredException`,
    /// `rejected: authentication`, or the application's own).
    pub reason: String,
    /// A human-readable description.
    pub description: String,
}

impl DeadLetterReason {
    /// The reason the brokers use when a message was delivered too many times.
    pub const MAX_DELIVERY_COUNT_EXCEEDED: &'static str = "MaxDeliveryCountExceeded";
    /// The reason the brokers use when a message expired before anyone took it.
    pub const TTL_EXPIRED: &'static str = "TTLExpiredException";

    /// A reason and a description, truncated (at a character boundary) to the limits
    /// [`MAX_DEAD_LETTER_REASON_LEN`] and [`MAX_DEAD_LETTER_DESCRIPTION_LEN`], so dead-lettering
    /// never fails because an explanation is long.
    pub fn new(reason: impl Into<String>, description: impl Into<String>) -> Self {
        DeadLetterReason {
            reason: truncate(reason.into(), MAX_DEAD_LETTER_REASON_LEN),
            description: truncate(description.into(), MAX_DEAD_LETTER_DESCRIPTION_LEN),
        }
    }
}

impl DeadLetterReason {
    /// The marker that ends a truncated description.
    pub const TRUNCATED: &'static str = "... [truncated]";

    /// This reason and description cut to fit `budget` bytes as `measure` counts them (the
    /// provider's own encoding of the two): the description first, ending with
    /// [`TRUNCATED`](Self::TRUNCATED), then the reason. `None` when even empty ones do not fit.
    pub fn bounded(
        &self,
        budget: usize,
        measure: impl Fn(&DeadLetterReason) -> usize,
    ) -> Option<Self> {
        if measure(self) <= budget {
            return Some(self.clone());
        }
        // The longest cut description (with the marker) that fits, found by bisection: the
        // provider's encoding may grow faster than the text (escapes), so no linear guess.
        let with_description = |keep: usize| {
            let mut description = truncate(self.description.clone(), keep);
            description.push_str(Self::TRUNCATED);
            DeadLetterReason {
                reason: self.reason.clone(),
                description,
            }
        };
        if let Some(keep) = longest_fitting(self.description.len(), |keep| {
            measure(&with_description(keep)) <= budget
        }) {
            return Some(with_description(keep));
        }
        let with_reason = |keep: usize| DeadLetterReason {
            reason: truncate(self.reason.clone(), keep),
            description: String::new(),
        };
        longest_fitting(self.reason.len(), |keep| {
            measure(&with_reason(keep)) <= budget
        })
        .map(with_reason)
    }
}

/// The largest `keep` in `0..=max` for which `fits` holds (it holds for every smaller one), or
/// `None` when it does not hold even for 0.
fn longest_fitting(max: usize, fits: impl Fn(usize) -> bool) -> Option<usize> {
    if !fits(0) {
        return None;
    }
    let (mut low, mut high) = (0, max);
    while low < high {
        let middle = low + (high - low).div_ceil(2);
        if fits(middle) {
            low = middle;
        } else {
            high = middle - 1;
        }
    }
    Some(low)
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// What the broker knows of a delivered (or peeked) message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryInfo {
    /// How many times the message has been delivered, this delivery included (1 the first time).
    pub delivery_count: u32,
    /// When the broker accepted the message (its own clock): the reference for freshness checks.
    pub enqueued_at: SystemTime,
    /// The broker's sequence number, where it has one.
    pub sequence_number: Option<u64>,
    /// When the message expires, where the broker reports it.
    pub expires_at: Option<SystemTime>,
    /// For a message read from a dead-letter queue: why it is there.
    pub dead_letter: Option<DeadLetterReason>,
    /// Set by queue-runtime's secure client when the message was sealed and opened: what was
    /// authenticated. `None` from providers, and for a message that was not sealed (or, read
    /// from a dead-letter queue or peeked, did not open): its body is then exactly what sits in
    /// the queue, unauthenticated.
    pub seal: Option<SealInfo>,
}

/// What the secure client authenticated when it opened a message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SealInfo {
    /// The key that sealed it: the shared key (version 1 envelope) or the recipient key it was
    /// sealed to (version 2, public key).
    pub key_id: String,
    /// The producer's signing key that signed it (version 2 envelopes only): which producer sent
    /// the message, proven by its signature and the consumer's trust list.
    pub sender_key_id: Option<String>,
    /// The envelope's unique id (what the replay guard remembers).
    pub envelope_id: [u8; 32],
    /// When the sender sealed it (the sender's clock, authenticated).
    pub sealed_at: SystemTime,
    /// For a scheduled message: not to be processed before this time (authenticated).
    pub not_before: Option<SystemTime>,
    /// The replay guard's claim on this delivery: set when the secure client received it, so
    /// that settling the delivery releases the claim or makes it final. `None` for dead letters
    /// and peeked messages, which are inspected, not processed.
    pub claim: Option<ReplayClaim>,
}

/// The replay guard's claim on one delivery of a sealed message.
///
/// While a delivery holds the claim of its envelope id, another copy of the same envelope (a
/// duplicate the broker delivered twice, or one an attacker re-sent) waits; once the delivery
/// is settled, the claim is released (given back) or becomes final (completed: copies are
/// refused as replays). A claim also ends with the lock of its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplayClaim(u128);

impl ReplayClaim {
    /// A claim with this value; each delivery's claim must be unique (random).
    pub const fn new(value: u128) -> Self {
        ReplayClaim(value)
    }

    /// The claim's value, as a replay store keeps it.
    pub const fn value(self) -> u128 {
        self.0
    }
}

impl SealInfo {
    /// The authenticated facts of one opened envelope.
    pub fn new(
        key_id: impl Into<String>,
        envelope_id: [u8; 32],
        sealed_at: SystemTime,
        not_before: Option<SystemTime>,
    ) -> Self {
        SealInfo {
            key_id: key_id.into(),
            sender_key_id: None,
            envelope_id,
            sealed_at,
            not_before,
            claim: None,
        }
    }

    /// The same, with the sender key that signed it.
    #[must_use]
    pub fn with_sender_key_id(mut self, sender_key_id: impl Into<String>) -> Self {
        self.sender_key_id = Some(sender_key_id.into());
        self
    }

    /// The same, with the replay guard's claim on this delivery.
    #[must_use]
    pub fn with_claim(mut self, claim: ReplayClaim) -> Self {
        self.claim = Some(claim);
        self
    }
}

/// An opaque handle that settles one delivery of one message.
///
/// The provider that made it puts whatever it needs inside (a lock token, a receipt handle, a
/// link); only that provider can read it back. Cloning is cheap. A receipt outlives failed
/// settles, so the caller can try again when the error [is transient](QueueError::is_transient).
#[derive(Clone)]
pub struct Receipt {
    provider: &'static str,
    queue: QueueName,
    session_id: Option<SessionId>,
    data: Arc<dyn Any + Send + Sync>,
}

impl Receipt {
    /// Wraps provider data. `provider` is the provider's [name](crate::QueueProvider::name).
    pub fn new<T: Any + Send + Sync>(
        provider: &'static str,
        queue: QueueName,
        session_id: Option<SessionId>,
        data: T,
    ) -> Self {
        Receipt {
            provider,
            queue,
            session_id,
            data: Arc::new(data),
        }
    }

    /// The name of the provider that made this receipt.
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// The queue the message was received from.
    pub fn queue(&self) -> &QueueName {
        &self.queue
    }

    /// The session the message was received in, when it came through a session receiver.
    pub fn session_id(&self) -> Option<&SessionId> {
        self.session_id.as_ref()
    }

    /// The provider's data, or an [`InvalidInput`](crate::ErrorKind::InvalidInput) error when the
    /// receipt came from another provider.
    pub fn data<T: Any>(&self, provider: &'static str) -> Result<&T, QueueError> {
        if self.provider != provider {
            return Err(QueueError::invalid_input(format!(
                "a receipt from the {} provider cannot be settled by the {provider} provider",
                self.provider
            )));
        }
        self.data.downcast_ref::<T>().ok_or_else(|| {
            QueueError::invalid_input(format!(
                "the receipt was not made by this {provider} provider"
            ))
        })
    }
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receipt")
            .field("provider", &self.provider)
            .field("queue", &self.queue)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

/// A message received under a lock: settle it with its [`Receipt`].
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    /// The message as it was sent.
    pub message: Message,
    /// What the broker knows of this delivery.
    pub delivery: DeliveryInfo,
    /// Until when the lock is held (for a session message: the session's lock).
    pub locked_until: SystemTime,
    /// Settles this delivery.
    pub receipt: Receipt,
}

impl ReceivedMessage {
    /// The body.
    pub fn body(&self) -> &Bytes {
        self.message.body()
    }

    /// The message id.
    pub fn message_id(&self) -> &MessageId {
        self.message.message_id()
    }

    /// The session id.
    pub fn session_id(&self) -> Option<&SessionId> {
        self.message.session_id()
    }

    /// How many times the message has been delivered, this delivery included.
    pub fn delivery_count(&self) -> u32 {
        self.delivery.delivery_count
    }

    /// When the broker accepted the message.
    pub fn enqueued_at(&self) -> SystemTime {
        self.delivery.enqueued_at
    }
}

/// A message read without locking it: it cannot be settled.
#[derive(Debug, Clone)]
pub struct PeekedMessage {
    /// The message as it was sent.
    pub message: Message,
    /// What the broker knows of it.
    pub delivery: DeliveryInfo,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_refuse_other_providers() {
        let queue = QueueName::new("q").expect("valid");
        let receipt = Receipt::new("memory", queue, None, 7_u64);
        assert_eq!(receipt.data::<u64>("memory").ok(), Some(&7));
        assert!(receipt.data::<u64>("sqs").is_err());
        assert!(receipt.data::<u32>("memory").is_err());
    }

    #[test]
    fn bounded_reasons_fit_their_budget_and_say_they_were_cut() {
        let measure =
            |reason: &DeadLetterReason| 10 + reason.reason.len() + reason.description.len();
        let long = DeadLetterReason::new("rejected: stale", "é".repeat(1000));
        let bounded = long.bounded(200, measure).expect("fits");
        assert!(measure(&bounded) <= 200, "{}", measure(&bounded));
        assert_eq!(bounded.reason, "rejected: stale");
        assert!(bounded.description.ends_with(DeadLetterReason::TRUNCATED));
        assert!(bounded.description.len() > 100, "cut no more than needed");
        // What fits is left alone.
        let short = DeadLetterReason::new("r", "d");
        assert_eq!(short.bounded(200, measure), Some(short.clone()));
        // A budget smaller than the reason and the marker cuts the reason too; nothing fits
        // below 10.
        let cut = long.bounded(15, measure).expect("fits");
        assert!(
            cut.description.is_empty() && cut.reason.len() == 5,
            "{cut:?}"
        );
        assert_eq!(long.bounded(9, measure), None);
    }

    #[test]
    fn dead_letter_reasons_are_truncated_at_char_boundaries() {
        let reason = DeadLetterReason::new("é".repeat(200), "d");
        assert!(reason.reason.len() <= MAX_DEAD_LETTER_REASON_LEN);
        assert_eq!(reason.reason.chars().count(), 128);
    }
}
