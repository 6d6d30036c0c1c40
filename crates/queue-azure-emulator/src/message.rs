//! Messages between the wire and the engine.
//!
//! The engine stores a message's encoded bytes as its body, untouched, with the few fields the
//! broker acts on (id, session, time to live, scheduled time) read out into the engine's own
//! message. On the way out the broker rewrites only what it owns, the header, the delivery
//! annotations and its own message annotations; properties, application properties, body and
//! footer go back byte for byte as the sender wrote them (on dead letters the application
//! properties gain `DeadLetterReason` and `DeadLetterErrorDescription`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use queue_core::{DeliveryInfo, Message};
use queue_memory::MessageState;
use serde_amqp::Value;
use uuid::Uuid;

use crate::codec::{self, CodecError};
use crate::error::Failure;

/// The message format of a batch: its body is data sections, each an encoded message.
pub(crate) const BATCH_FORMAT: u32 = 0x8001_3700;

/// The kinds of message sections, in the order they must appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Header,
    DeliveryAnnotations,
    MessageAnnotations,
    Properties,
    ApplicationProperties,
    Data,
    Sequence,
    Value,
    Footer,
}

impl Kind {
    fn of(descriptor: &codec::Descriptor) -> Option<Kind> {
        const KINDS: [(u64, &str, Kind); 9] = [
            (0x70, "amqp:header:list", Kind::Header),
            (
                0x71,
                "amqp:delivery-annotations:map",
                Kind::DeliveryAnnotations,
            ),
            (
                0x72,
                "amqp:message-annotations:map",
                Kind::MessageAnnotations,
            ),
            (0x73, "amqp:properties:list", Kind::Properties),
            (
                0x74,
                "amqp:application-properties:map",
                Kind::ApplicationProperties,
            ),
            (0x75, "amqp:data:binary", Kind::Data),
            (0x76, "amqp:amqp-sequence:list", Kind::Sequence),
            (0x77, "amqp:amqp-value:*", Kind::Value),
            (0x78, "amqp:footer:map", Kind::Footer),
        ];
        KINDS
            .iter()
            .find(|(code, name, _)| descriptor.is(*code, name))
            .map(|(_, _, kind)| *kind)
    }

    fn code(self) -> u8 {
        match self {
            Kind::Header => 0x70,
            Kind::DeliveryAnnotations => 0x71,
            Kind::MessageAnnotations => 0x72,
            Kind::Properties => 0x73,
            Kind::ApplicationProperties => 0x74,
            Kind::Data => 0x75,
            Kind::Sequence => 0x76,
            Kind::Value => 0x77,
            Kind::Footer => 0x78,
        }
    }
}

/// One section: its kind, all its bytes, and the bytes of its value (after the descriptor).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Section<'a> {
    pub(crate) kind: Kind,
    pub(crate) bytes: &'a [u8],
    pub(crate) value: &'a [u8],
}

/// Cuts an encoded message into its sections, checking their order.
pub(crate) fn sections(mut bytes: &[u8]) -> Result<Vec<Section<'_>>, CodecError> {
    let mut found: Vec<Section<'_>> = Vec::new();
    while !bytes.is_empty() {
        let len = codec::value_len(bytes)?;
        let whole = &bytes[..len];
        let (descriptor, value) = codec::split_described(whole)?;
        let kind = Kind::of(&descriptor)
            .ok_or_else(|| CodecError(format!("unknown message section {descriptor:?}")))?;
        if let Some(previous) = found.last() {
            let repeatable = kind == previous.kind && matches!(kind, Kind::Data | Kind::Sequence);
            if kind <= previous.kind && !repeatable {
                return Err(CodecError(format!(
                    "message section {kind:?} after {:?}",
                    previous.kind
                )));
            }
        }
        found.push(Section {
            kind,
            bytes: whole,
            value,
        });
        bytes = &bytes[len..];
    }
    Ok(found)
}

fn section<'a>(sections: &[Section<'a>], kind: Kind) -> Option<Section<'a>> {
    sections
        .iter()
        .find(|section| section.kind == kind)
        .copied()
}

