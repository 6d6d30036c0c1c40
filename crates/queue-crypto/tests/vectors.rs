//! The known-answer vectors of docs/envelope-vectors.json: regenerated from their inputs and
//! compared byte for byte, then checked once more with raw `ring` following docs/envelope.md
//! step by step, so the document and the code cannot drift apart.
//!
//! To rewrite the file after a deliberate format change (a new version, never for v1):
//! `QUEUE_CRYPTO_WRITE_VECTORS=1 cargo test -p queue-crypto --test vectors -- --test-threads=1`.

// Test helpers outside #[test] functions may unwrap too: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use queue_crypto::{
    Context, Key, KeyId, KeyMaterial, KeyState, Keyset, Sealer, Suite, TAG_LEN, open, peek_header,
};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use serde::{Deserialize, Serialize};
use support::{FixedClock, ScriptedSalts, millis};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct VectorFile {
    description: String,
    version: u8,
    vectors: Vec<Vector>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Vector {
    name: String,
    suite: u8,
    key_id: String,
    /// The 32-byte master key, hex.
    key: String,
    /// The 32-byte envelope id (HKDF salt), hex.
    envelope_id: String,
    sealed_at_ms: u64,
    not_before_ms: Option<u64>,
    context: VectorContext,
    /// The canonical context encoding, hex (derived from `context`; given to help implementers).
    context_encoding: String,
    plaintext: String,
    /// The AEAD message key, hex (intermediate value, for implementers).
    message_key: String,
    /// The key commitment, hex (also inside the envelope).
    commitment: String,
    envelope: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct VectorContext {
    channel: String,
    session_id: Option<String>,
    correlation_id: Option<String>,
    content_type: Option<String>,
    message_id: Option<String>,
    properties: BTreeMap<String, String>,
}

impl VectorContext {
    fn to_context(&self) -> Context<'_> {
        let mut context = Context::new(&self.channel).with_properties(self.properties.clone());
        if let Some(value) = &self.session_id {
            context = context.with_session_id(value);
        }
        if let Some(value) = &self.correlation_id {
            context = context.with_correlation_id(value);
        }
        if let Some(value) = &self.content_type {
            context = context.with_content_type(value);
        }
        if let Some(value) = &self.message_id {
            context = context.with_message_id(value);
        }
        context
    }

    /// The encoding as docs/envelope.md specifies it, written independently of the crate.
    fn encode(&self) -> Vec<u8> {
        fn put(out: &mut Vec<u8>, text: &str) {
            out.extend_from_slice(&(text.len() as u32).to_be_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        let mut out = Vec::new();
        put(&mut out, &self.channel);
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
                    put(&mut out, text);
                }
            }
        }
        out.extend_from_slice(&(self.properties.len() as u32).to_be_bytes());
        for (key, value) in &self.properties {
            put(&mut out, key);
            put(&mut out, value);
        }
        out
    }
}

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/envelope-vectors.json")
}

fn bytes(hex_text: &str) -> Vec<u8> {
    hex::decode(hex_text).unwrap()
}

fn array32(hex_text: &str) -> [u8; 32] {
    bytes(hex_text).try_into().unwrap()
}

