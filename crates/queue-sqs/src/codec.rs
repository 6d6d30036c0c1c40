//! How a [`Message`] travels through SQS: a text body and at most ten message attributes.
//!
//! - The body goes as-is when it is text SQS accepts (UTF-8 without control characters other
//!   than tab, line feed and carriage return); anything else (binary bodies, sealed envelopes)
//!   goes base64-encoded, flagged in the metadata. SQS refuses empty bodies, so an empty body
//!   travels as `.` flagged `empty`.
//! - Application properties become `String` message attributes of the same name.
//! - queue-runtime's own fields (message id, correlation id, content type, body encoding, time
//!   to live) travel together in one attribute, [`META_ATTRIBUTE`], as compact JSON, so they
//!   cost one of SQS's ten attributes, not five.
//! - A dead-lettered copy carries [`DEAD_LETTER_ATTRIBUTE`] (reason and description).
//!
//! That leaves [`MAX_PROPERTIES`] attributes for the application.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use queue_core::raw::time::from_unix_millis;
use queue_core::{
    DEAD_LETTER_RESERVE, DeadLetterReason, DeliveryInfo, ErrorKind, Message, MessageId, Properties,
    QueueError, is_reserved_key,
};
use serde::{Deserialize, Serialize};

use crate::config::UnsessionedFifo;
use crate::queues::QueueInfo;

/// The attribute carrying queue-runtime's own fields.
pub const META_ATTRIBUTE: &str = "qr.meta";
/// The attribute carrying the dead-letter reason of a dead-lettered copy.
pub const DEAD_LETTER_ATTRIBUTE: &str = "qr.dead-letter";
/// SQS's limit of message attributes per message.
pub const MAX_SQS_ATTRIBUTES: usize = 10;
/// The application properties a message may carry through SQS: ten attributes less the
/// metadata attribute and the one kept free for a dead-letter reason.
pub const MAX_PROPERTIES: usize = MAX_SQS_ATTRIBUTES - 2;
/// The longest per-message delay SQS allows (`DelaySeconds`).
pub const MAX_DELAY: Duration = Duration::from_secs(900);

const STRING: &str = "String";
pub(crate) const EMPTY_BODY: &str = ".";

/// How the body travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Encoding {
    Base64,
    Empty,
}

/// queue-runtime's fields, as carried in [`META_ATTRIBUTE`].
#[derive(Debug, Serialize, Deserialize)]
struct Meta<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    corr: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    ct: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enc: Option<Encoding>,
    /// Time to live in milliseconds, counted from the broker's `SentTimestamp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl: Option<u64>,
    /// Set when the message group was chosen by the provider for a message without a session
    /// (see [`UnsessionedFifo`]): the receiver then sees no session id.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    ng: bool,
}

/// A dead-letter reason, as carried in [`DEAD_LETTER_ATTRIBUTE`].
#[derive(Debug, Serialize, Deserialize)]
struct DeadLetter<'a> {
    #[serde(borrow)]
    reason: Cow<'a, str>,
    #[serde(borrow, default)]
    description: Cow<'a, str>,
}

/// A message ready for `SendMessage` or one entry of `SendMessageBatch`.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) body: String,
    pub(crate) attributes: HashMap<String, MessageAttributeValue>,
    pub(crate) group_id: Option<String>,
    pub(crate) deduplication_id: Option<String>,
    pub(crate) delay_seconds: Option<i32>,
    /// The size SQS counts: body plus every attribute's name, type and value.
    pub(crate) size: usize,
}

