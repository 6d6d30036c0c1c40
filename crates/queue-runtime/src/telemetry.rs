//! Tracing and metrics conventions shared by the client and the processor: OpenTelemetry
//! messaging attribute names, how session ids appear, and (with the `opentelemetry` feature) the
//! trace context carried in a message property.
//!
//! Spans use the OpenTelemetry messaging semantic conventions as `tracing` field names
//! (`messaging.system`, `messaging.destination.name`, `messaging.operation.type`,
//! `messaging.message.id`, ...), so a `tracing-opentelemetry` layer exports them as attributes.
//! The metric names are listed in [docs/observability.md](../../../docs/observability.md).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram};
use parking_lot::RwLock;
use queue_core::{QueueName, SessionId};
use ring::hmac;
use ring::rand::SystemRandom;

/// Every metric queue-runtime records, by name: the one place that names them (labels are
/// documented beside each). docs/observability.md lists them for operators.
pub mod metric {
    /// Counter, labels `queue`, `encrypted` (`true`/`false`): messages sent.
    pub const MESSAGES_SENT: &str = "queue_messages_sent_total";
    /// Counter, labels `queue`, `encrypted`: messages received and handed over.
    pub const MESSAGES_RECEIVED: &str = "queue_messages_received_total";
    /// Counter, labels `queue`, `error_type`: refusals and crypto failures.
    pub const CRYPTO_ERRORS: &str = "queue_crypto_errors_total";
    /// Histogram (seconds), label `queue`: sealing one message.
    pub const CRYPTO_SEAL_DURATION: &str = "queue_crypto_seal_duration_seconds";
    /// Histogram (seconds), label `queue`: opening one message.
    pub const CRYPTO_OPEN_DURATION: &str = "queue_crypto_open_duration_seconds";
    /// Gauge (0/1), label `queue`: whether sends to the queue are sealed.
    pub const CRYPTO_ENABLED: &str = "queue_crypto_enabled";
    /// Counter, label `queue`: copies of a message in flight elsewhere, given back to wait.
    pub const REPLAY_IN_FLIGHT_DUPLICATES: &str = "queue_replay_in_flight_duplicates_total";
    /// Counter, labels `queue`, `operation`: failures of the replay store (Redis).
    pub const REPLAY_STORE_ERRORS: &str = "queue_replay_store_errors_total";
    /// Counter, label `queue`: messages handed over without the replay check because the store
    /// failed and the queue's policy fails open. Alert on it.
    pub const REPLAY_STORE_FAILED_OPEN: &str = "queue_replay_store_failed_open_total";
    /// Counter, labels `operation`, `kind`: provider calls retried after a transient error.
    pub const RETRIES: &str = "queue_retries_total";
    /// Gauge (0 closed, 1 half-open, 2 open), label `provider`: the circuit breaker's state.
    pub const CIRCUIT_STATE: &str = "queue_circuit_state";
    /// Counter, label `provider`: calls refused while the circuit was open.
    pub const CIRCUIT_REJECTED: &str = "queue_circuit_rejected_total";
    /// Counter, labels `queue`, `outcome`: messages the processor finished, by outcome.
    pub const PROCESSOR_MESSAGES: &str = "queue_processor_messages_total";
    /// Histogram (seconds), label `queue`: one handler call.
    pub const PROCESSOR_HANDLER_DURATION: &str = "queue_processor_handler_duration_seconds";
    /// Gauge, label `queue`: handlers running.
    pub const PROCESSOR_IN_FLIGHT: &str = "queue_processor_in_flight";
    /// Counter, labels `queue`, `result` (`ok`/`failed`): lock renewals.
    pub const PROCESSOR_LOCK_RENEWALS: &str = "queue_processor_lock_renewals_total";
    /// Counter, labels `queue`, `reason`: messages the processor dead-lettered, by reason.
    pub const PROCESSOR_DEAD_LETTERED: &str = "queue_processor_dead_lettered_total";
}

/// The handles of the metrics recorded on every message of one queue, resolved once: a message
/// then pays an atomic increment, not a label string and a registration.
#[derive(Debug)]
pub(crate) struct QueueMeters {
    /// `[plain, encrypted]`
    sent: [Counter; 2],
    /// `[plain, encrypted]`
    received: [Counter; 2],
    pub(crate) seal_duration: Histogram,
    pub(crate) open_duration: Histogram,
    pub(crate) crypto_enabled: Gauge,
}

