//! The `$management` node of each entity: Service Bus's request/response operations.
//!
//! A request is a message with `operation` (and `associated-link-name`,
//! `com.microsoft:server-timeout`) in its application properties and an amqp-value map body;
//! the reply carries `statusCode`, `statusDescription` and, on failure, `errorCondition`, and its
//! correlation id is the request's message id, as written (Python matches it by value and
//! type). Lock tokens in bodies are AMQP uuids in RFC order.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use queue_core::{DeadLetterReason, ErrorKind, PeekOptions, QueueProvider, SessionId, SubQueue};
use serde_amqp::Value;
use serde_amqp::primitives::{Array, OrderedMap, Timestamp};
use uuid::Uuid;

use crate::broker::{Broker, Entity, HeldSession};
use crate::codec::{self, CodecError};
use crate::error::{Failure, condition};
use crate::message::{self, Inbound, Kind, Outgoing};

/// A request to a node: what the broker reads from the message.
#[derive(Debug)]
pub(crate) struct Request {
    /// The request's message id, encoded as it came (echoed as the reply's correlation id).
    message_id: Option<Vec<u8>>,
    /// Where the client wants the reply.
    pub(crate) reply_to: Option<String>,
    properties: HashMap<String, Value>,
    body: Value,
}

impl Request {
    /// Reads a request message.
    pub(crate) fn parse(encoded: &[u8]) -> Result<Request, Failure> {
        let malformed = |error: CodecError| Failure::argument(format!("the request: {error}"));
        let parts = message::sections(encoded).map_err(malformed)?;
        let mut request = Request {
            message_id: None,
            reply_to: None,
            properties: HashMap::new(),
            body: Value::Null,
        };
        for part in parts {
            match part.kind {
                Kind::Properties => {
                    let fields = codec::list_items(part.value).map_err(malformed)?;
                    request.message_id = fields
                        .first()
                        .filter(|id| id.first() != Some(&0x40))
                        .map(|id| id.to_vec());
                    request.reply_to = fields
                        .get(4)
                        .and_then(|reply_to| codec::read_text(reply_to).ok())
                        .map(str::to_owned);
                }
                Kind::ApplicationProperties => {
                    for pair in codec::map_items(part.value)
                        .map_err(malformed)?
                        .chunks_exact(2)
                    {
                        let key = codec::read_text(pair[0]).map_err(malformed)?;
                        let value = decode(pair[1]).map_err(malformed)?;
                        request.properties.insert(key.to_owned(), value);
                    }
                }
                Kind::Value => request.body = decode(part.value).map_err(malformed)?,
                _ => {}
            }
        }
        Ok(request)
    }

    /// The `operation` application property.
    pub(crate) fn operation(&self) -> Option<&str> {
        text(self.properties.get("operation")?)
    }

    /// An application property as text.
    pub(crate) fn property_text(&self, key: &str) -> Option<&str> {
        text(self.properties.get(key)?)
    }

    /// The body, when it is a string (a CBS token).
    pub(crate) fn body_text(&self) -> Option<&str> {
        text(&self.body)
    }

    /// A field of the body map.
    fn field(&self, key: &str) -> Option<&Value> {
        let Value::Map(map) = &self.body else {
            return None;
        };
        map.iter()
            .find(|(name, _)| text(name) == Some(key))
            .map(|(_, value)| value)
            .filter(|value| !matches!(value, Value::Null))
    }

    fn required(&self, key: &str) -> Result<&Value, Failure> {
        self.field(key)
            .ok_or_else(|| Failure::argument(format!("the request body has no {key:?}")))
    }

    fn session_id(&self) -> Result<Option<SessionId>, Failure> {
        match self.field("session-id") {
            None => Ok(None),
            Some(value) => {
                let id =
                    text(value).ok_or_else(|| Failure::argument("session-id is not a string"))?;
                SessionId::new(id)
                    .map(Some)
                    .map_err(|error| Failure::argument(error.message().to_owned()))
            }
        }
    }

    fn required_session(&self) -> Result<SessionId, Failure> {
        self.session_id()?
            .ok_or_else(|| Failure::argument("the request body has no \"session-id\""))
    }
}

fn decode(bytes: &[u8]) -> Result<Value, CodecError> {
    serde_amqp::from_slice(bytes).map_err(|error| CodecError(error.to_string()))
}

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::String(text) => Some(text),
        Value::Symbol(symbol) => Some(symbol.as_str()),
        _ => None,
    }
}