/// Encodes `message` for `queue`, checking everything SQS would refuse first.
pub(crate) fn encode(
    message: &Message,
    queue: &QueueInfo,
    unsessioned: &UnsessionedFifo,
    now: SystemTime,
) -> Result<Outgoing, QueueError> {
    let properties = message.properties();
    if properties.len() > MAX_PROPERTIES {
        return Err(QueueError::invalid_input(format!(
            "SQS carries at most {MAX_SQS_ATTRIBUTES} message attributes, so a message may have at \
             most {MAX_PROPERTIES} properties (one attribute holds queue-runtime's metadata, one \
             is kept for a dead-letter reason); this one has {}",
            properties.len()
        )));
    }
    let (group_id, provider_group) = match (message.session_id(), queue.fifo, unsessioned) {
        (Some(session), _, _) => (Some(session.as_str().to_owned()), false),
        (None, false, _) => (None, false),
        (None, true, UnsessionedFifo::Reject) => {
            return Err(QueueError::invalid_input(format!(
                "queue {} is a FIFO queue: every message needs a session id (its message group)",
                queue.name
            )));
        }
        (None, true, UnsessionedFifo::GroupPerMessage) => {
            (Some(message.message_id().as_str().to_owned()), true)
        }
        (None, true, UnsessionedFifo::Group(group)) => (Some(group.clone()), true),
    };
    let deduplication_id = queue.fifo.then(|| deduplication_id(message));
    let (body, attributes) = body_and_attributes(message, provider_group)?;
    let delay_seconds = match message.scheduled_enqueue_time() {
        None => None,
        Some(at) => Some(delay_seconds(queue, at, now)?),
    };

    let size = message_size(&body, &attributes);
    let accepted = queue.max_message_bytes.saturating_sub(DEAD_LETTER_RESERVE);
    if size > accepted {
        return Err(QueueError::message_too_large(size, accepted));
    }
    Ok(Outgoing {
        body,
        attributes,
        group_id,
        deduplication_id,
        delay_seconds,
        size,
    })
}