impl QueueMeters {
    fn new(queue: &QueueName) -> Self {
        let queue = queue.to_string();
        let sent = |encrypted: &'static str| metrics::counter!(metric::MESSAGES_SENT, "queue" => queue.clone(), "encrypted" => encrypted);
        let received = |encrypted: &'static str| metrics::counter!(metric::MESSAGES_RECEIVED, "queue" => queue.clone(), "encrypted" => encrypted);
        QueueMeters {
            sent: [sent("false"), sent("true")],
            received: [received("false"), received("true")],
            seal_duration: metrics::histogram!(metric::CRYPTO_SEAL_DURATION, "queue" => queue.clone()),
            open_duration: metrics::histogram!(metric::CRYPTO_OPEN_DURATION, "queue" => queue.clone()),
            crypto_enabled: metrics::gauge!(metric::CRYPTO_ENABLED, "queue" => queue),
        }
    }

    /// Counts one message sent.
    pub(crate) fn count_sent(&self, encrypted: bool) {
        self.sent[usize::from(encrypted)].increment(1);
    }

    /// Counts one message received and handed over.
    pub(crate) fn count_received(&self, encrypted: bool) {
        self.received[usize::from(encrypted)].increment(1);
    }
}

/// [`QueueMeters`] by queue, resolved on first use and again whenever the installed recorder
/// changes (a recorder installed after the client was built, or a thread's local recorder), so
/// that caching never sends a metric to a recorder that no longer listens.
#[derive(Debug, Default)]
pub(crate) struct MeterCache {
    inner: RwLock<Cached>,
}

#[derive(Debug, Default)]
struct Cached {
    /// The address of the recorder the handles were registered with.
    recorder: usize,
    queues: HashMap<QueueName, Arc<QueueMeters>, BuildHasherDefault<NameHasher>>,
}

/// A multiply-rotate hash of queue names (FxHash's), for a table of at most
/// [`MAX_CACHED_QUEUES`] names the application itself chose: no untrusted keys, so none of
/// SipHash's cost for resisting them.
#[derive(Debug, Default, Clone, Copy)]
struct NameHasher(u64);

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0_u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &byte in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Past this many queues the cache starts over, so a client sending to ever new queue names
/// does not grow it without bound.
const MAX_CACHED_QUEUES: usize = 1024;

impl MeterCache {
    /// The meters of `queue`.
    pub(crate) fn queue(&self, queue: &QueueName) -> Arc<QueueMeters> {
        let recorder =
            metrics::with_recorder(|recorder| std::ptr::from_ref(recorder).cast::<()>() as usize);
        {
            let cached = self.inner.read();
            if cached.recorder == recorder
                && let Some(meters) = cached.queues.get(queue)
            {
                return Arc::clone(meters);
            }
        }
        let meters = Arc::new(QueueMeters::new(queue));
        let mut cached = self.inner.write();
        if cached.recorder != recorder || cached.queues.len() >= MAX_CACHED_QUEUES {
            cached.queues.clear();
            cached.recorder = recorder;
        }
        cached.queues.insert(queue.clone(), Arc::clone(&meters));
        meters
    }
}

/// The message property that carries the producer's W3C trace context.
pub const TRACEPARENT_PROPERTY: &str = "traceparent";
/// The message property that carries the producer's W3C trace state, when it has one.
pub const TRACESTATE_PROPERTY: &str = "tracestate";

/// The span of one operation on `queue`, with the OpenTelemetry messaging attributes.
/// `operation_type` is the convention's kind (`send`, `receive`, `process`, `settle`);
/// `operation` our name for the call. `messaging.message.id` and
/// `messaging.batch.message_count` are recorded when known.
pub(crate) fn operation_span(
    messaging_system: &'static str,
    operation_type: &'static str,
    operation: &'static str,
    queue: &QueueName,
) -> tracing::Span {
    let span_kind = match operation_type {
        "send" => "producer",
        "receive" | "process" => "consumer",
        _ => "client",
    };
    tracing::info_span!(
        "messaging",
        otel.name = %format_args!("{operation} {queue}"),
        otel.kind = span_kind,
        messaging.system = messaging_system,
        messaging.destination.name = %queue,
        messaging.operation.type = operation_type,
        messaging.operation.name = operation,
        messaging.message.id = tracing::field::Empty,
        messaging.batch.message_count = tracing::field::Empty,
        messaging.message.delivery_count = tracing::field::Empty,
        session = tracing::field::Empty,
    )
}

/// How session ids appear in logs, spans and metric labels. Session ids may carry private names
/// (a repository, a customer), so they can be replaced by a keyed hash: the same id always gives
/// the same hash under one key, and without the key the hash says nothing of the id.
#[derive(Clone, Default)]
pub struct SessionIdPrivacy {
    key: Option<Arc<hmac::Key>>,
}

