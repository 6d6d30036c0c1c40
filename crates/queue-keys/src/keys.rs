//! [`Keys`]: everything one keyset document holds, as the client seals and opens with it.

use std::fmt;
use std::sync::Arc;

use queue_crypto::Keyset;
use queue_crypto::public::{ConsumerKeyset, ProducerKeyset};

/// The keys a source hands out: the shared (version 1) keyset, the producer's public-key keyset
/// and the consumer's, each if the document has it (at least one of them).
///
/// `Debug` shows ids and states only.
pub struct Keys {
    shared: Option<Arc<Keyset>>,
    producer: Option<ProducerKeyset>,
    consumer: Option<ConsumerKeyset>,
}

impl Keys {
    /// Keys from their parts; at least one must be there.
    ///
    /// # Errors
    /// A plain-words reason when all three are missing.
    pub fn new(
        shared: Option<Keyset>,
        producer: Option<ProducerKeyset>,
        consumer: Option<ConsumerKeyset>,
    ) -> Result<Self, &'static str> {
        if shared.is_none() && producer.is_none() && consumer.is_none() {
            return Err("the document holds no keys");
        }
        Ok(Keys {
            shared: shared.map(Arc::new),
            producer,
            consumer,
        })
    }

    /// The shared-key keyset (version 1 envelopes), if any.
    pub fn shared(&self) -> Option<&Arc<Keyset>> {
        self.shared.as_ref()
    }

    /// What a producer seals public-key envelopes with, if any.
    pub fn producer(&self) -> Option<&ProducerKeyset> {
        self.producer.as_ref()
    }

    /// What a consumer opens public-key envelopes with, if any.
    pub fn consumer(&self) -> Option<&ConsumerKeyset> {
        self.consumer.as_ref()
    }

    /// Whether any recipient private key is here: a producer-only configuration refuses such
    /// keys.
    pub fn has_recipient_private_key(&self) -> bool {
        self.consumer
            .as_ref()
            .is_some_and(|consumer| consumer.key_pairs().next().is_some())
    }

    /// Ids and states of every key, for logs: `shared: k1=primary; recipient: r1=primary; ...`.
    pub fn describe(&self) -> String {
        fn section<I: fmt::Display, S: fmt::Display>(
            parts: &mut Vec<String>,
            name: &str,
            keys: impl Iterator<Item = (I, S)>,
        ) {
            let keys: Vec<String> = keys.map(|(id, state)| format!("{id}={state}")).collect();
            parts.push(format!("{name}: {}", keys.join(", ")));
        }
        let mut parts = Vec::new();
        if let Some(shared) = &self.shared {
            section(
                &mut parts,
                "shared",
                shared.keys().map(|k| (k.id(), k.state())),
            );
        }
        if let Some(producer) = &self.producer {
            let recipients = producer.recipients().map(|k| (k.id(), k.state()));
            section(&mut parts, "recipient public", recipients);
            section(
                &mut parts,
                "signing",
                producer.signers().map(|k| (k.id(), k.state())),
            );
        }
        if let Some(consumer) = &self.consumer {
            section(
                &mut parts,
                "recipient",
                consumer.key_pairs().map(|k| (k.id(), k.state())),
            );
            let trusted = consumer.trusted_senders().map(|k| (k.id(), k.state()));
            section(&mut parts, "trusted senders", trusted);
        }
        parts.join("; ")
    }
}

impl From<Keyset> for Keys {
    fn from(keyset: Keyset) -> Self {
        Keys {
            shared: Some(Arc::new(keyset)),
            producer: None,
            consumer: None,
        }
    }
}

impl From<Arc<Keyset>> for Keys {
    fn from(keyset: Arc<Keyset>) -> Self {
        Keys {
            shared: Some(keyset),
            producer: None,
            consumer: None,
        }
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("keys", &self.describe())
            .finish()
    }
}