/// The inputs of every vector; outputs are computed.
fn inputs() -> Vec<Vector> {
    let minimal = VectorContext {
        channel: "orders".into(),
        session_id: None,
        correlation_id: None,
        content_type: None,
        message_id: None,
        properties: BTreeMap::new(),
    };
    let full = VectorContext {
        channel: "pr-events".into(),
        session_id: Some("octo-org/widgets#42".into()),
        correlation_id: Some("delivery-72d3162e".into()),
        content_type: Some("application/json".into()),
        message_id: Some("3f1e8d8a-8c55-4b1e-9f0e-0d4c3a2b1c00".into()),
        properties: BTreeMap::from([
            ("action".into(), "opened".into()),
            ("event".into(), "pull_request".into()),
            ("empty".into(), String::new()),
        ]),
    };
    let long_plaintext: Vec<u8> = (0..1000_u32).map(|i| (i * 31 % 256) as u8).collect();
    let vector = |name: &str,
                  suite: Suite,
                  key_byte: u8,
                  salt_byte: u8,
                  not_before: Option<u64>,
                  context: &VectorContext,
                  plaintext: &[u8]| {
        let key: Vec<u8> = (0..32).map(|i| key_byte.wrapping_add(i)).collect();
        let salt: Vec<u8> = (0..32).map(|i| salt_byte ^ i).collect();
        Vector {
            name: name.into(),
            suite: suite.id(),
            key_id: if key_byte == 0x40 {
                "k".repeat(64)
            } else {
                format!("vector-key-{key_byte:02x}")
            },
            key: hex::encode(key),
            envelope_id: hex::encode(salt),
            sealed_at_ms: 1_795_000_000_000 + u64::from(salt_byte),
            not_before_ms: not_before,
            context: context.clone(),
            context_encoding: String::new(),
            plaintext: hex::encode(plaintext),
            message_key: String::new(),
            commitment: String::new(),
            envelope: String::new(),
        }
    };
    vec![
        vector(
            "AES-256-GCM, empty plaintext, channel only",
            Suite::Aes256Gcm,
            0x00,
            0xA0,
            None,
            &minimal,
            b"",
        ),
        vector(
            "AES-256-GCM, short plaintext, every context field",
            Suite::Aes256Gcm,
            0x10,
            0xA1,
            None,
            &full,
            b"{\"number\":42,\"action\":\"opened\"}",
        ),
        vector(
            "AES-256-GCM, 1000 bytes, not-before, 64-byte key id",
            Suite::Aes256Gcm,
            0x40,
            0xA2,
            Some(1_795_000_600_000),
            &full,
            &long_plaintext,
        ),
        vector(
            "ChaCha20-Poly1305, empty plaintext, channel only",
            Suite::ChaCha20Poly1305,
            0x20,
            0xB0,
            None,
            &minimal,
            b"",
        ),
        vector(
            "ChaCha20-Poly1305, short plaintext, every context field",
            Suite::ChaCha20Poly1305,
            0x30,
            0xB1,
            None,
            &full,
            b"{\"number\":42,\"action\":\"opened\"}",
        ),
        vector(
            "ChaCha20-Poly1305, 1000 bytes, not-before",
            Suite::ChaCha20Poly1305,
            0x30,
            0xB2,
            Some(1_795_000_600_000),
            &minimal,
            &long_plaintext,
        ),
    ]
}

/// Fills in the outputs of a vector with the crate.
fn compute(mut vector: Vector) -> Vector {
    let suite = Suite::from_id(vector.suite).unwrap();
    let keyset = Keyset::new([Key::new(
        KeyId::new(&vector.key_id).unwrap(),
        KeyMaterial::from_slice(&bytes(&vector.key)).unwrap(),
        KeyState::Primary,
    )])
    .unwrap();
    let sealer = Sealer::new()
        .with_suite(suite)
        .with_clock(Arc::new(FixedClock(millis(vector.sealed_at_ms))))
        .with_salt_source(Arc::new(ScriptedSalts::one(array32(&vector.envelope_id))));
    let context = vector.context.to_context();
    let plaintext = bytes(&vector.plaintext);
    let envelope = match vector.not_before_ms {
        None => sealer.seal(&keyset, &plaintext, &context),
        Some(ms) => sealer.seal_not_before(&keyset, &plaintext, &context, millis(ms)),
    }
    .unwrap();
    let header_len = peek_header(&envelope).unwrap().header_len;
    let (message_key, _) = derive(&vector);
    vector.context_encoding = hex::encode(vector.context.encode());
    vector.message_key = hex::encode(message_key);
    vector.commitment = hex::encode(&envelope[header_len - 32..header_len]);
    vector.envelope = hex::encode(&envelope);
    vector
}

/// docs/envelope.md, "Derivation", with raw ring.
fn derive(vector: &Vector) -> ([u8; 32], [u8; 32]) {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &bytes(&vector.envelope_id))
        .extract(&bytes(&vector.key));
    let suffix = [
        &[1, vector.suite, vector.key_id.len() as u8][..],
        vector.key_id.as_bytes(),
    ]
    .concat();
    let expand = |label: &[u8]| {
        let mut out = [0; 32];
        prk.expand(&[label, &suffix], Len32)
            .unwrap()
            .fill(&mut out)
            .unwrap();
        out
    };
    (
        expand(b"queue-runtime envelope v1 message key"),
        expand(b"queue-runtime envelope v1 key commitment"),
    )
}