impl fmt::Debug for SessionIdPrivacy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.key.is_some() {
            "SessionIdPrivacy(hashed)"
        } else {
            "SessionIdPrivacy(plain)"
        })
    }
}

impl SessionIdPrivacy {
    /// Session ids appear as they are (the default).
    pub fn plain() -> Self {
        SessionIdPrivacy { key: None }
    }

    /// Session ids appear as an HMAC-SHA256 under a key drawn at random for this process: hashes
    /// match within one process's logs, not across processes. `None` when the system random
    /// generator fails.
    pub fn hashed() -> Option<Self> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new()).ok()?;
        Some(SessionIdPrivacy {
            key: Some(Arc::new(key)),
        })
    }

    /// Session ids appear as an HMAC-SHA256 under `key`: give every instance the same key (kept
    /// secret, like any key) to correlate a session across their logs.
    pub fn hashed_with_key(key: &[u8]) -> Self {
        SessionIdPrivacy {
            key: Some(Arc::new(hmac::Key::new(hmac::HMAC_SHA256, key))),
        }
    }

    /// Whether ids are hashed.
    pub fn is_hashed(&self) -> bool {
        self.key.is_some()
    }

    /// The id as it may appear: itself, or `h:` and 16 hex digits of its keyed hash.
    pub fn display(&self, session_id: &SessionId) -> String {
        match &self.key {
            None => session_id.as_str().to_owned(),
            Some(key) => {
                let tag = hmac::sign(key, session_id.as_str().as_bytes());
                format!("h:{}", hex::encode(&tag.as_ref()[..8]))
            }
        }
    }
}

/// Trace context through message properties, over the global OpenTelemetry propagator (set one
/// with `opentelemetry::global::set_text_map_propagator`; the default propagates nothing).
#[cfg(feature = "opentelemetry")]
pub(crate) mod propagation {
    use std::collections::HashMap;

    use opentelemetry::propagation::{Extractor, Injector};
    use opentelemetry::trace::TraceContextExt;
    use queue_core::Message;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// Writes the context of the current span into the message's properties, unless the
    /// application set them itself.
    pub(crate) fn inject(message: &mut Message) {
        if message
            .properties()
            .get(super::TRACEPARENT_PROPERTY)
            .is_some()
        {
            return;
        }
        let context = tracing::Span::current().context();
        let mut fields = HashMap::new();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut Fields(&mut fields));
        });
        for (key, value) in fields {
            // A message already at its property limit goes without: tracing never fails a send.
            if let Err(error) = message.properties_mut().insert(key, value) {
                tracing::debug!(%error, "trace context not attached");
            }
        }
    }

    /// Links `span` to the producer's span whose context the message carries.
    pub(crate) fn link(span: &tracing::Span, message: &Message) {
        let context = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&Properties(message))
        });
        let producer = context.span().span_context().clone();
        if producer.is_valid() {
            span.add_link(producer);
        }
    }

    struct Fields<'a>(&'a mut HashMap<String, String>);

    impl Injector for Fields<'_> {
        fn set(&mut self, key: &str, value: String) {
            self.0.insert(key.to_owned(), value);
        }
    }

    struct Properties<'a>(&'a Message);

    impl Extractor for Properties<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.properties().get(key)
        }

        fn keys(&self) -> Vec<&str> {
            self.0.properties().iter().map(|(key, _)| key).collect()
        }
    }
}

/// Without the `opentelemetry` feature there is no trace context to carry.
#[cfg(not(feature = "opentelemetry"))]
pub(crate) mod propagation {
    use queue_core::Message;

    pub(crate) fn inject(_message: &mut Message) {}

    pub(crate) fn link(_span: &tracing::Span, _message: &Message) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_session_ids_are_stable_under_one_key_and_hide_the_id() {
        let id = SessionId::new("octo/private-repo#42").unwrap_or_else(|_| unreachable!());
        let privacy = SessionIdPrivacy::hashed_with_key(b"log key");
        let shown = privacy.display(&id);
        assert_eq!(shown, privacy.display(&id));
        assert!(shown.starts_with("h:") && shown.len() == 18, "{shown}");
        assert!(!shown.contains("octo"));
        assert_ne!(
            shown,
            SessionIdPrivacy::hashed_with_key(b"other").display(&id)
        );
        assert_eq!(SessionIdPrivacy::plain().display(&id), id.as_str());
        assert!(SessionIdPrivacy::hashed().is_some_and(|p| p.is_hashed()));
    }
}