/// The body and attributes SQS gets for `message` (`provider_group`: the FIFO message group was
/// chosen by the provider, not the message's session).
fn body_and_attributes(
    message: &Message,
    provider_group: bool,
) -> Result<(String, HashMap<String, MessageAttributeValue>), QueueError> {
    let properties = message.properties();
    let (body, encoding) = encode_body(message.body());
    let meta = Meta {
        id: Cow::Borrowed(message.message_id().as_str()),
        corr: message.correlation_id().map(Cow::Borrowed),
        ct: message.content_type().map(Cow::Borrowed),
        enc: encoding,
        ttl: message
            .time_to_live()
            .map(|ttl| u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
        ng: provider_group,
    };
    let mut attributes = HashMap::with_capacity(properties.len() + 1);
    attributes.insert(
        META_ATTRIBUTE.to_owned(),
        string_attribute(to_json(&meta)?)?,
    );
    for (key, value) in properties.iter() {
        check_attribute_name(key)?;
        attributes.insert(key.to_owned(), string_attribute(value.to_owned())?);
    }
    Ok((body, attributes))
}

/// The bytes `message` takes in a `SendMessageBatch` request, as SQS counts them against the
/// 1 MiB of a batch: its body and attributes as encoded (counted with the provider-chosen group
/// flag, the larger of the two encodings, so the count never falls short).
pub(crate) fn batch_bytes(message: &Message) -> usize {
    body_and_attributes(message, true).map_or_else(
        |_| message.approximate_size(),
        |(body, attributes)| message_size(&body, &attributes),
    )
}

/// The size SQS counts for a message against the queue's `MaximumMessageSize`: the body plus,
/// for every message attribute, its name, its data type and its value (AWS documents it so;
/// moto counts the body only, which is why this is unit-tested against the rule).
pub(crate) fn message_size(
    body: &str,
    attributes: &HashMap<String, MessageAttributeValue>,
) -> usize {
    body.len() + attributes_size(attributes)
}

/// The size SQS counts for a set of attributes.
pub(crate) fn attributes_size(attributes: &HashMap<String, MessageAttributeValue>) -> usize {
    attributes
        .iter()
        .map(|(name, value)| {
            name.len()
                + value.data_type().len()
                + value.string_value().map_or(0, str::len)
                + value.binary_value().map_or(0, |blob| blob.as_ref().len())
        })
        .sum()
}

fn encode_body(body: &Bytes) -> (String, Option<Encoding>) {
    if body.is_empty() {
        return (EMPTY_BODY.to_owned(), Some(Encoding::Empty));
    }
    match std::str::from_utf8(body) {
        Ok(text) if text.chars().all(sqs_accepts) => (text.to_owned(), None),
        _ => (BASE64.encode(body), Some(Encoding::Base64)),
    }
}

/// The characters SQS accepts in a body: XML's, that is tab, line feed, carriage return and
/// everything from space up except the non-characters U+FFFE and U+FFFF.
fn sqs_accepts(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// SQS's attribute-name rules beyond [`Properties`]' own: no `AWS.`/`Amazon.` prefix, no
/// period at either end, no two periods in a row.
fn check_attribute_name(key: &str) -> Result<(), QueueError> {
    let lower = key.to_ascii_lowercase();
    if lower.starts_with("aws.") || lower.starts_with("amazon.") {
        return Err(QueueError::invalid_input(format!(
            "property {key:?}: SQS reserves attribute names starting with \"AWS.\" or \"Amazon.\""
        )));
    }
    if key.starts_with('.') || key.ends_with('.') || key.contains("..") {
        return Err(QueueError::invalid_input(format!(
            "property {key:?}: SQS attribute names may not start or end with '.' or contain '..'"
        )));
    }
    Ok(())
}

fn string_attribute(value: String) -> Result<MessageAttributeValue, QueueError> {
    MessageAttributeValue::builder()
        .data_type(STRING)
        .string_value(value)
        .build()
        .map_err(|error| QueueError::invalid_input(format!("message attribute: {error}")))
}

fn to_json<T: Serialize>(value: &T) -> Result<String, QueueError> {
    serde_json::to_string(value).map_err(|error| {
        QueueError::new(ErrorKind::Provider, format!("encoding metadata: {error}"))
    })
}

/// The FIFO deduplication id: the caller's, or the message id, so a retried send of the same
/// message is dropped by SQS within its five-minute window while two equal bodies with
/// different ids both arrive. An id SQS would refuse (it allows no spaces) is replaced by its
/// SHA-256 in hex, which is as stable.
fn deduplication_id(message: &Message) -> String {
    let id = message
        .deduplication_id()
        .unwrap_or(message.message_id().as_str());
    if id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic()) {
        id.to_owned()
    } else {
        hex::encode(ring::digest::digest(&ring::digest::SHA256, id.as_bytes()))
    }
}

fn delay_seconds(queue: &QueueInfo, at: SystemTime, now: SystemTime) -> Result<i32, QueueError> {
    let delay = at.duration_since(now).unwrap_or_default();
    if queue.fifo {
        return Err(QueueError::unsupported(
            "sqs",
            "scheduling single messages on a FIFO queue (SQS allows only a queue-wide delay there)",
        ));
    }
    if delay > MAX_DELAY {
        return Err(QueueError::unsupported(
            "sqs",
            &format!(
                "scheduling a message {} s ahead: SQS delays a message by at most {} s",
                delay.as_secs(),
                MAX_DELAY.as_secs()
            ),
        ));
    }
    // Round up: never deliver before the scheduled time.
    Ok(whole_seconds_up(delay))
}

/// A received SQS message, decoded.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) message: Message,
    pub(crate) delivery: DeliveryInfo,
}

