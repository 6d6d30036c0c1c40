//! The message a caller sends: a body and validated metadata.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::error::QueueError;
use crate::ids::{MessageId, SessionId};

/// The most application properties one message may carry.
pub const MAX_PROPERTIES: usize = 32;
/// The longest property key, in bytes.
pub const MAX_PROPERTY_KEY_LEN: usize = 128;
/// The longest property value, in bytes.
pub const MAX_PROPERTY_VALUE_LEN: usize = 4096;
/// The longest correlation id, content type or deduplication id, in bytes.
pub const MAX_HEADER_VALUE_LEN: usize = 128;
/// Property keys starting with this prefix (any case) belong to queue-runtime itself: the
/// library uses them to carry its own metadata through providers, so callers may not set them.
pub const RESERVED_PROPERTY_PREFIX: &str = "qr.";

/// Application properties: a small map of string keys to string values, validated on insert.
///
/// Keys are 1 to 128 ASCII letters, digits, `.`, `-` and `_`, not starting with
/// [`RESERVED_PROPERTY_PREFIX`]; values are up to 4096 bytes of UTF-8 without control characters
/// other than tab, line feed and carriage return; at most [`MAX_PROPERTIES`] entries. Iteration is
/// in key order, so the map has one canonical form.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Properties(BTreeMap<String, String>);

