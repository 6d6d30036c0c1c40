//! The context an envelope is bound to, and its one canonical encoding.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::error::{CryptoError, Result};

/// The largest encoded context, in bytes.
pub const MAX_CONTEXT_LEN: usize = 1024 * 1024;

/// Where a message belongs and what the transport says about it: authenticated with the
/// envelope but not encrypted (the transport needs it in the clear). Opening requires the same
/// context the envelope was sealed with; a message moved to another queue or session, or with
/// any field or property altered, fails with [`DecryptFailed`](crate::CryptoError::DecryptFailed).
///
/// An absent field and an empty one are different values. Properties are ordered by key, so the
/// order they were added in does not matter.
///
/// Every field borrows what it is given when it can (`&str`) and owns it otherwise (`String`),
/// so binding a message's own metadata copies nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Context<'a> {
    channel: Cow<'a, str>,
    session_id: Option<Cow<'a, str>>,
    correlation_id: Option<Cow<'a, str>>,
    content_type: Option<Cow<'a, str>>,
    message_id: Option<Cow<'a, str>>,
    properties: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
}

impl<'a> Context<'a> {
    /// A context for the logical channel (the queue's name, or a topic, or an HTTP route).
    /// The channel must not be empty.
    pub fn new(channel: impl Into<Cow<'a, str>>) -> Self {
        Context {
            channel: channel.into(),
            ..Context::default()
        }
    }

