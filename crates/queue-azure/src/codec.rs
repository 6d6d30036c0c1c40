//! Messages to and from Service Bus's AMQP form. Every field travels in its native AMQP place
//! (data section, message id, group id, correlation id, content type, ttl, application
//! properties); only an explicit deduplication id needs a property of queue-runtime's own.

use std::time::{Duration, SystemTime};

use azservicebus::ServiceBusMessage;
use bytes::Bytes;
use fe2o3_amqp_types::messaging::annotations::AnnotationKey;
use fe2o3_amqp_types::messaging::{
    ApplicationProperties, Body, Message as AmqpMessage, MessageAnnotations,
    MessageId as AmqpMessageId,
};
use fe2o3_amqp_types::primitives::{OrderedMap, SimpleValue, Value};
use queue_core::raw::time::{from_unix_millis, to_unix_millis};
use queue_core::{DeadLetterReason, DeliveryInfo, Message, MessageId, Properties, QueueError};
use time::OffsetDateTime;

/// The application property carrying the queue-runtime message id when the Service Bus
/// `MessageId` holds an explicit deduplication id instead (Service Bus deduplicates by
/// `MessageId`).
pub const MESSAGE_ID_PROPERTY: &str = "qr.message-id";

/// The application properties Service Bus itself sets on dead-lettered messages.
const DEAD_LETTER_REASON: &str = "DeadLetterReason";
const DEAD_LETTER_DESCRIPTION: &str = "DeadLetterErrorDescription";

const ENQUEUED_TIME: &str = "x-opt-enqueued-time";
const SEQUENCE_NUMBER: &str = "x-opt-sequence-number";
const LOCKED_UNTIL: &str = "x-opt-locked-until";

/// The longest time to live the AMQP header carries (`u32` milliseconds, about 49.7 days).
/// Longer ones are sent as this: Service Bus caps every message at its queue's default time to
/// live anyway.
pub(crate) const MAX_TIME_TO_LIVE: Duration = Duration::from_millis(u32::MAX as u64);

/// A message ready for a sender link, and when it is due if scheduled.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) message: ServiceBusMessage,
    pub(crate) scheduled_at: Option<OffsetDateTime>,
}

/// Builds the Service Bus message for `message`.
pub(crate) fn encode(message: &Message) -> Result<Outgoing, QueueError> {
    let mut outgoing = ServiceBusMessage::new(message.body().to_vec());
    let mut properties: OrderedMap<String, SimpleValue> = message
        .properties()
        .iter()
        .map(|(key, value)| (key.to_owned(), SimpleValue::String(value.to_owned())))
        .collect();
    let broker_id = match message.deduplication_id() {
        Some(dedup) if dedup != message.message_id().as_str() => {
            properties.insert(
                MESSAGE_ID_PROPERTY.to_owned(),
                SimpleValue::String(message.message_id().as_str().to_owned()),
            );
            dedup
        }
        _ => message.message_id().as_str(),
    };
    outgoing
        .set_message_id(broker_id.to_owned())
        .map_err(|error| QueueError::invalid_input(format!("message id refused: {error}")))?;
    if let Some(session) = message.session_id() {
        outgoing
            .set_session_id(session.as_str().to_owned())
            .map_err(|error| QueueError::invalid_input(format!("session id refused: {error}")))?;
    }
    outgoing.set_correlation_id(message.correlation_id().map(str::to_owned));
    outgoing.set_content_type(message.content_type().map(str::to_owned));
    if let Some(ttl) = message.time_to_live() {
        outgoing
            .set_time_to_live(ttl.min(MAX_TIME_TO_LIVE))
            .map_err(|error| QueueError::invalid_input(format!("time to live refused: {error}")))?;
    }
    if !properties.is_empty() {
        *outgoing.application_properties_mut() = Some(ApplicationProperties(properties));
    }
    Ok(Outgoing {
        message: outgoing,
        scheduled_at: message.scheduled_enqueue_time().map(offset_date_time),
    })
}