impl Properties {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates and inserts a property, replacing an existing value for the same key.
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), QueueError> {
        let (key, value) = (key.into(), value.into());
        validate_property_key(&key)?;
        if key
            .get(..RESERVED_PROPERTY_PREFIX.len())
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(RESERVED_PROPERTY_PREFIX))
        {
            return Err(QueueError::invalid_input(format!(
                "property key {key:?} uses the reserved prefix {RESERVED_PROPERTY_PREFIX:?}"
            )));
        }
        validate_property_value(&key, &value)?;
        if self.0.len() >= MAX_PROPERTIES && !self.0.contains_key(&key) {
            return Err(QueueError::invalid_input(format!(
                "a message may carry at most {MAX_PROPERTIES} properties"
            )));
        }
        self.0.insert(key, value);
        Ok(())
    }

    /// Inserts a property under a reserved key. For queue-runtime's own layers (sealing,
    /// tracing, provider mappings), which must not collide with application keys.
    #[doc(hidden)]
    pub fn insert_reserved(
        &mut self,
        key: &'static str,
        value: impl Into<String>,
    ) -> Result<(), QueueError> {
        debug_assert!(key.starts_with(RESERVED_PROPERTY_PREFIX));
        let value = value.into();
        validate_property_value(key, &value)?;
        self.0.insert(key.to_owned(), value);
        Ok(())
    }

    /// Removes and returns a property.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// How many properties there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The properties in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The properties as a sorted map.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// The application's properties only: without the keys reserved for queue-runtime.
    pub fn without_reserved(&self) -> Properties {
        Properties(
            self.0
                .iter()
                .filter(|(k, _)| !is_reserved_key(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// Bytes of keys and values together, as counted toward a message's size.
    pub fn encoded_len(&self) -> usize {
        self.0.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

/// Whether `key` is reserved for queue-runtime's own metadata.
pub fn is_reserved_key(key: &str) -> bool {
    key.get(..RESERVED_PROPERTY_PREFIX.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(RESERVED_PROPERTY_PREFIX))
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

impl TryFrom<BTreeMap<String, String>> for Properties {
    type Error = QueueError;
    fn try_from(map: BTreeMap<String, String>) -> Result<Self, QueueError> {
        let mut properties = Properties::new();
        for (key, value) in map {
            properties.insert(key, value)?;
        }
        Ok(properties)
    }
}

fn validate_property_key(key: &str) -> Result<(), QueueError> {
    if key.is_empty() || key.len() > MAX_PROPERTY_KEY_LEN {
        return Err(QueueError::invalid_input(format!(
            "property key must be 1 to {MAX_PROPERTY_KEY_LEN} bytes, got {}",
            key.len()
        )));
    }
    if let Some(bad) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(QueueError::invalid_input(format!(
            "property key {key:?} contains {bad:?}; allowed are ASCII letters, digits, '.', '-' and '_'"
        )));
    }
    Ok(())
}

fn validate_property_value(key: &str, value: &str) -> Result<(), QueueError> {
    if value.len() > MAX_PROPERTY_VALUE_LEN {
        return Err(QueueError::invalid_input(format!(
            "property {key:?} is {} bytes, the limit is {MAX_PROPERTY_VALUE_LEN}",
            value.len()
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(QueueError::invalid_input(format!(
            "property {key:?} contains a control character"
        )));
    }
    Ok(())
}

fn validate_header_value(what: &str, value: &str) -> Result<(), QueueError> {
    if value.is_empty() || value.len() > MAX_HEADER_VALUE_LEN {
        return Err(QueueError::invalid_input(format!(
            "{what} must be 1 to {MAX_HEADER_VALUE_LEN} characters, got {}",
            value.len()
        )));
    }
    if let Some(bad) = value.chars().find(|c| !matches!(c, ' '..='~')) {
        return Err(QueueError::invalid_input(format!(
            "{what} contains {bad:?}; only printable ASCII is allowed"
        )));
    }
    Ok(())
}

/// A message to send: a body of bytes and its metadata.
///
/// Build one with [`Message::new`] (a body and a fresh id) or [`Message::builder`] (every field,
/// validated once in [`MessageBuilder::build`]).
///
/// ```
/// use std::time::Duration;
/// use queue_core::Message;
///
/// let message = Message::builder("{\"action\":\"opened\"}")
///     .session_id("octo/repo#42")
///     .correlation_id("delivery-7f3a")
///     .content_type("application/json")
///     .property("event", "pull_request")
///     .time_to_live(Duration::from_secs(3600))
///     .build()?;
/// assert_eq!(message.session_id().map(|s| s.as_str()), Some("octo/repo#42"));
/// # Ok::<(), queue_core::QueueError>(())
/// ```
#[derive(Clone)]
pub struct Message {
    body: Bytes,
    message_id: MessageId,
    session_id: Option<SessionId>,
    properties: Properties,
    /// The metadata most messages do not carry, out of line: a message is moved through every
    /// layer (client, provider, broker), and a small one moves in fewer bytes.
    extras: Option<Box<Extras>>,
}

/// The less common metadata of a [`Message`].
#[derive(Clone, PartialEq, Eq, Default)]
struct Extras {
    correlation_id: Option<String>,
    content_type: Option<String>,
    time_to_live: Option<Duration>,
    scheduled_enqueue_time: Option<SystemTime>,
    deduplication_id: Option<String>,
}

/// What a message without extras has.
static NO_EXTRAS: Extras = Extras {
    correlation_id: None,
    content_type: None,
    time_to_live: None,
    scheduled_enqueue_time: None,
    deduplication_id: None,
};

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.body == other.body
            && self.message_id == other.message_id
            && self.session_id == other.session_id
            && self.properties == other.properties
            && self.extras() == other.extras()
    }
}

impl Eq for Message {}

impl Message {
    /// A message with this body, a fresh random id and no other metadata.
    pub fn new(body: impl Into<Bytes>) -> Self {
        Message {
            body: body.into(),
            message_id: MessageId::random(),
            session_id: None,
            properties: Properties::new(),
            extras: None,
        }
    }

    fn extras(&self) -> &Extras {
        self.extras.as_deref().unwrap_or(&NO_EXTRAS)
    }

    fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// A builder for a message with this body.
    pub fn builder(body: impl Into<Bytes>) -> MessageBuilder {
        MessageBuilder {
            message: Message::new(body),
            error: None,
        }
    }

    /// A builder starting from a copy of this message, to change some fields.
    pub fn to_builder(&self) -> MessageBuilder {
        MessageBuilder {
            message: self.clone(),
            error: None,
        }
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The message id (random unless the sender pinned one).
    pub fn message_id(&self) -> &MessageId {
        &self.message_id
    }

    /// The session (ordering group) the message belongs to.
    pub fn session_id(&self) -> Option<&SessionId> {
        self.session_id.as_ref()
    }

    /// The correlation id.
    pub fn correlation_id(&self) -> Option<&str> {
        self.extras().correlation_id.as_deref()
    }

    /// The content type of the body (e.g. `application/json`).
    pub fn content_type(&self) -> Option<&str> {
        self.extras().content_type.as_deref()
    }

    /// The application properties.
    pub fn properties(&self) -> &Properties {
        &self.properties
    }

    /// How long the message may wait in the queue before it expires.
    pub fn time_to_live(&self) -> Option<Duration> {
        self.extras().time_to_live
    }

    /// When the message becomes visible to receivers, if it is scheduled.
    pub fn scheduled_enqueue_time(&self) -> Option<SystemTime> {
        self.extras().scheduled_enqueue_time
    }

    /// The explicit deduplication id, if the sender set one.
    pub fn deduplication_id(&self) -> Option<&str> {
        self.extras().deduplication_id.as_deref()
    }

    /// Replaces the body, keeping every other field (used by layers that transform bodies).
    pub fn set_body(&mut self, body: impl Into<Bytes>) {
        self.body = body.into();
    }

    /// Mutable access to the properties (inserts are still validated).
    pub fn properties_mut(&mut self) -> &mut Properties {
        &mut self.properties
    }

    /// The message's size as the in-memory broker and the default checks count it: the body, the
    /// ids, and every property key and value.
    pub fn approximate_size(&self) -> usize {
        self.body.len()
            + self.message_id.as_str().len()
            + self.session_id.as_ref().map_or(0, |s| s.as_str().len())
            + self.correlation_id().map_or(0, str::len)
            + self.content_type().map_or(0, str::len)
            + self.deduplication_id().map_or(0, str::len)
            + self.properties.encoded_len()
    }
}

impl fmt::Debug for Message {
    // The body is never printed: it may hold anything the application sends.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("message_id", &self.message_id)
            .field("session_id", &self.session_id)
            .field("correlation_id", &self.correlation_id())
            .field("content_type", &self.content_type())
            .field("properties", &self.properties.len())
            .field("body_len", &self.body.len())
            .field("time_to_live", &self.time_to_live())
            .field("scheduled_enqueue_time", &self.scheduled_enqueue_time())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Message`], validating every field; the first invalid field is reported by
/// [`build`](MessageBuilder::build).
#[derive(Debug)]
#[must_use = "a builder does nothing until build() is called"]
pub struct MessageBuilder {
    message: Message,
    error: Option<QueueError>,
}

impl MessageBuilder {
    fn record(mut self, result: Result<(), QueueError>) -> Self {
        if let (Err(error), None) = (result, &self.error) {
            self.error = Some(error);
        }
        self
    }

    /// Replaces the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.message.body = body.into();
        self
    }

    /// Pins the message id (for duplicate detection); otherwise a random one is used.
    pub fn message_id(mut self, id: impl AsRef<str>) -> Self {
        match MessageId::new(id) {
            Ok(id) => {
                self.message.message_id = id;
                self
            }
            Err(error) => self.record(Err(error)),
        }
    }

    /// Puts the message in a session: messages of one session are processed in order.
    pub fn session_id(mut self, id: impl AsRef<str>) -> Self {
        match SessionId::new(id) {
            Ok(id) => {
                self.message.session_id = Some(id);
                self
            }
            Err(error) => self.record(Err(error)),
        }
    }

    /// Sets or clears the session from an already validated id.
    pub fn session(mut self, id: Option<SessionId>) -> Self {
        self.message.session_id = id;
        self
    }

    /// Sets the correlation id (1 to 128 printable ASCII characters).
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        let id = id.into();
        let result = validate_header_value("correlation id", &id);
        if result.is_ok() {
            self.message.extras_mut().correlation_id = Some(id);
        }
        self.record(result)
    }

    /// Sets the content type (1 to 128 printable ASCII characters).
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        let content_type = content_type.into();
        let result = validate_header_value("content type", &content_type);
        if result.is_ok() {
            self.message.extras_mut().content_type = Some(content_type);
        }
        self.record(result)
    }

    /// Adds an application property.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let result = self.message.properties.insert(key, value);
        self.record(result)
    }

    /// Replaces all application properties.
    pub fn properties(mut self, properties: Properties) -> Self {
        self.message.properties = properties;
        self
    }

    /// Sets how long the message may wait in the queue before it expires (more than zero).
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        if ttl.is_zero() {
            return self.record(Err(QueueError::invalid_input(
                "time to live must be more than zero",
            )));
        }
        self.message.extras_mut().time_to_live = Some(ttl);
        self
    }

    /// Makes the message visible only from `at` on.
    pub fn scheduled_enqueue_time(mut self, at: SystemTime) -> Self {
        self.message.extras_mut().scheduled_enqueue_time = Some(at);
        self
    }

    /// Makes the message visible only `delay` after now.
    pub fn delay(self, delay: Duration) -> Self {
        self.scheduled_enqueue_time(SystemTime::now() + delay)
    }

    /// Sets an explicit deduplication id (1 to 128 printable ASCII characters); without one,
    /// providers that deduplicate use the message id.
    pub fn deduplication_id(mut self, id: impl Into<String>) -> Self {
        let id = id.into();
        let result = validate_header_value("deduplication id", &id);
        if result.is_ok() {
            self.message.extras_mut().deduplication_id = Some(id);
        }
        self.record(result)
    }

    /// The message, or the first validation error.
    pub fn build(self) -> Result<Message, QueueError> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn builder_sets_every_field() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let message = Message::builder("hello")
            .message_id("m-1")
            .session_id("s-1")
            .correlation_id("c-1")
            .content_type("text/plain")
            .property("k", "v")
            .time_to_live(Duration::from_secs(5))
            .scheduled_enqueue_time(at)
            .deduplication_id("d-1")
            .build()
            .expect("valid");
        assert_eq!(message.body(), &Bytes::from_static(b"hello"));
        assert_eq!(message.message_id(), &"m-1");
        assert_eq!(message.session_id().map(SessionId::as_str), Some("s-1"));
        assert_eq!(message.correlation_id(), Some("c-1"));
        assert_eq!(message.content_type(), Some("text/plain"));
        assert_eq!(message.properties().get("k"), Some("v"));
        assert_eq!(message.time_to_live(), Some(Duration::from_secs(5)));
        assert_eq!(message.scheduled_enqueue_time(), Some(at));
        assert_eq!(message.deduplication_id(), Some("d-1"));
    }

    #[test]
    fn builder_reports_the_first_invalid_field() {
        let error = Message::builder("x")
            .session_id("")
            .property("bad key", "v")
            .build()
            .expect_err("invalid");
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        assert!(error.message().contains("session id"), "{error}");
    }

    #[test]
    fn property_rules() {
        let mut properties = Properties::new();
        assert!(properties.insert("ok.key-1_x", "value\twith tab").is_ok());
        assert!(properties.insert("", "v").is_err());
        assert!(properties.insert("qr.seal", "v").is_err());
        assert!(properties.insert("QR.seal", "v").is_err());
        assert!(properties.insert("k", "nul\0").is_err());
        assert!(properties.insert("k", "x".repeat(4097)).is_err());
        for i in 1..MAX_PROPERTIES {
            properties
                .insert(format!("k{i}"), "v")
                .expect("under the limit");
        }
        let error = properties.insert("one-too-many", "v").expect_err("limit");
        assert!(error.message().contains("at most"));
        // Replacing an existing key is fine at the limit.
        assert!(properties.insert("k1", "w").is_ok());
    }

    #[test]
    fn reserved_properties_are_kept_apart() {
        let mut properties = Properties::new();
        properties.insert("app", "1").expect("valid");
        properties
            .insert_reserved("qr.envelope", "v1")
            .expect("valid");
        assert_eq!(properties.len(), 2);
        let app = properties.without_reserved();
        assert_eq!(app.len(), 1);
        assert_eq!(app.get("app"), Some("1"));
    }

    #[test]
    fn debug_never_shows_the_body() {
        let message = Message::new("secret body");
        let debug = format!("{message:?}");
        assert!(!debug.contains("secret"));
        assert!(debug.contains("body_len: 11"));
    }

    #[test]
    fn zero_ttl_is_refused() {
        assert!(
            Message::builder("x")
                .time_to_live(Duration::ZERO)
                .build()
                .is_err()
        );
    }
}