/// Decodes a received message. Never fails: a message whose metadata cannot be read (sent by
/// another producer, or altered in the queue) is delivered with its raw text as the body and
/// SQS's own message id, so nothing is lost; the secure client then refuses it if the queue
/// expects sealed messages.
pub(crate) fn decode(
    raw: &aws_sdk_sqs::types::Message,
    from_dead_letter_queue: bool,
    now: SystemTime,
) -> Incoming {
    let system = |name: MessageSystemAttributeName| {
        raw.attributes()
            .and_then(|attributes| attributes.get(&name))
            .map(String::as_str)
    };
    let enqueued_at = system(MessageSystemAttributeName::SentTimestamp)
        .and_then(|millis| millis.parse::<u64>().ok())
        .map_or(now, from_unix_millis);
    let delivery_count = system(MessageSystemAttributeName::ApproximateReceiveCount)
        .and_then(|count| count.parse::<u32>().ok())
        .unwrap_or(1);
    let group_id = system(MessageSystemAttributeName::MessageGroupId);
    let sqs_id = raw.message_id().unwrap_or_default();
    let body_text = raw.body().unwrap_or_default();
    let attributes = raw.message_attributes();
    let attribute = |name: &str| {
        attributes
            .and_then(|attributes| attributes.get(name))
            .and_then(MessageAttributeValue::string_value)
    };

    let meta = attribute(META_ATTRIBUTE).and_then(|text| {
        serde_json::from_str::<Meta<'_>>(text)
            .map_err(|_| {
                tracing::warn!(
                    sqs_message_id = sqs_id,
                    "unreadable queue-runtime metadata; delivering the raw body"
                )
            })
            .ok()
    });
    let message = meta
        .as_ref()
        .and_then(|meta| build_message(meta, body_text, group_id, attributes, sqs_id))
        .unwrap_or_else(|| raw_message(body_text, group_id, attributes, sqs_id));

    let expires_at = meta
        .as_ref()
        .and_then(|meta| meta.ttl)
        .map(|ttl| enqueued_at + Duration::from_millis(ttl));
    let dead_letter =
        from_dead_letter_queue.then(|| dead_letter_reason(attribute(DEAD_LETTER_ATTRIBUTE)));
    Incoming {
        message,
        delivery: DeliveryInfo {
            delivery_count,
            enqueued_at,
            sequence_number: None,
            expires_at,
            dead_letter,
            seal: None,
        },
    }
}

fn build_message(
    meta: &Meta<'_>,
    body_text: &str,
    group_id: Option<&str>,
    attributes: Option<&HashMap<String, MessageAttributeValue>>,
    sqs_id: &str,
) -> Option<Message> {
    let body = match meta.enc {
        None => Bytes::copy_from_slice(body_text.as_bytes()),
        Some(Encoding::Empty) => Bytes::new(),
        Some(Encoding::Base64) => match BASE64.decode(body_text) {
            Ok(body) => Bytes::from(body),
            Err(_) => {
                tracing::warn!(
                    sqs_message_id = sqs_id,
                    "body flagged base64 does not decode; delivering the raw body"
                );
                return None;
            }
        },
    };
    let mut builder = Message::builder(body)
        .message_id(&*meta.id)
        .properties(properties(attributes, sqs_id));
    if let Some(group_id) = group_id.filter(|_| !meta.ng) {
        builder = builder.session_id(group_id);
    }
    if let Some(correlation_id) = &meta.corr {
        builder = builder.correlation_id(correlation_id.as_ref());
    }
    if let Some(content_type) = &meta.ct {
        builder = builder.content_type(content_type.as_ref());
    }
    if let Some(ttl) = meta.ttl.filter(|ttl| *ttl > 0) {
        builder = builder.time_to_live(Duration::from_millis(ttl));
    }
    builder
        .build()
        .map_err(|error| {
            tracing::warn!(sqs_message_id = sqs_id, %error, "metadata out of range; delivering the raw body");
        })
        .ok()
}