/// The items of an array or list field.
fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(Array(items)) | Value::List(items) => items,
        _ => &[],
    }
}

fn integer(value: &Value) -> Option<i64> {
    match *value {
        Value::Long(n) => Some(n),
        Value::Int(n) => Some(i64::from(n)),
        Value::Short(n) => Some(i64::from(n)),
        Value::Byte(n) => Some(i64::from(n)),
        Value::Ulong(n) => i64::try_from(n).ok(),
        Value::Uint(n) => Some(i64::from(n)),
        Value::Ushort(n) => Some(i64::from(n)),
        Value::Ubyte(n) => Some(i64::from(n)),
        _ => None,
    }
}

fn lock_tokens(request: &Request) -> Result<Vec<Uuid>, Failure> {
    let tokens: Vec<Uuid> = items(request.required("lock-tokens")?)
        .iter()
        .map(|token| match token {
            Value::Uuid(uuid) => Ok(Uuid::from_bytes(*uuid.as_inner())),
            _ => Err(Failure::argument(
                "lock-tokens holds something that is not a uuid",
            )),
        })
        .collect::<Result<_, _>>()?;
    if tokens.is_empty() {
        return Err(Failure::argument("lock-tokens is empty"));
    }
    Ok(tokens)
}

/// How a reply spells its status properties: management nodes in camel case, `$cbs` in kebab
/// case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Management,
    Cbs,
}

/// A reply to a request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub(crate) status: i32,
    pub(crate) description: String,
    pub(crate) condition: Option<&'static str>,
    pub(crate) body: Option<Value>,
}

impl Reply {
    /// 200 with a body.
    pub(crate) fn ok(body: Value) -> Reply {
        Reply {
            status: 200,
            description: "OK".to_owned(),
            condition: None,
            body: Some(body),
        }
    }

    /// 204: nothing to return.
    fn no_content() -> Reply {
        Reply {
            status: 204,
            description: "No Content".to_owned(),
            condition: None,
            body: None,
        }
    }

    /// A failure, with its status and condition.
    pub(crate) fn failure(failure: Failure) -> Reply {
        Reply {
            status: failure.status,
            description: failure.description,
            condition: Some(failure.condition),
            body: None,
        }
    }

    /// The reply message for `request`.
    pub(crate) fn encode(&self, request: &Request, style: Style) -> Vec<u8> {
        let (status_key, description_key, condition_key) = match style {
            Style::Management => ("statusCode", "statusDescription", "errorCondition"),
            Style::Cbs => ("status-code", "status-description", "error-condition"),
        };
        let message_id = codec::uuid(*Uuid::new_v4().as_bytes());
        let to = request
            .reply_to
            .as_deref()
            .map_or_else(|| codec::NULL.to_vec(), codec::string);
        let correlation_id = request
            .message_id
            .clone()
            .unwrap_or_else(|| codec::NULL.to_vec());
        let properties = codec::list([
            message_id.as_slice(),
            &codec::NULL,
            &to,
            &codec::NULL,
            &codec::NULL,
            &correlation_id,
        ]);
        let mut application: Vec<Vec<u8>> = vec![
            codec::string(status_key),
            codec::int(self.status),
            codec::string(description_key),
            codec::string(&self.description),
        ];
        if let Some(condition) = self.condition {
            application.push(codec::string(condition_key));
            application.push(codec::string(condition));
        }
        let body = self
            .body
            .as_ref()
            .and_then(|body| serde_amqp::to_vec(body).ok())
            .unwrap_or_else(|| codec::NULL.to_vec());
        let mut out = codec::described(0x73, &properties);
        out.extend(codec::described(
            0x74,
            &codec::map(application.iter().map(Vec::as_slice)),
        ));
        out.extend(codec::described(0x77, &body));
        out
    }
}

/// The node a management request was sent to.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) entity: Arc<Entity>,
    pub(crate) sub_queue: SubQueue,
}

fn map(entries: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    let mut map = OrderedMap::new();
    for (key, value) in entries {
        map.insert(Value::String(key.to_owned()), value);
    }
    Value::Map(map)
}

fn timestamp(at: std::time::SystemTime) -> Value {
    Value::Timestamp(Timestamp::from_milliseconds(message::millis(at)))
}