/// The messages of a transfer: the message itself, or each message of a batch.
pub(crate) fn unbatch(format: u32, payload: Bytes) -> Result<Vec<Bytes>, Failure> {
    if format != BATCH_FORMAT {
        return Ok(vec![payload]);
    }
    let parts = sections(&payload).map_err(|error| Failure::argument(error.to_string()))?;
    let mut messages = Vec::new();
    for part in parts.iter().filter(|part| part.kind == Kind::Data) {
        let data =
            binary_content(part.value).map_err(|error| Failure::argument(error.to_string()))?;
        messages.push(payload.slice_ref(data));
    }
    if messages.is_empty() {
        return Err(Failure::argument("a batch without messages"));
    }
    Ok(messages)
}

/// The content of an encoded binary.
fn binary_content(bytes: &[u8]) -> Result<&[u8], CodecError> {
    let (start, len) = match bytes.first() {
        Some(0xa0) => (2, usize::from(*bytes.get(1).unwrap_or(&0))),
        Some(0xb0) => {
            let size = bytes
                .get(1..5)
                .ok_or_else(|| CodecError("a binary is cut short".into()))?;
            (
                5,
                u32::from_be_bytes([size[0], size[1], size[2], size[3]]) as usize,
            )
        }
        _ => return Err(CodecError("a data section does not hold a binary".into())),
    };
    bytes
        .get(start..start + len)
        .ok_or_else(|| CodecError("a binary is cut short".into()))
}

/// What the broker reads from a message a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inbound {
    pub(crate) encoded: Bytes,
    pub(crate) message_id: Option<String>,
    pub(crate) session_id: Option<String>,
    pub(crate) time_to_live: Option<Duration>,
    pub(crate) scheduled_at: Option<SystemTime>,
}

/// The name of the annotation that schedules a message.
const SCHEDULED_ENQUEUE_TIME: &str = "x-opt-scheduled-enqueue-time";

impl Inbound {
    /// Reads a message as a client encoded it.
    pub(crate) fn read(encoded: Bytes) -> Result<Inbound, Failure> {
        let malformed = |error: CodecError| Failure::argument(format!("the message: {error}"));
        let parts = sections(&encoded).map_err(malformed)?;
        let header = list_field_values(section(&parts, Kind::Header)).map_err(malformed)?;
        let time_to_live = match header.get(2) {
            Some(Value::Uint(millis)) if *millis > 0 => {
                Some(Duration::from_millis(u64::from(*millis)))
            }
            _ => None,
        };
        let properties = list_field_values(section(&parts, Kind::Properties)).map_err(malformed)?;
        let message_id = properties.first().and_then(message_id_text);
        let session_id = match properties.get(10) {
            Some(Value::String(group)) => Some(group.clone()),
            _ => None,
        };
        let mut scheduled_at = None;
        if let Some(annotations) = section(&parts, Kind::MessageAnnotations) {
            let items = codec::map_items(annotations.value).map_err(malformed)?;
            for pair in items.chunks_exact(2) {
                if codec::read_text(pair[0]).ok() == Some(SCHEDULED_ENQUEUE_TIME) {
                    scheduled_at = match serde_amqp::from_slice::<Value>(pair[1]) {
                        Ok(Value::Timestamp(at)) => Some(from_millis(at.milliseconds())),
                        Ok(Value::Long(millis)) => Some(from_millis(millis)),
                        _ => None,
                    };
                }
            }
        }
        Ok(Inbound {
            encoded: encoded.clone(),
            message_id,
            session_id,
            time_to_live,
            scheduled_at,
        })
    }

    /// The engine's message: the encoded bytes as body, the fields the engine acts on.
    pub(crate) fn into_message(self) -> Result<Message, Failure> {
        let mut builder = Message::builder(self.encoded);
        if let Some(id) = self
            .message_id
            .filter(|id| queue_core::MessageId::new(id).is_ok())
        {
            builder = builder.message_id(id);
        }
        if let Some(session) = self.session_id {
            let session = queue_core::SessionId::new(&session).map_err(|error| {
                Failure::argument(format!("the session id: {}", error.message()))
            })?;
            builder = builder.session(Some(session));
        }
        if let Some(ttl) = self.time_to_live {
            builder = builder.time_to_live(ttl);
        }
        if let Some(at) = self.scheduled_at {
            builder = builder.scheduled_enqueue_time(at);
        }
        builder.build().map_err(Failure::from)
    }
}