/// A message as delivered (or peeked): what the application sent, and what the broker knows.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) message: Message,
    pub(crate) delivery: DeliveryInfo,
    /// Until when the broker holds the message locked, for received messages.
    pub(crate) locked_until: Option<SystemTime>,
    /// What the body is, when queue-runtime cannot read it (the message then has an empty body:
    /// a receiver dead-letters it, a peek shows it empty).
    pub(crate) unreadable_body: Option<&'static str>,
}

/// Reads a delivered message. Fields another producer set in ways queue-runtime cannot carry
/// (non-string property values it cannot print, ids it would refuse) are left out and logged
/// by name; a body that is neither data sections nor a string or binary value is flagged in
/// [`Incoming::unreadable_body`].
pub(crate) fn decode(raw: &AmqpMessage<Body<Value>>, now: SystemTime) -> Incoming {
    let (body, unreadable_body) = match body_bytes(&raw.body) {
        Ok(body) => (body, None),
        Err(what) => (Bytes::new(), Some(what)),
    };
    let annotations = raw.message_annotations.as_ref();
    let amqp_properties = raw.properties.as_ref();
    let broker_id = amqp_properties
        .and_then(|p| p.message_id.as_ref())
        .map(message_id_text);
    let application = raw.application_properties.as_ref();
    let own_id = application
        .and_then(|p| p.0.get(MESSAGE_ID_PROPERTY))
        .and_then(simple_text);
    let (message_id, deduplication_id) = match own_id {
        Some(own) => (Some(own), broker_id.clone()),
        None => (broker_id.clone(), None),
    };

    let mut properties = Properties::new();
    let mut dead_letter_reason = None;
    let mut dead_letter_description = None;
    for (key, value) in application.into_iter().flat_map(|p| p.0.iter()) {
        match key.as_str() {
            DEAD_LETTER_REASON => dead_letter_reason = simple_text(value),
            DEAD_LETTER_DESCRIPTION => dead_letter_description = simple_text(value),
            _ if queue_core::is_reserved_key(key) => {}
            _ => {
                let kept = simple_text(value)
                    .is_some_and(|text| properties.insert(key.clone(), text).is_ok());
                if !kept {
                    tracing::debug!(
                        service_bus_message_id = broker_id.as_deref().unwrap_or_default(),
                        property = %key,
                        "application property not carried"
                    );
                }
            }
        }
    }

    let time_to_live = raw
        .header
        .as_ref()
        .and_then(|header| header.ttl)
        .map(|ttl| Duration::from_millis(u64::from(ttl)));
    let basic = || {
        let builder = Message::builder(body.clone()).properties(properties.clone());
        match message_id
            .as_deref()
            .filter(|id| MessageId::new(*id).is_ok())
        {
            Some(id) => builder.message_id(id),
            None => builder,
        }
    };
    let full = {
        let mut builder = basic();
        if let Some(session) = amqp_properties.and_then(|p| p.group_id.as_deref()) {
            builder = builder.session_id(session);
        }
        if let Some(correlation) = amqp_properties.and_then(|p| p.correlation_id.as_ref()) {
            builder = builder.correlation_id(message_id_text(correlation));
        }
        if let Some(content_type) = amqp_properties.and_then(|p| p.content_type.as_ref()) {
            builder = builder.content_type(content_type.as_str());
        }
        if let Some(ttl) = time_to_live {
            builder = builder.time_to_live(ttl);
        }
        if let Some(dedup) = deduplication_id {
            builder = builder.deduplication_id(dedup);
        }
        builder.build()
    };
    let message = full.unwrap_or_else(|error| {
        // Another producer's header that queue-runtime would refuse (an over-long or
        // unprintable session or correlation id): the body and properties still go through.
        tracing::warn!(
            service_bus_message_id = broker_id.as_deref().unwrap_or_default(),
            %error,
            "message headers not carried"
        );
        basic()
            .build()
            .unwrap_or_else(|_| Message::new(body.clone()))
    });

    let enqueued_at = annotation_time(annotations, ENQUEUED_TIME).unwrap_or(now);
    let expires_at = amqp_properties
        .and_then(|p| p.absolute_expiry_time.as_ref())
        .map(|t| from_unix_millis(u64::try_from(t.milliseconds()).unwrap_or(0)))
        .or_else(|| time_to_live.and_then(|ttl| enqueued_at.checked_add(ttl)));
    let sequence_number = annotations
        .and_then(|a| a.get(&SEQUENCE_NUMBER as &dyn AnnotationKey))
        .and_then(|value| match value {
            Value::Long(n) => u64::try_from(*n).ok(),
            Value::Ulong(n) => Some(*n),
            _ => None,
        });
    let dead_letter =
        (dead_letter_reason.is_some() || dead_letter_description.is_some()).then(|| {
            DeadLetterReason::new(
                dead_letter_reason.unwrap_or_default(),
                dead_letter_description.unwrap_or_default(),
            )
        });
    let delivery_count = raw
        .header
        .as_ref()
        .map_or(1, |header| header.delivery_count.saturating_add(1));
    Incoming {
        message,
        delivery: DeliveryInfo {
            delivery_count,
            enqueued_at,
            sequence_number,
            expires_at,
            dead_letter,
            seal: None,
        },
        locked_until: annotation_time(annotations, LOCKED_UNTIL),
        unreadable_body,
    }
}