/// Runs a management operation.
pub(crate) async fn execute(broker: &Broker, node: &Node, request: &Request) -> Reply {
    let result = match request.operation() {
        Some("com.microsoft:renew-lock") => renew_lock(broker, request).await,
        Some("com.microsoft:peek-message") => peek(broker, node, request),
        Some("com.microsoft:schedule-message") => schedule(broker, node, request).await,
        Some("com.microsoft:cancel-scheduled-message") => cancel(broker, node, request).await,
        Some("com.microsoft:renew-session-lock") => renew_session_lock(broker, node, request).await,
        Some("com.microsoft:get-session-state") => get_session_state(broker, node, request).await,
        Some("com.microsoft:set-session-state") => set_session_state(broker, node, request).await,
        Some("com.microsoft:update-disposition") => update_disposition(broker, request).await,
        Some("com.microsoft:receive-by-sequence-number") => Err(Failure::not_allowed(
            "this emulator does not support deferral, so no message waits to be received by \
             sequence number",
        )),
        Some(other) => Err(Failure::not_allowed(format!(
            "operation {other:?} is not supported by this emulator (supported: renew-lock, \
             peek-message, schedule-message, cancel-scheduled-message, renew-session-lock, \
             get-session-state, set-session-state, update-disposition)"
        ))),
        None => Err(Failure::argument("the request names no operation")),
    };
    result.unwrap_or_else(Reply::failure)
}

async fn renew_lock(broker: &Broker, request: &Request) -> Result<Reply, Failure> {
    let mut expirations = Vec::new();
    for token in lock_tokens(request)? {
        let lock = broker.locks.get(&token).ok_or_else(|| {
            Failure::message_lock_lost(format!("lock token {token} holds no lock"))
        })?;
        let until = broker
            .provider
            .renew_lock(&lock.receipt)
            .await
            .map_err(Failure::from)?;
        broker.locks.renewed(&token, until);
        expirations.push(timestamp(until));
    }
    Ok(Reply::ok(map([(
        "expirations",
        Value::Array(Array(expirations)),
    )])))
}

fn peek(broker: &Broker, node: &Node, request: &Request) -> Result<Reply, Failure> {
    let from = request
        .field("from-sequence-number")
        .and_then(integer)
        .unwrap_or(0)
        .max(0);
    let count = request
        .field("message-count")
        .and_then(integer)
        .unwrap_or(1);
    if count < 1 {
        return Err(Failure::argument("message-count must be at least 1"));
    }
    let session = request.session_id()?;
    let mut options = PeekOptions::new(count.min(1000) as usize);
    options.from_sequence_number = Some(from as u64);
    options.sub_queue = node.sub_queue;
    let browsed = broker
        .provider
        .browse(&node.entity.name, options, session.as_ref())
        .map_err(Failure::from)?;
    if browsed.is_empty() {
        return Ok(Reply::no_content());
    }
    let mut messages = Vec::with_capacity(browsed.len());
    for browsed in browsed {
        let peeked = &browsed.message;
        let encoded = Outgoing {
            message: &peeked.message,
            info: &peeked.delivery,
            delivery_count: peeked.delivery.delivery_count,
            lock: None,
            dead_letter_source: (node.sub_queue == SubQueue::DeadLetter)
                .then(|| node.entity.name.as_str()),
            state: Some(browsed.state),
        }
        .encode()
        .map_err(|error| Failure::new(condition::INTERNAL_ERROR, 500, error.to_string()))?;
        messages.push(map([("message", Value::Binary(encoded.into()))]));
    }
    Ok(Reply::ok(map([("messages", Value::List(messages))])))
}

async fn schedule(broker: &Broker, node: &Node, request: &Request) -> Result<Reply, Failure> {
    if node.sub_queue == SubQueue::DeadLetter {
        return Err(Failure::not_allowed(
            "messages cannot be scheduled to a dead-letter queue",
        ));
    }
    let mut sequence_numbers = Vec::new();
    for entry in items(request.required("messages")?) {
        let Value::Map(fields) = entry else {
            return Err(Failure::argument(
                "messages holds something that is not a map",
            ));
        };
        let encoded = fields
            .iter()
            .find(|(key, _)| text(key) == Some("message"))
            .and_then(|(_, value)| match value {
                Value::Binary(bytes) => Some(bytes.to_vec()),
                _ => None,
            })
            .ok_or_else(|| Failure::argument("a scheduled message has no \"message\" binary"))?;
        check_size(&node.entity, encoded.len())?;
        let message = Inbound::read(Bytes::from(encoded))?.into_message()?;
        let outcome = broker
            .provider
            .send(&node.entity.name, message)
            .await
            .map_err(Failure::from)?;
        let sequence_number = outcome.sequence_number.unwrap_or_default();
        sequence_numbers.push(Value::Long(
            i64::try_from(sequence_number).unwrap_or(i64::MAX),
        ));
    }
    Ok(Reply::ok(map([(
        "sequence-numbers",
        Value::Array(Array(sequence_numbers)),
    )])))
}