/// The fields of a list section (header, properties), decoded; empty when absent.
fn list_field_values(section: Option<Section<'_>>) -> Result<Vec<Value>, CodecError> {
    let Some(section) = section else {
        return Ok(Vec::new());
    };
    codec::list_items(section.value)?
        .into_iter()
        .map(|item| serde_amqp::from_slice(item).map_err(|error| CodecError(error.to_string())))
        .collect()
}

/// A message id as text, whatever its AMQP type.
fn message_id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(id) => Some(id.clone()),
        Value::Uuid(id) => Some(Uuid::from_bytes(*id.as_inner()).to_string()),
        Value::Ulong(id) => Some(id.to_string()),
        Value::Binary(bytes) => Some(bytes.iter().map(|byte| format!("{byte:02x}")).collect()),
        _ => None,
    }
}

fn from_millis(millis: i64) -> SystemTime {
    if millis >= 0 {
        UNIX_EPOCH + Duration::from_millis(millis as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(millis.unsigned_abs())
    }
}

/// Milliseconds since the Unix epoch (AMQP timestamps).
pub(crate) fn millis(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// .NET ticks (100 ns since 0001-01-01), as `com.microsoft:locked-until-utc` carries time.
pub(crate) fn dotnet_ticks(at: SystemTime) -> i64 {
    const UNIX_EPOCH_TICKS: i64 = 621_355_968_000_000_000;
    UNIX_EPOCH_TICKS.saturating_add(millis(at).saturating_mul(10_000))
}

/// How a stored message is going out: the broker's view of it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outgoing<'a> {
    pub(crate) message: &'a Message,
    pub(crate) info: &'a DeliveryInfo,
    /// The header's delivery count: earlier deliveries (0 on the first).
    pub(crate) delivery_count: u32,
    /// Peek-lock deliveries: the lock token and its deadline.
    pub(crate) lock: Option<(Uuid, SystemTime)>,
    /// For a dead-lettered message: the entity it was dead-lettered from.
    pub(crate) dead_letter_source: Option<&'a str>,
    /// For a peeked message: its state.
    pub(crate) state: Option<MessageState>,
}

/// Message annotations the broker sets; a sender's values for them are replaced.
const BROKER_ANNOTATIONS: [&str; 7] = [
    "x-opt-sequence-number",
    "x-opt-enqueued-time",
    "x-opt-locked-until",
    "x-opt-enqueue-sequence-number",
    "x-opt-deadletter-source",
    "x-opt-message-state",
    "x-opt-lock-token",
];
const DEAD_LETTER_REASON: &str = "DeadLetterReason";
const DEAD_LETTER_DESCRIPTION: &str = "DeadLetterErrorDescription";

impl Outgoing<'_> {
    /// The message as it goes on the wire.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let parts = sections(self.message.body())?;
        let mut out = Vec::with_capacity(self.message.body().len() + 256);
        out.extend(self.header(section(&parts, Kind::Header))?);
        if let Some((token, _)) = self.lock {
            let key = codec::symbol("x-opt-lock-token");
            let value = codec::uuid(*token.as_bytes());
            out.extend(codec::described(
                Kind::DeliveryAnnotations.code(),
                &codec::map([key.as_slice(), value.as_slice()]),
            ));
        }
        out.extend(self.message_annotations(section(&parts, Kind::MessageAnnotations))?);
        if let Some(properties) = section(&parts, Kind::Properties) {
            out.extend_from_slice(properties.bytes);
        }
        let application = section(&parts, Kind::ApplicationProperties);
        match &self.info.dead_letter {
            Some(reason) => out.extend(dead_letter_properties(
                application,
                &reason.reason,
                &reason.description,
            )?),
            None => {
                if let Some(application) = application {
                    out.extend_from_slice(application.bytes);
                }
            }
        }
        for part in parts.iter().filter(|part| part.kind >= Kind::Data) {
            out.extend_from_slice(part.bytes);
        }
        Ok(out)
    }

    fn header(&self, original: Option<Section<'_>>) -> Result<Vec<u8>, CodecError> {
        // Durable, priority and ttl as the sender set them; the rest is the broker's.
        let mut fields: Vec<Vec<u8>> = match original {
            Some(section) => codec::list_items(section.value)?
                .into_iter()
                .take(3)
                .map(<[u8]>::to_vec)
                .collect(),
            None => Vec::new(),
        };
        fields.resize(3, codec::NULL.to_vec());
        fields.push(codec::boolean(self.delivery_count == 0).to_vec());
        // Always written, even when 0: .NET reads a missing delivery count as an error.
        fields.push(codec::uint(self.delivery_count));
        Ok(codec::described(
            Kind::Header.code(),
            &codec::list(fields.iter().map(Vec::as_slice)),
        ))
    }

    fn message_annotations(&self, original: Option<Section<'_>>) -> Result<Vec<u8>, CodecError> {
        let mut items: Vec<Vec<u8>> = Vec::new();
        if let Some(section) = original {
            for pair in codec::map_items(section.value)?.chunks_exact(2) {
                let owned =
                    codec::read_text(pair[0]).is_ok_and(|key| BROKER_ANNOTATIONS.contains(&key));
                if !owned {
                    items.push(pair[0].to_vec());
                    items.push(pair[1].to_vec());
                }
            }
        }
        let mut add = |key: &str, value: Vec<u8>| {
            items.push(codec::symbol(key));
            items.push(value);
        };
        if let Some(sequence_number) = self.info.sequence_number {
            let sequence_number = i64::try_from(sequence_number).unwrap_or(i64::MAX);
            add("x-opt-sequence-number", codec::long(sequence_number));
            add(
                "x-opt-enqueue-sequence-number",
                codec::long(sequence_number),
            );
        }
        add(
            "x-opt-enqueued-time",
            codec::timestamp(millis(self.info.enqueued_at)),
        );
        if let Some((_, locked_until)) = self.lock {
            add("x-opt-locked-until", codec::timestamp(millis(locked_until)));
        }
        if let Some(source) = self.dead_letter_source {
            add("x-opt-deadletter-source", codec::string(source));
        }
        if let Some(state) = self.state {
            let code = match state {
                MessageState::Scheduled => 2,
                _ => 0,
            };
            add("x-opt-message-state", codec::int(code));
        }
        Ok(codec::described(
            Kind::MessageAnnotations.code(),
            &codec::map(items.iter().map(Vec::as_slice)),
        ))
    }
}