    /// Binds the session (SQS message group) id.
    #[must_use]
    pub fn with_session_id(mut self, session_id: impl Into<Cow<'a, str>>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// Binds the correlation id.
    #[must_use]
    pub fn with_correlation_id(mut self, correlation_id: impl Into<Cow<'a, str>>) -> Self {
        self.correlation_id = Some(correlation_id.into());
        self
    }

    /// Binds the content type.
    #[must_use]
    pub fn with_content_type(mut self, content_type: impl Into<Cow<'a, str>>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Binds the transport's message id (the one the sender chose, not one a broker assigns).
    #[must_use]
    pub fn with_message_id(mut self, message_id: impl Into<Cow<'a, str>>) -> Self {
        self.message_id = Some(message_id.into());
        self
    }

    /// Binds an application property; a second value for the same key replaces the first.
    #[must_use]
    pub fn with_property(
        mut self,
        key: impl Into<Cow<'a, str>>,
        value: impl Into<Cow<'a, str>>,
    ) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// Binds every property of a map (replacing those with the same keys).
    #[must_use]
    pub fn with_properties<K, V>(mut self, properties: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<Cow<'a, str>>,
        V: Into<Cow<'a, str>>,
    {
        self.properties.extend(
            properties
                .into_iter()
                .map(|(key, value)| (key.into(), value.into())),
        );
        self
    }

    /// Binds every property of a list that a transport delivered, refusing duplicate keys
    /// ([`InvalidContext`](crate::CryptoError::InvalidContext)) instead of letting one value
    /// replace another: a sender's context holds each key once, so a message whose transport
    /// shows a key twice was not sealed with what it shows (docs/envelope.md, "The bound
    /// context").
    pub fn try_with_properties<K, V>(
        mut self,
        properties: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self>
    where
        K: Into<Cow<'a, str>>,
        V: Into<Cow<'a, str>>,
    {
        for (key, value) in properties {
            let key = key.into();
            if self.properties.contains_key(key.as_ref()) {
                return Err(CryptoError::InvalidContext(format!(
                    "the property {key:?} appears twice"
                )));
            }
            self.properties.insert(key, value.into());
        }
        Ok(self)
    }

    /// The channel: the queue (or topic, or route) the envelope is bound to.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The session id, if bound.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The correlation id, if bound.
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }

    /// The content type, if bound.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The message id, if bound.
    pub fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }

    /// The properties, ordered by key.
    pub fn properties(&self) -> &BTreeMap<Cow<'a, str>, Cow<'a, str>> {
        &self.properties
    }

    /// The encoded length, without encoding.
    fn encoded_len(&self) -> usize {
        let optional =
            |field: &Option<Cow<'a, str>>| 1 + field.as_ref().map_or(0, |text| 4 + text.len());
        4 + self.channel.len()
            + optional(&self.session_id)
            + optional(&self.correlation_id)
            + optional(&self.content_type)
            + optional(&self.message_id)
            + 4
            + self
                .properties
                .iter()
                .map(|(key, value)| 8 + key.len() + value.len())
                .sum::<usize>()
    }

    /// Checks that the context can be bound: the channel is not empty
    /// ([`InvalidContext`](CryptoError::InvalidContext)) and the encoding is at most
    /// [`MAX_CONTEXT_LEN`] bytes ([`TooLarge`](CryptoError::TooLarge)). Returns the encoded
    /// length. Sealing and opening run this first, before they look at anything else.
    pub(crate) fn check(&self) -> Result<usize> {
        if self.channel.is_empty() {
            return Err(CryptoError::InvalidContext(
                "the channel name must not be empty".into(),
            ));
        }
        let len = self.encoded_len();
        if len > MAX_CONTEXT_LEN {
            return Err(CryptoError::TooLarge {
                what: "context",
                size: len,
                max: MAX_CONTEXT_LEN,
            });
        }
        Ok(len)
    }

    /// Appends the canonical encoding (docs/envelope.md, "The bound context"):
    ///
    /// ```text
    /// str(x)      = u32be(len(x)) || x
    /// opt(absent) = 0x00          opt(x) = 0x01 || str(x)
    /// context     = str(channel) || opt(session_id) || opt(correlation_id)
    ///               || opt(content_type) || opt(message_id)
    ///               || u32be(count) || (str(key) || str(value)) for each property, keys ascending
    /// ```
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        let len = self.check()?;
        out.reserve(len);
        put_str(out, &self.channel);
        for field in [
            &self.session_id,
            &self.correlation_id,
            &self.content_type,
            &self.message_id,
        ] {
            match field {
                None => out.push(0),
                Some(text) => {
                    out.push(1);
                    put_str(out, text);
                }
            }
        }
        put_u32(out, self.properties.len());
        for (key, value) in &self.properties {
            put_str(out, key);
            put_str(out, value);
        }
        Ok(())
    }
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_u32(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

/// Every length written is at most `MAX_CONTEXT_LEN`, checked before encoding, so it fits.
fn put_u32(out: &mut Vec<u8>, value: usize) {
    let value = u32::try_from(value).unwrap_or(u32::MAX);
    out.extend_from_slice(&value.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(context: &Context<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        context.encode_into(&mut out).unwrap();
        assert_eq!(out.len(), context.encoded_len());
        out
    }

    #[test]
    fn encoding_is_exactly_as_documented() {
        let context = Context::new("q")
            .with_session_id("s")
            .with_property("b", "2")
            .with_property("a", "1");
        let expected: Vec<u8> = [
            &[0, 0, 0, 1, b'q'][..],
            &[1, 0, 0, 0, 1, b's'],
            &[0],
            &[0],
            &[0],
            &[0, 0, 0, 2],
            &[0, 0, 0, 1, b'a', 0, 0, 0, 1, b'1'],
            &[0, 0, 0, 1, b'b', 0, 0, 0, 1, b'2'],
        ]
        .concat();
        assert_eq!(encode(&context), expected);
    }

    #[test]
    fn absent_and_empty_differ_and_fields_do_not_shift() {
        let absent = Context::new("q");
        let empty = Context::new("q").with_session_id("");
        assert_ne!(encode(&absent), encode(&empty));
        // The same text in two different fields encodes differently.
        let as_session = Context::new("q").with_session_id("x");
        let as_correlation = Context::new("q").with_correlation_id("x");
        assert_ne!(encode(&as_session), encode(&as_correlation));
        // A property boundary cannot be moved.
        let one = Context::new("q").with_property("ab", "c");
        let other = Context::new("q").with_property("a", "bc");
        assert_ne!(encode(&one), encode(&other));
    }

    #[test]
    fn keys_are_ordered_by_utf8_bytes_and_measured_in_bytes() {
        // U+FF61 sorts before U+1F600 in UTF-8 (EF.. < F0..) but after it in UTF-16
        // (FF61 > D83D): the encoding follows UTF-8.
        let context = Context::new("q")
            .with_property("\u{1F600}", "")
            .with_property("\u{FF61}", "é");
        let encoded = encode(&context);
        let first = [0, 0, 0, 3, 0xEF, 0xBD, 0xA1, 0, 0, 0, 2, 0xC3, 0xA9];
        let second = [0, 0, 0, 4, 0xF0, 0x9F, 0x98, 0x80, 0, 0, 0, 0];
        assert_eq!(
            &encoded[encoded.len() - 25..],
            [&first[..], &second].concat()
        );
    }

    #[test]
    fn duplicate_keys_from_a_transport_are_refused() {
        let pairs = [("a", "1"), ("b", "2"), ("a", "3")];
        let error = Context::new("q").try_with_properties(pairs).unwrap_err();
        assert!(matches!(error, CryptoError::InvalidContext(_)), "{error}");
        let unique = Context::new("q")
            .try_with_properties([("", "empty key"), ("b", "2")])
            .unwrap();
        assert_eq!(unique.properties().len(), 2);
    }

    #[test]
    fn bad_contexts_are_errors() {
        let mut out = Vec::new();
        let error = Context::new("").encode_into(&mut out).unwrap_err();
        assert!(matches!(error, CryptoError::InvalidContext(_)));
        let huge = Context::new("q").with_property("k", "v".repeat(MAX_CONTEXT_LEN));
        let error = huge.encode_into(&mut out).unwrap_err();
        assert!(
            matches!(
                error,
                CryptoError::TooLarge {
                    what: "context",
                    ..
                }
            ),
            "{error}"
        );
    }
}