/// Refuses a message larger than the entity takes.
pub(crate) fn check_size(entity: &Entity, size: usize) -> Result<(), Failure> {
    let limit = entity.config.max_message_size() as usize;
    if size > limit {
        return Err(Failure::new(
            condition::MESSAGE_SIZE_EXCEEDED,
            413,
            format!(
                "the message is {size} bytes; {} takes at most {limit}",
                entity.name
            ),
        ));
    }
    Ok(())
}

async fn cancel(broker: &Broker, node: &Node, request: &Request) -> Result<Reply, Failure> {
    for value in items(request.required("sequence-numbers")?) {
        let sequence_number = integer(value)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| Failure::argument("sequence-numbers holds a non-number"))?;
        broker
            .provider
            .cancel_scheduled(&node.entity.name, sequence_number)
            .await
            .map_err(Failure::from)?;
    }
    Ok(Reply::ok(map([])))
}

/// The held session a session operation names.
fn held(broker: &Broker, node: &Node, request: &Request) -> Result<Arc<HeldSession>, Failure> {
    let session = request.required_session()?;
    broker
        .held_session(&node.entity.name, &session)
        .ok_or_else(|| {
            Failure::session_lock_lost(format!(
                "no receiver holds session {session} of {}",
                node.entity.name
            ))
        })
}

/// A failure of a session operation: a lost lock is the session's.
fn session_failure(error: queue_core::QueueError) -> Failure {
    if error.kind() == ErrorKind::LockLost {
        Failure::session_lock_lost(error.message().to_owned())
    } else {
        Failure::from(error)
    }
}

async fn renew_session_lock(
    broker: &Broker,
    node: &Node,
    request: &Request,
) -> Result<Reply, Failure> {
    let held = held(broker, node, request)?;
    let until = held
        .receiver
        .renew_session_lock()
        .await
        .map_err(session_failure)?;
    Ok(Reply::ok(map([("expiration", timestamp(until))])))
}

async fn get_session_state(
    broker: &Broker,
    node: &Node,
    request: &Request,
) -> Result<Reply, Failure> {
    let held = held(broker, node, request)?;
    let state = held.receiver.state().await.map_err(session_failure)?;
    let state = state.map_or(Value::Null, |bytes| Value::Binary(bytes.to_vec().into()));
    Ok(Reply::ok(map([("session-state", state)])))
}

async fn set_session_state(
    broker: &Broker,
    node: &Node,
    request: &Request,
) -> Result<Reply, Failure> {
    let held = held(broker, node, request)?;
    let state = match request.field("session-state") {
        None => None,
        Some(Value::Binary(bytes)) => Some(Bytes::copy_from_slice(bytes)),
        Some(_) => {
            return Err(Failure::argument(
                "session-state is neither binary nor null",
            ));
        }
    };
    held.receiver
        .set_state(state)
        .await
        .map_err(session_failure)?;
    Ok(Reply::ok(map([])))
}