#[test]
fn the_vectors_reproduce() {
    let generated = VectorFile {
        description: "Known-answer vectors of the queue-runtime message envelope, version 1 \
                      (docs/envelope.md). All byte strings are hex; times are milliseconds since \
                      the Unix epoch. message_key and context_encoding are intermediate values \
                      for implementers; envelope is the sealed output."
            .into(),
        version: 1,
        vectors: inputs().into_iter().map(compute).collect(),
    };
    if std::env::var_os("QUEUE_CRYPTO_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
        std::fs::write(path(), text).unwrap();
    }
    let stored: VectorFile =
        serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap();
    assert_eq!(stored.vectors.len(), generated.vectors.len());
    for (stored, generated) in stored.vectors.iter().zip(&generated.vectors) {
        assert_eq!(
            stored, generated,
            "vector {:?} no longer reproduces",
            stored.name
        );
    }
    assert_eq!(stored, generated);
}

#[test]
fn the_vectors_follow_the_document_with_raw_ring() {
    let stored: VectorFile =
        serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap();
    let suites = stored
        .vectors
        .iter()
        .map(|vector| vector.suite)
        .collect::<std::collections::HashSet<_>>();
    assert_eq!(suites.len(), 2, "both suites have vectors");
    for vector in &stored.vectors {
        let envelope = bytes(&vector.envelope);
        let (message_key, commitment) = derive(vector);
        assert_eq!(
            hex::encode(message_key),
            vector.message_key,
            "{}",
            vector.name
        );
        assert_eq!(
            hex::encode(commitment),
            vector.commitment,
            "{}",
            vector.name
        );
        assert_eq!(
            hex::encode(vector.context.encode()),
            vector.context_encoding
        );

        // The header, field by field.
        let mut header = vec![0xF5, b'Q', b'R', b'E', 1, vector.suite];
        header.push(u8::from(vector.not_before_ms.is_some()));
        header.push(vector.key_id.len() as u8);
        header.extend_from_slice(vector.key_id.as_bytes());
        header.extend_from_slice(&bytes(&vector.envelope_id));
        header.extend_from_slice(&vector.sealed_at_ms.to_be_bytes());
        if let Some(ms) = vector.not_before_ms {
            header.extend_from_slice(&ms.to_be_bytes());
        }
        header.extend_from_slice(&commitment);
        assert_eq!(&envelope[..header.len()], &header[..], "{}", vector.name);
        assert_eq!(
            envelope.len(),
            header.len() + vector.plaintext.len() / 2 + TAG_LEN
        );

        // The AEAD, with a zero nonce and AAD = header || context encoding.
        let algorithm = match vector.suite {
            1 => &ring::aead::AES_256_GCM,
            _ => &ring::aead::CHACHA20_POLY1305,
        };
        let key = LessSafeKey::new(UnboundKey::new(algorithm, &message_key).unwrap());
        let aad = [&header[..], &vector.context.encode()].concat();
        let mut in_out = envelope[header.len()..].to_vec();
        let plaintext = key
            .open_in_place(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(&aad),
                &mut in_out,
            )
            .unwrap();
        assert_eq!(hex::encode(plaintext), vector.plaintext, "{}", vector.name);

        // And the crate opens it.
        let keyset = Keyset::new([Key::new(
            KeyId::new(&vector.key_id).unwrap(),
            KeyMaterial::from_slice(&bytes(&vector.key)).unwrap(),
            KeyState::Active,
        )])
        .unwrap();
        let opened = open(&keyset, &envelope, &vector.context.to_context()).unwrap();
        assert_eq!(hex::encode(opened.plaintext()), vector.plaintext);
        assert_eq!(opened.sealed_at(), millis(vector.sealed_at_ms));
        assert_eq!(opened.not_before(), vector.not_before_ms.map(millis));
        assert_eq!(opened.envelope_id(), &array32(&vector.envelope_id));
    }
}