/// The body's bytes, or what the body is when it is none of the kinds queue-runtime reads.
fn body_bytes(body: &Body<Value>) -> Result<Bytes, &'static str> {
    match body {
        Body::Data(sections) => match sections.as_slice() {
            [single] => Ok(Bytes::copy_from_slice(&single.0)),
            many => Ok(Bytes::from(
                many.iter()
                    .flat_map(|section| section.0.iter().copied())
                    .collect::<Vec<u8>>(),
            )),
        },
        Body::Value(value) => match &value.0 {
            Value::String(text) => Ok(Bytes::copy_from_slice(text.as_bytes())),
            Value::Binary(bytes) => Ok(Bytes::copy_from_slice(bytes)),
            Value::Null => Ok(Bytes::new()),
            _ => Err("an AMQP value that is neither text nor binary"),
        },
        Body::Sequence(_) => Err("AMQP sequence sections"),
        Body::Empty => Ok(Bytes::new()),
    }
}

fn message_id_text(id: &AmqpMessageId) -> String {
    match id {
        AmqpMessageId::String(text) => text.clone(),
        AmqpMessageId::Uuid(uuid) => uuid_text(uuid.as_inner()),
        AmqpMessageId::Ulong(n) => n.to_string(),
        AmqpMessageId::Binary(bytes) => hex::encode(bytes),
    }
}

fn uuid_text(bytes: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*bytes).hyphenated().to_string()
}

/// A property value as text, for the kinds that print without loss.
fn simple_text(value: &SimpleValue) -> Option<String> {
    Some(match value {
        SimpleValue::String(text) => text.clone(),
        SimpleValue::Symbol(symbol) => symbol.as_str().to_owned(),
        SimpleValue::Bool(b) => b.to_string(),
        SimpleValue::Ubyte(n) => n.to_string(),
        SimpleValue::Ushort(n) => n.to_string(),
        SimpleValue::Uint(n) => n.to_string(),
        SimpleValue::Ulong(n) => n.to_string(),
        SimpleValue::Byte(n) => n.to_string(),
        SimpleValue::Short(n) => n.to_string(),
        SimpleValue::Int(n) => n.to_string(),
        SimpleValue::Long(n) => n.to_string(),
        SimpleValue::Float(n) => n.to_string(),
        SimpleValue::Double(n) => n.to_string(),
        SimpleValue::Char(c) => c.to_string(),
        SimpleValue::Uuid(uuid) => uuid_text(uuid.as_inner()),
        SimpleValue::Timestamp(t) => t.milliseconds().to_string(),
        _ => return None,
    })
}