async fn update_disposition(broker: &Broker, request: &Request) -> Result<Reply, Failure> {
    let status = request
        .field("disposition-status")
        .and_then(text)
        .ok_or_else(|| Failure::argument("the request has no disposition-status"))?
        .to_owned();
    let reason = request
        .field("deadletter-reason")
        .and_then(text)
        .unwrap_or_default()
        .to_owned();
    let description = request
        .field("deadletter-description")
        .and_then(text)
        .unwrap_or_default()
        .to_owned();
    for token in lock_tokens(request)? {
        let lock = broker.locks.get(&token).ok_or_else(|| {
            Failure::message_lock_lost(format!("lock token {token} holds no lock"))
        })?;
        let provider = &broker.provider;
        let result = match status.as_str() {
            "completed" => provider.complete(&lock.receipt).await,
            "abandoned" => provider.abandon(&lock.receipt, None).await,
            "suspended" => {
                let reason = DeadLetterReason::new(reason.clone(), description.clone());
                provider.dead_letter(&lock.receipt, reason).await
            }
            "defered" | "deferred" => {
                return Err(Failure::not_allowed(
                    "this emulator does not support deferral",
                ));
            }
            other => {
                return Err(Failure::argument(format!(
                    "unknown disposition-status {other:?}"
                )));
            }
        };
        broker.locks.remove(&token);
        result.map_err(Failure::from)?;
    }
    Ok(Reply::ok(map([])))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request as Python's SDK sends one: a uuid message id, reply-to, the operation, a map.
    fn python_request(operation: &str, body: Value) -> (Vec<u8>, [u8; 16]) {
        let id = *Uuid::new_v4().as_bytes();
        let mut properties: Vec<Vec<u8>> = vec![codec::uuid(id)];
        properties.extend(std::iter::repeat_n(codec::NULL.to_vec(), 3));
        properties.push(codec::string("orders/$management"));
        let application = codec::map([
            codec::string("operation").as_slice(),
            &codec::string(operation),
            &codec::string("com.microsoft:server-timeout"),
            &codec::uint(60_000),
        ]);
        let mut out = codec::described(0x73, &codec::list(properties.iter().map(Vec::as_slice)));
        out.extend(codec::described(0x74, &application));
        out.extend(codec::described(0x77, &serde_amqp::to_vec(&body).unwrap()));
        (out, id)
    }

    #[test]
    fn requests_are_read_and_replies_correlate_by_the_same_id() {
        let body = map([("session-id", Value::String("s-1".into()))]);
        let (encoded, id) = python_request("com.microsoft:get-session-state", body);
        let request = Request::parse(&encoded).unwrap();
        assert_eq!(request.operation(), Some("com.microsoft:get-session-state"));
        assert_eq!(request.reply_to.as_deref(), Some("orders/$management"));
        assert_eq!(request.required_session().unwrap().as_str(), "s-1");

        let reply = Reply::failure(Failure::message_lock_lost("gone"));
        let encoded = reply.encode(&request, Style::Management);
        let parts = message::sections(&encoded).unwrap();
        let properties = codec::list_items(parts[0].value).unwrap();
        assert_eq!(
            properties[5],
            codec::uuid(id).as_slice(),
            "correlation id as sent"
        );
        let application: Value = serde_amqp::from_slice(parts[1].value).unwrap();
        let Value::Map(application) = application else {
            panic!("not a map");
        };
        assert_eq!(
            application.get(&Value::String("statusCode".into())),
            Some(&Value::Int(410))
        );
        assert_eq!(
            application.get(&Value::String("errorCondition".into())),
            Some(&Value::String(condition::MESSAGE_LOCK_LOST.into()))
        );
        let cbs = Reply {
            status: 202,
            description: "Accepted".into(),
            condition: None,
            body: None,
        }
        .encode(&request, Style::Cbs);
        let parts = message::sections(&cbs).unwrap();
        let application: Value = serde_amqp::from_slice(parts[1].value).unwrap();
        let Value::Map(application) = application else {
            panic!("not a map");
        };
        assert_eq!(
            application.get(&Value::String("status-code".into())),
            Some(&Value::Int(202))
        );
    }

    fn broker() -> Broker {
        let config = crate::config::EmulatorConfig::new()
            .with_queue(crate::config::QueueConfig::new("q"))
            .with_queue(crate::config::QueueConfig::new("s").with_sessions(true));
        Broker::new(config).unwrap()
    }

    fn node(broker: &Broker, name: &str) -> Node {
        Node {
            entity: broker.entity(name).unwrap(),
            sub_queue: SubQueue::Main,
        }
    }

    async fn run(broker: &Broker, name: &str, operation: &str, body: Value) -> Reply {
        let (encoded, _) = python_request(operation, body);
        execute(
            broker,
            &node(broker, name),
            &Request::parse(&encoded).unwrap(),
        )
        .await
    }

    fn tokens(token: Uuid) -> Value {
        Value::Array(Array(vec![Value::Uuid((*token.as_bytes()).into())]))
    }

    #[tokio::test]
    async fn update_disposition_settles_by_lock_token() {
        use queue_core::{QueueProviderExt, ReceiveOptions};
        let broker = broker();
        let queue = queue_core::QueueName::new("q").unwrap();
        let message = Inbound::read(Bytes::from(codec::described(0x77, &codec::NULL)))
            .unwrap()
            .into_message()
            .unwrap();
        broker.provider.send(&queue, message).await.unwrap();
        let received = broker
            .provider
            .receive(&queue, ReceiveOptions::new(1, std::time::Duration::ZERO))
            .await
            .unwrap()
            .remove(0);
        let token = broker
            .locks
            .issue(received.receipt.clone(), received.locked_until, None);
        let renewed = run(
            &broker,
            "q",
            "com.microsoft:renew-lock",
            map([("lock-tokens", tokens(token))]),
        )
        .await;
        assert_eq!(renewed.status, 200, "{renewed:?}");
        let deferred = map([
            ("disposition-status", Value::String("defered".into())),
            ("lock-tokens", tokens(token)),
        ]);
        let refused = run(&broker, "q", "com.microsoft:update-disposition", deferred).await;
        assert_eq!(
            (refused.status, refused.condition),
            (400, Some(condition::NOT_ALLOWED))
        );
        let completed = map([
            ("disposition-status", Value::String("completed".into())),
            ("lock-tokens", tokens(token)),
        ]);
        let reply = run(&broker, "q", "com.microsoft:update-disposition", completed).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(broker.provider.queue_stats(&queue).unwrap().in_flight, 0);
        let lost = run(
            &broker,
            "q",
            "com.microsoft:renew-lock",
            map([("lock-tokens", tokens(token))]),
        )
        .await;
        assert_eq!(
            (lost.status, lost.condition),
            (410, Some(condition::MESSAGE_LOCK_LOST))
        );
        let empty = run(
            &broker,
            "q",
            "com.microsoft:peek-message",
            map([
                ("from-sequence-number", Value::Long(1)),
                ("message-count", Value::Int(5)),
            ]),
        )
        .await;
        assert_eq!(empty.status, 204);
        assert!(
            broker
                .provider
                .receive_one(&queue, std::time::Duration::ZERO)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn refusals_name_their_reason() {
        let broker = broker();
        let by_sequence = run(
            &broker,
            "q",
            "com.microsoft:receive-by-sequence-number",
            map([]),
        )
        .await;
        assert_eq!(
            (by_sequence.status, by_sequence.condition),
            (400, Some(condition::NOT_ALLOWED))
        );
        let unknown = run(&broker, "q", "com.microsoft:add-rule", map([])).await;
        assert_eq!(unknown.status, 400);
        assert!(unknown.description.contains("add-rule"), "{unknown:?}");
        let not_held = run(
            &broker,
            "s",
            "com.microsoft:get-session-state",
            map([("session-id", Value::String("nobody".into()))]),
        )
        .await;
        assert_eq!(
            (not_held.status, not_held.condition),
            (410, Some(condition::SESSION_LOCK_LOST))
        );
        let no_tokens = run(&broker, "q", "com.microsoft:renew-lock", map([])).await;
        assert_eq!(
            (no_tokens.status, no_tokens.condition),
            (400, Some(condition::ARGUMENT_ERROR))
        );
        let cancel = run(
            &broker,
            "q",
            "com.microsoft:cancel-scheduled-message",
            map([(
                "sequence-numbers",
                Value::Array(Array(vec![Value::Long(99)])),
            )]),
        )
        .await;
        assert_eq!(
            (cancel.status, cancel.condition),
            (404, Some(condition::MESSAGE_NOT_FOUND))
        );
    }

    #[test]
    fn lock_tokens_are_uuids_in_rfc_order() {
        let token = Uuid::parse_str("00112233-4455-6677-8899-aabbccddeeff").unwrap();
        let body = map([(
            "lock-tokens",
            Value::Array(Array(vec![Value::Uuid((*token.as_bytes()).into())])),
        )]);
        let (encoded, _) = python_request("com.microsoft:renew-lock", body);
        let request = Request::parse(&encoded).unwrap();
        assert_eq!(lock_tokens(&request).unwrap(), [token]);
        let (encoded, _) = python_request("com.microsoft:renew-lock", map([]));
        assert!(lock_tokens(&Request::parse(&encoded).unwrap()).is_err());
    }
}