/// The application properties of a dead letter: the sender's, with the reason and description
/// (empty ones are left out).
fn dead_letter_properties(
    original: Option<Section<'_>>,
    reason: &str,
    description: &str,
) -> Result<Vec<u8>, CodecError> {
    let mut items: Vec<Vec<u8>> = Vec::new();
    if let Some(section) = original {
        for pair in codec::map_items(section.value)?.chunks_exact(2) {
            let replaced = codec::read_text(pair[0])
                .is_ok_and(|key| key == DEAD_LETTER_REASON || key == DEAD_LETTER_DESCRIPTION);
            if !replaced {
                items.push(pair[0].to_vec());
                items.push(pair[1].to_vec());
            }
        }
    }
    for (key, value) in [
        (DEAD_LETTER_REASON, reason),
        (DEAD_LETTER_DESCRIPTION, description),
    ] {
        if !value.is_empty() {
            items.push(codec::string(key));
            items.push(codec::string(value));
        }
    }
    if items.is_empty() {
        return Ok(Vec::new());
    }
    Ok(codec::described(
        Kind::ApplicationProperties.code(),
        &codec::map(items.iter().map(Vec::as_slice)),
    ))
}

#[cfg(test)]
mod tests {
    use queue_core::DeadLetterReason;
    use serde_amqp::primitives::{OrderedMap, Symbol, Timestamp};

    use super::*;