fn annotation_time(annotations: Option<&MessageAnnotations>, key: &str) -> Option<SystemTime> {
    match annotations?.get(&key as &dyn AnnotationKey)? {
        Value::Timestamp(t) => Some(from_unix_millis(u64::try_from(t.milliseconds()).ok()?)),
        _ => None,
    }
}

/// `SystemTime` as the SDK takes it (millisecond precision, as Service Bus keeps it).
pub(crate) fn offset_date_time(time: SystemTime) -> OffsetDateTime {
    let millis = i128::from(to_unix_millis(time));
    OffsetDateTime::from_unix_timestamp_nanos(millis * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The SDK's `OffsetDateTime` as `SystemTime`.
pub(crate) fn system_time(time: OffsetDateTime) -> SystemTime {
    let millis = time.unix_timestamp_nanos() / 1_000_000;
    from_unix_millis(u64::try_from(millis).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::messaging::{AmqpValue, Batch, Data, Header, Properties as AmqpProps};
    use fe2o3_amqp_types::primitives::{Binary, Symbol, Timestamp, Uuid};

    /// What the broker would deliver for `sent`: the same sections, plus the annotations it adds.
    fn delivered(sent: &ServiceBusMessage, delivery_count: u32) -> AmqpMessage<Body<Value>> {
        let raw = sent.raw_amqp_message();
        let mut header = raw.header.clone().unwrap_or_default();
        header.delivery_count = delivery_count;
        let annotations = MessageAnnotations::builder()
            .insert(
                Symbol::from(ENQUEUED_TIME),
                Value::Timestamp(Timestamp::from_milliseconds(1_700_000_000_000)),
            )
            .insert(Symbol::from(SEQUENCE_NUMBER), Value::Long(42))
            .insert(
                Symbol::from(LOCKED_UNTIL),
                Value::Timestamp(Timestamp::from_milliseconds(1_700_000_030_000)),
            )
            .build();
        AmqpMessage {
            header: Some(header),
            delivery_annotations: None,
            message_annotations: Some(annotations),
            properties: raw.properties.clone(),
            application_properties: raw.application_properties.clone(),
            body: Body::Data(Batch::new(vec![raw.body.clone()])),
            footer: None,
        }
    }

    /// `incoming`, after checking its body was readable.
    fn readable(incoming: Incoming) -> Incoming {
        assert_eq!(incoming.unreadable_body, None);
        incoming
    }

    fn round_trip(message: &Message) -> Incoming {
        let outgoing = encode(message).expect("encodes");
        readable(decode(
            &delivered(&outgoing.message, 2),
            SystemTime::UNIX_EPOCH,
        ))
    }

    #[test]
    fn every_field_round_trips() {
        let message = Message::builder(Bytes::from_static(&[0, 159, 146, 150, 255]))
            .message_id("order-7")
            .session_id("repo/pull/42")
            .correlation_id("corr-1")
            .content_type("application/octet-stream")
            .property("tenant", "acme")
            .property("attempt", "3")
            .time_to_live(Duration::from_secs(90))
            .build()
            .expect("valid");
        let incoming = round_trip(&message);
        assert_eq!(incoming.message, message);
        assert_eq!(incoming.delivery.delivery_count, 3);
        assert_eq!(incoming.delivery.sequence_number, Some(42));
        let enqueued = from_unix_millis(1_700_000_000_000);
        assert_eq!(incoming.delivery.enqueued_at, enqueued);
        assert_eq!(
            incoming.delivery.expires_at,
            Some(enqueued + Duration::from_secs(90))
        );
        assert_eq!(
            incoming.locked_until,
            Some(from_unix_millis(1_700_000_030_000))
        );
        assert_eq!(incoming.delivery.dead_letter, None);
    }

    #[test]
    fn fields_travel_in_their_native_amqp_places() {
        let message = Message::builder("hi")
            .message_id("m-1")
            .session_id("s-1")
            .correlation_id("c-1")
            .content_type("text/plain")
            .property("k", "v")
            .time_to_live(Duration::from_secs(5))
            .build()
            .expect("valid");
        let outgoing = encode(&message).expect("encodes");
        let raw = outgoing.message.raw_amqp_message();
        let props = raw.properties.as_ref().expect("properties");
        assert_eq!(props.message_id, Some(AmqpMessageId::String("m-1".into())));
        assert_eq!(props.group_id.as_deref(), Some("s-1"));
        assert_eq!(
            props.correlation_id,
            Some(AmqpMessageId::String("c-1".into()))
        );
        assert_eq!(props.content_type, Some(Symbol::from("text/plain")));
        assert_eq!(raw.header.as_ref().and_then(|h| h.ttl), Some(5_000));
        let application = raw.application_properties.as_ref().expect("properties");
        assert_eq!(
            application.0.get("k"),
            Some(&SimpleValue::String("v".into()))
        );
        assert_eq!(application.0.len(), 1, "no property of queue-runtime's own");
        assert_eq!(&*raw.body.0, b"hi");
        assert!(outgoing.scheduled_at.is_none());
    }

    #[test]
    fn an_explicit_deduplication_id_is_the_broker_message_id() {
        let message = Message::builder("x")
            .message_id("app-id")
            .deduplication_id("dedup-key")
            .build()
            .expect("valid");
        let outgoing = encode(&message).expect("encodes");
        let props = outgoing
            .message
            .raw_amqp_message()
            .properties
            .clone()
            .expect("set");
        assert_eq!(
            props.message_id,
            Some(AmqpMessageId::String("dedup-key".into()))
        );
        let incoming = round_trip(&message);
        assert_eq!(incoming.message.message_id().as_str(), "app-id");
        assert_eq!(incoming.message.deduplication_id(), Some("dedup-key"));
        assert!(incoming.message.properties().is_empty());

        let same = Message::builder("x")
            .message_id("same")
            .deduplication_id("same")
            .build()
            .expect("valid");
        let outgoing = encode(&same).expect("encodes");
        assert!(
            outgoing
                .message
                .raw_amqp_message()
                .application_properties
                .is_none()
        );
    }

    #[test]
    fn scheduled_times_and_long_ttls() {
        let at = from_unix_millis(1_800_000_000_123);
        let message = Message::builder("later")
            .scheduled_enqueue_time(at)
            .time_to_live(Duration::from_secs(365 * 24 * 3600))
            .build()
            .expect("valid");
        let outgoing = encode(&message).expect("encodes");
        assert_eq!(outgoing.scheduled_at.map(system_time), Some(at));
        assert_eq!(
            outgoing
                .message
                .raw_amqp_message()
                .header
                .as_ref()
                .and_then(|h| h.ttl),
            Some(u32::MAX),
            "capped at what AMQP carries"
        );
    }

    #[test]
    fn dead_letter_reasons_come_from_the_broker_properties() {
        let mut raw = delivered(&encode(&Message::new("dead")).expect("encodes").message, 0);
        let mut properties = OrderedMap::new();
        properties.insert(
            DEAD_LETTER_REASON.to_owned(),
            SimpleValue::String("MaxDeliveryCountExceeded".into()),
        );
        properties.insert(
            DEAD_LETTER_DESCRIPTION.to_owned(),
            SimpleValue::String("Message could not be consumed after 10 delivery attempts.".into()),
        );
        properties.insert(
            "qr.other".to_owned(),
            SimpleValue::String("reserved".into()),
        );
        raw.application_properties = Some(ApplicationProperties(properties));
        let incoming = readable(decode(&raw, SystemTime::UNIX_EPOCH));
        let reason = incoming.delivery.dead_letter.expect("a reason");
        assert_eq!(reason.reason, DeadLetterReason::MAX_DELIVERY_COUNT_EXCEEDED);
        assert!(reason.description.contains("10 delivery attempts"));
        assert!(
            incoming.message.properties().is_empty(),
            "broker and reserved keys are not application properties"
        );
        assert_eq!(incoming.delivery.delivery_count, 1);
    }

    #[test]
    fn other_producers_messages_are_read_as_far_as_they_can_be() {
        let mut properties = OrderedMap::new();
        properties.insert("count".to_owned(), SimpleValue::Int(7));
        properties.insert("flag".to_owned(), SimpleValue::Bool(true));
        properties.insert("blob".to_owned(), SimpleValue::Binary(vec![1, 2].into()));
        properties.insert("bad key!".to_owned(), SimpleValue::String("x".into()));
        let uuid = [
            0x12u8, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        let raw = AmqpMessage {
            header: None,
            delivery_annotations: None,
            message_annotations: None,
            properties: Some(AmqpProps {
                message_id: Some(AmqpMessageId::Uuid(Uuid::from(uuid))),
                correlation_id: Some(AmqpMessageId::Ulong(99)),
                group_id: Some("s\u{7}bad".into()),
                ..AmqpProps::default()
            }),
            application_properties: Some(ApplicationProperties(properties)),
            body: Body::Value(AmqpValue(Value::String("from .NET".into()))),
            footer: None,
        };
        let now = from_unix_millis(5_000);
        let incoming = decode(&raw, now);
        assert_eq!(incoming.unreadable_body, None, "a string value is a body");
        assert_eq!(incoming.message.body().as_ref(), b"from .NET");
        assert_eq!(
            incoming.message.message_id().as_str(),
            "12345678-9abc-def0-0102-030405060708"
        );
        // The unprintable session id drops the headers, never the message.
        assert_eq!(incoming.message.session_id(), None);
        assert_eq!(incoming.message.properties().get("count"), Some("7"));
        assert_eq!(incoming.message.properties().get("flag"), Some("true"));
        assert_eq!(incoming.message.properties().get("blob"), None);
        assert_eq!(incoming.message.properties().get("bad key!"), None);
        assert_eq!(
            incoming.delivery.enqueued_at, now,
            "no annotation: the local clock"
        );
        assert_eq!(incoming.delivery.delivery_count, 1);
        assert_eq!(incoming.locked_until, None);

        let binary = AmqpMessage {
            body: Body::Value(AmqpValue(Value::Binary(vec![1, 2, 3].into()))),
            ..raw.clone()
        };
        assert_eq!(
            readable(decode(&binary, now)).message.body().as_ref(),
            &[1, 2, 3]
        );
        let sections = AmqpMessage {
            body: Body::Data(Batch::new(vec![
                Data(Binary::from(vec![1])),
                Data(Binary::from(vec![2, 3])),
            ])),
            ..raw.clone()
        };
        assert_eq!(
            readable(decode(&sections, now)).message.body().as_ref(),
            &[1, 2, 3]
        );
        let empty = AmqpMessage {
            body: Body::Empty,
            ..raw.clone()
        };
        assert!(readable(decode(&empty, now)).message.body().is_empty());
        let map = AmqpMessage {
            body: Body::Value(AmqpValue(Value::Long(5))),
            ..raw.clone()
        };
        assert!(
            decode(&map, now).unreadable_body.is_some(),
            "a number body cannot be carried"
        );
        let header = AmqpMessage {
            header: Some(Header {
                delivery_count: u32::MAX,
                ..Header::default()
            }),
            ..raw
        };
        assert_eq!(
            readable(decode(&header, now)).delivery.delivery_count,
            u32::MAX
        );
    }

    #[test]
    fn times_convert_at_millisecond_precision() {
        let time = from_unix_millis(1_700_000_000_123);
        assert_eq!(system_time(offset_date_time(time)), time);
        assert_eq!(
            system_time(OffsetDateTime::UNIX_EPOCH - time::Duration::days(1)),
            SystemTime::UNIX_EPOCH
        );
    }
}