/// A message as SQS holds it, for bodies without (readable) metadata.
fn raw_message(
    body_text: &str,
    group_id: Option<&str>,
    attributes: Option<&HashMap<String, MessageAttributeValue>>,
    sqs_id: &str,
) -> Message {
    let body = Bytes::copy_from_slice(body_text.as_bytes());
    let mut builder = Message::builder(body.clone()).properties(properties(attributes, sqs_id));
    if let Ok(id) = MessageId::new(sqs_id) {
        builder = builder.message_id(id.as_str());
    }
    if let Some(group_id) = group_id {
        builder = builder.session_id(group_id);
    }
    // Every part was checked above; a failure would be a broker sending what it cannot hold,
    // and the body still goes through.
    builder.build().unwrap_or_else(|_| Message::new(body))
}

/// The application's properties: every `String` or `Number` attribute outside queue-runtime's
/// own. Binary attributes (another producer's) and names the library cannot carry are left out,
/// logged by name.
fn properties(
    attributes: Option<&HashMap<String, MessageAttributeValue>>,
    sqs_id: &str,
) -> Properties {
    let mut properties = Properties::new();
    for (name, value) in attributes.into_iter().flatten() {
        if is_reserved_key(name) {
            continue;
        }
        let kept = value
            .string_value()
            .filter(|_| !value.data_type().starts_with("Binary"))
            .is_some_and(|text| properties.insert(name.clone(), text).is_ok());
        if !kept {
            tracing::debug!(sqs_message_id = sqs_id, attribute = %name, "message attribute not carried as a property");
        }
    }
    properties
}

/// The reason of a message read from a dead-letter queue: the one queue-runtime wrote, or, when
/// there is none, the redrive policy's: SQS moves a message to a dead-letter queue only after
/// its `maxReceiveCount`.
fn dead_letter_reason(attribute: Option<&str>) -> DeadLetterReason {
    match attribute.and_then(|text| serde_json::from_str::<DeadLetter<'_>>(text).ok()) {
        Some(dead) => DeadLetterReason::new(dead.reason, dead.description),
        None => DeadLetterReason::new(
            DeadLetterReason::MAX_DELIVERY_COUNT_EXCEEDED,
            "moved by the queue's redrive policy after maxReceiveCount receives",
        ),
    }
}

/// The attributes of a dead-lettered copy: the original's, plus the reason, cut to fit what
/// is left of `max_message_bytes` after the body and the original attributes (every message
/// this provider sends keeps [`DEAD_LETTER_RESERVE`] free for it, so a reason always fits; a
/// long description is cut, marked as such).
pub(crate) fn dead_letter_attributes(
    original: Option<&HashMap<String, MessageAttributeValue>>,
    body: &str,
    reason: &DeadLetterReason,
    sqs_id: &str,
    max_message_bytes: usize,
) -> Result<HashMap<String, MessageAttributeValue>, QueueError> {
    let mut attributes = original.cloned().unwrap_or_default();
    attributes.remove(DEAD_LETTER_ATTRIBUTE);
    if attributes.len() >= MAX_SQS_ATTRIBUTES {
        // Another producer's message with ten attributes: the copy cannot carry the reason, but
        // it must still move.
        tracing::warn!(sqs_message_id = sqs_id, reason = %reason.reason, "no attribute left for the dead-letter reason");
        return Ok(attributes);
    }
    let room = max_message_bytes.saturating_sub(message_size(body, &attributes));
    match reason.bounded(room, dead_letter_attribute_size) {
        Some(bounded) => {
            attributes.insert(
                DEAD_LETTER_ATTRIBUTE.to_owned(),
                string_attribute(dead_letter_json(&bounded)?)?,
            );
        }
        None => {
            // Another producer's message filling the queue's limit: it moves without a reason.
            tracing::warn!(sqs_message_id = sqs_id, reason = %reason.reason, "no room left in the message for the dead-letter reason");
        }
    }
    Ok(attributes)
}

fn dead_letter_json(reason: &DeadLetterReason) -> Result<String, QueueError> {
    to_json(&DeadLetter {
        reason: Cow::Borrowed(&reason.reason),
        description: Cow::Borrowed(&reason.description),
    })
}