    /// A message as Python's SDK encodes one: header with nulls, annotations, properties,
    /// application properties of several types, a data body.
    fn python_message() -> Vec<u8> {
        let header = codec::list([
            codec::NULL.as_slice(),
            &codec::NULL,
            &codec::uint(60_000),
            &codec::NULL,
            &codec::NULL,
        ]);
        let scheduled = codec::timestamp(1_900_000_000_000);
        let partition = codec::string("pk");
        let annotations = codec::map([
            codec::symbol(SCHEDULED_ENQUEUE_TIME).as_slice(),
            &scheduled,
            &codec::symbol("x-opt-partition-key"),
            &partition,
            &codec::symbol("x-opt-sequence-number"),
            &codec::long(999),
        ]);
        let mut properties_items: Vec<Vec<u8>> = vec![codec::string("id-1")];
        properties_items.extend(std::iter::repeat_n(codec::NULL.to_vec(), 9));
        properties_items.push(codec::string("session-1"));
        let properties = codec::list(properties_items.iter().map(Vec::as_slice));
        let application = codec::map([
            codec::string("int").as_slice(),
            &codec::int(7),
            &codec::string("text"),
            &codec::string("v"),
        ]);
        let mut out = Vec::new();
        out.extend(codec::described(0x70, &header));
        out.extend(codec::described(0x72, &annotations));
        out.extend(codec::described(0x73, &properties));
        out.extend(codec::described(0x74, &application));
        out.extend(codec::described(0x75, &codec::binary(b"hello")));
        out
    }

    fn info(dead_letter: Option<DeadLetterReason>) -> DeliveryInfo {
        DeliveryInfo {
            delivery_count: 2,
            enqueued_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            sequence_number: Some(42),
            expires_at: None,
            dead_letter,
            seal: None,
        }
    }

    fn decoded_map(section: &Section<'_>) -> OrderedMap<Value, Value> {
        match serde_amqp::from_slice::<Value>(section.value).unwrap() {
            Value::Map(map) => map,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn the_broker_reads_id_session_ttl_and_schedule() {
        let inbound = Inbound::read(Bytes::from(python_message())).unwrap();
        assert_eq!(inbound.message_id.as_deref(), Some("id-1"));
        assert_eq!(inbound.session_id.as_deref(), Some("session-1"));
        assert_eq!(inbound.time_to_live, Some(Duration::from_secs(60)));
        assert_eq!(inbound.scheduled_at, Some(from_millis(1_900_000_000_000)));
        let message = inbound.into_message().unwrap();
        assert_eq!(message.message_id().as_str(), "id-1");
        assert_eq!(message.session_id().map(|s| s.as_str()), Some("session-1"));
    }

    #[test]
    fn application_sections_go_out_byte_for_byte_with_broker_annotations() {
        let original = python_message();
        let inbound = Inbound::read(Bytes::from(original.clone())).unwrap();
        let message = inbound.into_message().unwrap();
        let token = Uuid::new_v4();
        let locked_until = UNIX_EPOCH + Duration::from_millis(1_700_000_060_000);
        let info = info(None);
        let encoded = Outgoing {
            message: &message,
            info: &info,
            delivery_count: 1,
            lock: Some((token, locked_until)),
            dead_letter_source: None,
            state: None,
        }
        .encode()
        .unwrap();
        let out = sections(&encoded).unwrap();
        let original_parts = sections(&original).unwrap();
        for kind in [Kind::Properties, Kind::ApplicationProperties, Kind::Data] {
            assert_eq!(
                section(&out, kind).unwrap().bytes,
                section(&original_parts, kind).unwrap().bytes,
                "{kind:?}"
            );
        }
        let header = list_field_values(section(&out, Kind::Header)).unwrap();
        assert_eq!(header[2], Value::Uint(60_000));
        assert_eq!(
            header[4],
            Value::Uint(1),
            "the delivery count is always written"
        );
        let delivery = decoded_map(&section(&out, Kind::DeliveryAnnotations).unwrap());
        assert_eq!(
            delivery.get(&Value::Symbol(Symbol::from("x-opt-lock-token"))),
            Some(&Value::Uuid((*token.as_bytes()).into()))
        );
        let annotations = decoded_map(&section(&out, Kind::MessageAnnotations).unwrap());
        let get = |key: &str| annotations.get(&Value::Symbol(Symbol::from(key))).cloned();
        assert_eq!(
            get("x-opt-sequence-number"),
            Some(Value::Long(42)),
            "replaced"
        );
        assert_eq!(get("x-opt-enqueue-sequence-number"), Some(Value::Long(42)));
        assert_eq!(
            get("x-opt-enqueued-time"),
            Some(Value::Timestamp(Timestamp::from_milliseconds(
                1_700_000_000_123
            )))
        );
        assert_eq!(
            get("x-opt-locked-until"),
            Some(Value::Timestamp(Timestamp::from_milliseconds(
                1_700_000_060_000
            )))
        );
        assert_eq!(get("x-opt-partition-key"), Some(Value::String("pk".into())));
        assert!(get(SCHEDULED_ENQUEUE_TIME).is_some(), "kept");
        assert_eq!(annotations.len(), 6);
    }

    #[test]
    fn dead_letters_carry_reason_description_and_source() {
        let message = Inbound::read(Bytes::from(python_message()))
            .unwrap()
            .into_message()
            .unwrap();
        let info = info(Some(DeadLetterReason::new("Bad", "really bad")));
        let encoded = Outgoing {
            message: &message,
            info: &info,
            delivery_count: 0,
            lock: None,
            dead_letter_source: Some("orders"),
            state: Some(MessageState::Scheduled),
        }
        .encode()
        .unwrap();
        let out = sections(&encoded).unwrap();
        assert!(section(&out, Kind::DeliveryAnnotations).is_none());
        let application = decoded_map(&section(&out, Kind::ApplicationProperties).unwrap());
        let get = |key: &str| application.get(&Value::String(key.into())).cloned();
        assert_eq!(get("DeadLetterReason"), Some(Value::String("Bad".into())));
        assert_eq!(
            get("DeadLetterErrorDescription"),
            Some(Value::String("really bad".into()))
        );
        assert_eq!(get("int"), Some(Value::Int(7)));
        let annotations = decoded_map(&section(&out, Kind::MessageAnnotations).unwrap());
        let get = |key: &str| annotations.get(&Value::Symbol(Symbol::from(key))).cloned();
        assert_eq!(
            get("x-opt-deadletter-source"),
            Some(Value::String("orders".into()))
        );
        assert_eq!(get("x-opt-message-state"), Some(Value::Int(2)));
        assert!(get("x-opt-locked-until").is_none());
    }

    #[test]
    fn batches_unpack_into_their_messages() {
        let one = python_message();
        let mut batch = Vec::new();
        batch.extend(codec::described(0x75, &codec::binary(&one)));
        batch.extend(codec::described(0x75, &codec::binary(&one)));
        let messages = unbatch(BATCH_FORMAT, Bytes::from(batch)).unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].as_ref(), one.as_slice());
        assert!(unbatch(BATCH_FORMAT, Bytes::new()).is_err());
        assert_eq!(unbatch(0, Bytes::from_static(b"x")).unwrap().len(), 1);
    }

    #[test]
    fn malformed_messages_are_argument_errors() {
        for bytes in [&b"\x00\x53\x75"[..], b"\x00\x53\x99\x40", b"\xa1\x01x"] {
            assert!(Inbound::read(Bytes::copy_from_slice(bytes)).is_err());
        }
        let mut out_of_order = Vec::new();
        out_of_order.extend(codec::described(0x75, &codec::binary(b"x")));
        out_of_order.extend(codec::described(0x70, &codec::list([])));
        assert!(sections(&out_of_order).is_err());
    }

    #[test]
    fn ticks_count_from_year_one() {
        assert_eq!(dotnet_ticks(UNIX_EPOCH), 621_355_968_000_000_000);
        assert_eq!(
            dotnet_ticks(UNIX_EPOCH + Duration::from_secs(1)),
            621_355_968_010_000_000
        );
    }
}