/// What [`DEAD_LETTER_ATTRIBUTE`] adds to a message's size, as SQS counts it.
fn dead_letter_attribute_size(reason: &DeadLetterReason) -> usize {
    let value = dead_letter_json(reason).map_or(usize::MAX, |json| json.len());
    DEAD_LETTER_ATTRIBUTE.len() + "String".len() + value
}

/// Whether the message's time to live has passed (on the broker's clock at `now`).
pub(crate) fn is_expired(delivery: &DeliveryInfo, now: SystemTime) -> bool {
    delivery.expires_at.is_some_and(|at| at <= now)
}

/// `duration` in whole seconds, rounded up (SQS's delays, visibility timeouts and long polls
/// are whole seconds; rounding down would cut a wait or a delay short).
pub(crate) fn whole_seconds_up(duration: Duration) -> i32 {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(seconds).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::types::Message as SqsMessage;

    /// A queue whose `MaximumMessageSize` is 4 KiB: it accepts 3 KiB, keeping 1 KiB for a
    /// dead-letter reason.
    const TEST_MAX: usize = 4096;

    fn queue(fifo: bool) -> QueueInfo {
        QueueInfo::for_tests("q", fifo, TEST_MAX)
    }

    fn receive(outgoing: &Outgoing) -> SqsMessage {
        SqsMessage::builder()
            .message_id("sqs-id")
            .body(outgoing.body.clone())
            .set_message_attributes(Some(outgoing.attributes.clone()))
            .set_attributes({
                let mut system = HashMap::new();
                system.insert(
                    MessageSystemAttributeName::SentTimestamp,
                    "1700000000000".to_owned(),
                );
                system.insert(
                    MessageSystemAttributeName::ApproximateReceiveCount,
                    "3".to_owned(),
                );
                if let Some(group) = &outgoing.group_id {
                    system.insert(MessageSystemAttributeName::MessageGroupId, group.clone());
                }
                Some(system)
            })
            .build()
    }

    #[test]
    fn text_binary_and_empty_bodies_round_trip() {
        let now = SystemTime::now();
        for body in [
            Bytes::from_static(b"{\"plain\":\"text\"}"),
            Bytes::from((0..=255).collect::<Vec<u8>>()),
            Bytes::from_static(b"nul \0 inside"),
            Bytes::new(),
        ] {
            let message = Message::new(body.clone());
            let outgoing =
                encode(&message, &queue(false), &UnsessionedFifo::Reject, now).expect("encodes");
            let incoming = decode(&receive(&outgoing), false, now);
            assert_eq!(incoming.message.body(), &body);
            assert_eq!(incoming.message.message_id(), message.message_id());
        }
        let text = encode(
            &Message::new("plain"),
            &queue(false),
            &UnsessionedFifo::Reject,
            now,
        )
        .expect("encodes");
        assert_eq!(text.body, "plain", "text travels as-is");
    }

    #[test]
    fn every_field_round_trips_and_the_broker_fills_delivery() {
        let now = SystemTime::now();
        let message = Message::builder("body")
            .message_id("order 42")
            .session_id("octo/repo#1")
            .correlation_id("corr")
            .content_type("application/json")
            .property("tenant", "contoso")
            .time_to_live(Duration::from_secs(60))
            .build()
            .expect("valid");
        let outgoing =
            encode(&message, &queue(true), &UnsessionedFifo::Reject, now).expect("encodes");
        assert_eq!(outgoing.group_id.as_deref(), Some("octo/repo#1"));
        // The id has a space, which SQS refuses in a deduplication id: hashed, stably.
        let dedup = outgoing.deduplication_id.clone().expect("fifo");
        assert_eq!(dedup.len(), 64);
        assert_eq!(
            encode(&message, &queue(true), &UnsessionedFifo::Reject, now)
                .expect("encodes")
                .deduplication_id,
            Some(dedup)
        );
        let incoming = decode(&receive(&outgoing), false, now);
        assert_eq!(incoming.message, message);
        assert_eq!(incoming.delivery.delivery_count, 3);
        assert_eq!(
            incoming.delivery.enqueued_at,
            from_unix_millis(1_700_000_000_000)
        );
        assert_eq!(
            incoming.delivery.expires_at,
            Some(from_unix_millis(1_700_000_060_000))
        );
        assert!(incoming.delivery.dead_letter.is_none());
    }

    #[test]
    fn limits_are_checked_before_sending() {
        let now = SystemTime::now();
        let accepted = TEST_MAX - DEAD_LETTER_RESERVE;
        let big = Message::new(vec![b'x'; accepted]);
        let error =
            encode(&big, &queue(false), &UnsessionedFifo::Reject, now).expect_err("too large");
        let limit = error.size_limit().expect("size and limit");
        assert_eq!(
            limit.max, accepted,
            "the limit less the dead-letter reserve"
        );
        assert!(limit.size > accepted);

        let mut builder = Message::builder("many");
        for index in 0..=MAX_PROPERTIES {
            builder = builder.property(format!("p{index}"), "v");
        }
        let error = encode(
            &builder.build().expect("valid"),
            &queue(false),
            &UnsessionedFifo::Reject,
            now,
        )
        .expect_err("too many properties");
        assert_eq!(error.kind(), ErrorKind::InvalidInput);

        for bad in ["AWS.trace", "amazon.x", "a..b", "trailing."] {
            let message = Message::builder("x")
                .property(bad, "v")
                .build()
                .expect("valid");
            let error =
                encode(&message, &queue(false), &UnsessionedFifo::Reject, now).expect_err(bad);
            assert_eq!(error.kind(), ErrorKind::InvalidInput, "{bad}");
        }

        let no_group = encode(
            &Message::new("x"),
            &queue(true),
            &UnsessionedFifo::Reject,
            now,
        )
        .expect_err("fifo");
        let own = encode(
            &Message::new("x"),
            &queue(true),
            &UnsessionedFifo::GroupPerMessage,
            now,
        )
        .expect("own group");
        assert!(own.group_id.is_some());
        assert_eq!(
            decode(&receive(&own), false, now).message.session_id(),
            None,
            "the group is not a session"
        );
        assert_eq!(no_group.kind(), ErrorKind::InvalidInput);

        let late = Message::builder("x")
            .scheduled_enqueue_time(now + Duration::from_secs(901))
            .build()
            .expect("valid");
        assert_eq!(
            encode(&late, &queue(false), &UnsessionedFifo::Reject, now)
                .expect_err("too late")
                .kind(),
            ErrorKind::Unsupported
        );
        let soon = Message::builder("x")
            .scheduled_enqueue_time(now + Duration::from_millis(4_200))
            .build()
            .expect("valid");
        assert_eq!(
            encode(&soon, &queue(false), &UnsessionedFifo::Reject, now)
                .expect("ok")
                .delay_seconds,
            Some(5)
        );
    }

    #[test]
    fn foreign_and_damaged_messages_are_delivered_raw() {
        let now = SystemTime::now();
        let foreign = SqsMessage::builder()
            .message_id("abc")
            .body("from another producer")
            .message_attributes(
                "source",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("billing")
                    .build()
                    .expect("valid"),
            )
            .build();
        let incoming = decode(&foreign, false, now);
        assert_eq!(incoming.message.body().as_ref(), b"from another producer");
        assert_eq!(incoming.message.message_id().as_str(), "abc");
        assert_eq!(incoming.message.properties().get("source"), Some("billing"));

        let mut outgoing = encode(
            &Message::new(vec![0_u8, 1, 2]),
            &queue(false),
            &UnsessionedFifo::Reject,
            now,
        )
        .expect("ok");
        outgoing.body = "***not base64***".to_owned();
        let incoming = decode(&receive(&outgoing), false, now);
        assert_eq!(incoming.message.body().as_ref(), b"***not base64***");
    }

    #[test]
    fn dead_letter_reasons_come_from_the_attribute_or_the_redrive_policy() {
        let now = SystemTime::now();
        let outgoing = encode(
            &Message::new("x"),
            &queue(false),
            &UnsessionedFifo::Reject,
            now,
        )
        .expect("ok");
        let reason = DeadLetterReason::new("ValidationFailed", "amount < 0");
        let attributes = dead_letter_attributes(
            Some(&outgoing.attributes),
            &outgoing.body,
            &reason,
            "id",
            TEST_MAX,
        )
        .expect("ok");
        let copy = Outgoing {
            attributes,
            ..outgoing.clone()
        };
        let incoming = decode(&receive(&copy), true, now);
        assert_eq!(incoming.delivery.dead_letter, Some(reason));
        let redriven = decode(&receive(&outgoing), true, now);
        assert_eq!(
            redriven.delivery.dead_letter.map(|r| r.reason),
            Some(DeadLetterReason::MAX_DELIVERY_COUNT_EXCEEDED.to_owned())
        );
    }

    /// AWS: "the message size includes the message body and all message attributes (name,
    /// data type and value)". A message of 100 body bytes with one attribute `ab` of type
    /// `String` and value `xyz` is 100 + 2 + 6 + 3 bytes.
    #[test]
    fn sizes_are_counted_the_way_aws_documents_them() {
        let mut attributes = HashMap::new();
        attributes.insert(
            "ab".to_owned(),
            string_attribute("xyz".to_owned()).expect("ok"),
        );
        assert_eq!(message_size(&"b".repeat(100), &attributes), 111);
        let binary = MessageAttributeValue::builder()
            .data_type("Binary")
            .binary_value(aws_sdk_sqs::primitives::Blob::new(vec![0_u8; 7]))
            .build()
            .expect("valid");
        attributes.insert("c".to_owned(), binary);
        assert_eq!(message_size("", &attributes), 11 + 1 + 6 + 7);
    }

    /// The largest message the provider accepts can still be dead-lettered: its copy, with
    /// the reason and a description cut to fit (marked), stays within the queue's limit.
    #[test]
    fn the_largest_accepted_message_can_be_dead_lettered() {
        let now = SystemTime::now();
        let probe = Message::builder(vec![b'x'; TEST_MAX])
            .property("event", "push")
            .build()
            .expect("valid");
        let over = encode(&probe, &queue(false), &UnsessionedFifo::Reject, now)
            .expect_err("too large")
            .size_limit()
            .expect("size and limit");
        let largest = Message::builder(vec![b'x'; TEST_MAX - (over.size - over.max)])
            .property("event", "push")
            .build()
            .expect("valid");
        let outgoing =
            encode(&largest, &queue(false), &UnsessionedFifo::Reject, now).expect("accepted");
        assert_eq!(
            outgoing.size,
            TEST_MAX - DEAD_LETTER_RESERVE,
            "the largest accepted"
        );
        let reason = DeadLetterReason::new(
            "r".repeat(queue_core::MAX_DEAD_LETTER_REASON_LEN),
            "\"quoted\" and \u{1}".repeat(1000),
        );
        let attributes = dead_letter_attributes(
            Some(&outgoing.attributes),
            &outgoing.body,
            &reason,
            "id",
            TEST_MAX,
        )
        .expect("ok");
        assert!(message_size(&outgoing.body, &attributes) <= TEST_MAX);
        let copy = Outgoing {
            attributes,
            ..outgoing.clone()
        };
        let stored = decode(&receive(&copy), true, now)
            .delivery
            .dead_letter
            .expect("the reason travels");
        assert_eq!(stored.reason, reason.reason, "the reason is whole");
        assert!(stored.description.ends_with(DeadLetterReason::TRUNCATED));
        assert_eq!(
            decode(&receive(&copy), true, now).message.body(),
            largest.body()
        );
    }
}
