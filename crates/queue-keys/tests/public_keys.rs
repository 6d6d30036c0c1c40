//! The public-key entries of the keyset document: the consumer's and the producer's documents,
//! exchanging public halves, rotation of recipient and sender keys, the producer-only rule, and
//! that no private key is ever printed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use queue_crypto::public::{self, Kem};
use queue_crypto::{Context, CryptoError, KeyId};
use queue_keys::{
    FileKeys, KeyError, KeyRing, KeyRingOptions, KeysetDocument, PublicKeyKind, Role, StaticKeys,
};

fn id(text: &str) -> KeyId {
    KeyId::new(text).unwrap()
}

/// A consumer (recipient key r1, trusting s1) and a producer (sealing to r1, signing with s1),
/// set up the way the keys tool does it: each generates its own secret, exports the public half,
/// the other imports it.
fn pair_of_documents(kem: Kem) -> (KeysetDocument, KeysetDocument) {
    let mut consumer = KeysetDocument::empty(Some(Role::Consumer));
    consumer.generate_recipient_key(id("r1"), kem).unwrap();
    let mut producer = KeysetDocument::empty(Some(Role::Producer));
    producer.generate_signing_key(id("s1")).unwrap();
    producer
        .import_public(&consumer.export_public().unwrap())
        .unwrap();
    consumer
        .import_public(&producer.export_public().unwrap())
        .unwrap();
    (consumer, producer)
}

fn seal(producer: &KeysetDocument, body: &[u8], context: &Context<'_>) -> Vec<u8> {
    let keys = producer.to_keys("producer").unwrap();
    public::seal(keys.producer().unwrap(), body, context).unwrap()
}

fn open(
    consumer: &KeysetDocument,
    envelope: &[u8],
    context: &Context<'_>,
) -> Result<Vec<u8>, CryptoError> {
    let keys = consumer.to_keys("consumer").unwrap();
    public::open(keys.consumer().unwrap(), envelope, context).map(|opened| opened.into_plaintext())
}

#[test]
fn a_producer_and_a_consumer_document_exchange_messages_through_json() {
    for kem in [Kem::X25519HkdfSha256, Kem::XWing] {
        let (consumer, producer) = pair_of_documents(kem);
        // Both go through their files' JSON form.
        let consumer = KeysetDocument::parse(&consumer.to_json().unwrap(), "c").unwrap();
        let producer = KeysetDocument::parse(&producer.to_json().unwrap(), "p").unwrap();
        assert_eq!(producer.role(), Some(Role::Producer));
        let context = Context::new("orders").with_message_id("m-1");
        let envelope = seal(&producer, b"order 1", &context);
        assert_eq!(open(&consumer, &envelope, &context).unwrap(), b"order 1");
        // The producer's keys hold nothing that opens.
        let producer_keys = producer.to_keys("p").unwrap();
        assert!(producer_keys.consumer().is_none() && producer_keys.shared().is_none());
        assert!(!producer_keys.has_recipient_private_key());
    }
}

#[test]
fn a_producer_document_never_holds_a_recipient_private_key() {
    let mut producer = KeysetDocument::empty(Some(Role::Producer));
    producer.generate_signing_key(id("s1")).unwrap();
    let error = producer
        .generate_recipient_key(id("r1"), Kem::default())
        .unwrap_err();
    assert!(error.to_string().contains("producer"), "{error}");
    assert!(
        producer
            .public_keys()
            .all(|entry| entry.id().as_str() != "r1")
    );

    // Written by hand into the file: the file is refused as a whole.
    let mut consumer = KeysetDocument::empty(None);
    consumer
        .generate_recipient_key(id("r1"), Kem::default())
        .unwrap();
    let text = String::from_utf8(consumer.to_json().unwrap().to_vec()).unwrap();
    let smuggled = text.replacen(
        "\"version\": 1,",
        "\"version\": 1,\n  \"role\": \"producer\",",
        1,
    );
    let error = KeysetDocument::parse(smuggled.as_bytes(), "file p.json").unwrap_err();
    assert!(
        matches!(&error, KeyError::Invalid { reason, .. } if reason.contains("no recipient private key")),
        "{error}"
    );

    // A consumer document holds no signing key.
    let mut consumer = KeysetDocument::empty(Some(Role::Consumer));
    assert!(consumer.generate_signing_key(id("s1")).is_err());

    // Secrets are generated where they are used, never imported.
    let mut producer = KeysetDocument::empty(Some(Role::Producer));
    assert!(
        producer
            .add_public_key(PublicKeyKind::RecipientKey, id("r1"), None, &[7; 32])
            .is_err()
    );
    // An export never carries a secret; an import refuses one.
    let mut other = KeysetDocument::empty(None);
    other.generate_signing_key(id("s9")).unwrap();
    assert!(producer.import_public(&other).is_err());
}

#[tokio::test]
async fn a_producer_only_ring_refuses_keys_that_can_open() {
    let (consumer, producer) = pair_of_documents(Kem::default());
    let options = KeyRingOptions::default().with_producer_only(true);

    let ring = KeyRing::with_options(
        Arc::new(StaticKeys::new(consumer.to_keys("c").unwrap())),
        options.clone(),
    );
    let error = ring.keys().await.unwrap_err();
    assert!(
        error.to_string().contains("recipient private key"),
        "{error}"
    );

    // A file that is fine at startup and gains a recipient key later: the last good keys stay.
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("producer.json");
    producer.write_file(&path).unwrap();
    let ring = KeyRing::with_options(Arc::new(FileKeys::new(&path)), options);
    assert!(ring.keys().await.unwrap().producer().is_some());
    let mut both = KeysetDocument::parse(&producer.to_json().unwrap(), "p").unwrap();
    let text = String::from_utf8(both.to_json().unwrap().to_vec()).unwrap();
    let unmarked = text.replace("\"role\": \"producer\",", "");
    both = KeysetDocument::parse(unmarked.as_bytes(), "p").unwrap();
    both.generate_recipient_key(id("r-smuggled"), Kem::default())
        .unwrap();
    both.write_file(&path).unwrap();
    let keys = ring.refresh().await.unwrap();
    assert!(!keys.has_recipient_private_key());
}

#[test]
fn recipient_keys_rotate_in_three_steps() {
    let (mut consumer, mut producer) = pair_of_documents(Kem::default());
    let context = Context::new("orders");
    let before = seal(&producer, b"sealed to r1", &context);

    // 1. The consumer adds r2 (opens, not yet published as primary); producers learn it.
    consumer
        .generate_recipient_key(id("r2"), Kem::XWing)
        .unwrap();
    producer
        .import_public(&consumer.export_public().unwrap())
        .unwrap();
    assert_eq!(
        producer
            .to_keys("p")
            .unwrap()
            .producer()
            .unwrap()
            .primary_recipient()
            .unwrap()
            .id()
            .as_str(),
        "r1"
    );
    // 2. r2 becomes primary on both sides (the producer by importing the consumer's new export).
    consumer.promote("r2").unwrap();
    let changed = producer
        .import_public(&consumer.export_public().unwrap())
        .unwrap();
    assert_eq!(changed.len(), 2, "r1 and r2 changed state: {changed:?}");
    let after = seal(&producer, b"sealed to r2", &context);
    assert_eq!(public::peek_header(&after).unwrap().recipient_key_id, "r2");
    assert_eq!(open(&consumer, &before, &context).unwrap(), b"sealed to r1");
    assert_eq!(open(&consumer, &after, &context).unwrap(), b"sealed to r2");
    // 3. r1 retired: what was sealed to it is refused.
    consumer.retire("r1").unwrap();
    assert_eq!(
        open(&consumer, &before, &context).unwrap_err(),
        CryptoError::RetiredKey("r1".into())
    );
    consumer.remove("r1").unwrap();
    assert!(matches!(
        open(&consumer, &before, &context).unwrap_err(),
        CryptoError::UnknownKeyId(_)
    ));
}

#[test]
fn sender_keys_rotate_in_three_steps() {
    let (mut consumer, mut producer) = pair_of_documents(Kem::default());
    let context = Context::new("orders");
    let old = seal(&producer, b"signed by s1", &context);

    // 1. The producer adds s2; consumers trust it before it signs anything.
    producer.generate_signing_key(id("s2")).unwrap();
    consumer
        .import_public(&producer.export_public().unwrap())
        .unwrap();
    // 2. s2 signs.
    producer.promote("s2").unwrap();
    let new = seal(&producer, b"signed by s2", &context);
    assert_eq!(public::peek_header(&new).unwrap().sender_key_id, "s2");
    assert_eq!(open(&consumer, &old, &context).unwrap(), b"signed by s1");
    assert_eq!(open(&consumer, &new, &context).unwrap(), b"signed by s2");
    // 3. The consumer retires s1: its signatures are refused.
    consumer.retire("s1").unwrap();
    assert_eq!(
        open(&consumer, &old, &context).unwrap_err(),
        CryptoError::RetiredSender("s1".into())
    );
    assert_eq!(open(&consumer, &new, &context).unwrap(), b"signed by s2");
}

#[tokio::test]
async fn a_sender_trusted_after_startup_is_found_by_a_forced_refresh() {
    let (consumer, producer) = pair_of_documents(Kem::default());
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("consumer.json");
    consumer.write_file(&path).unwrap();
    let ring = KeyRing::with_options(
        Arc::new(FileKeys::new(&path)),
        KeyRingOptions::default().with_refresh_interval(Duration::from_secs(3600)),
    );
    ring.keys().await.unwrap();

    // A second producer, trusted by editing the file while the consumer runs.
    let mut second = KeysetDocument::empty(Some(Role::Producer));
    second.generate_signing_key(id("s-second")).unwrap();
    second
        .import_public(&consumer.export_public().unwrap())
        .unwrap();
    let mut edited = KeysetDocument::read_file(&path).unwrap();
    edited
        .import_public(&second.export_public().unwrap())
        .unwrap();
    edited.write_file(&path).unwrap();

    let context = Context::new("orders");
    let envelope = seal(&second, b"from the second producer", &context);
    let opened = ring.open_public(&envelope, &context).await.unwrap();
    assert_eq!(opened.sender_key_id().as_str(), "s-second");
    assert_eq!(ring.fetch_count(), 2);

    // An untrusted sender stays untrusted (and is refused as such).
    let mut stranger = KeysetDocument::empty(Some(Role::Producer));
    stranger.generate_signing_key(id("s-stranger")).unwrap();
    stranger
        .import_public(&consumer.export_public().unwrap())
        .unwrap();
    let forged = seal(&stranger, b"forged", &context);
    assert_eq!(
        ring.open_public(&forged, &context).await.unwrap_err(),
        KeyError::Crypto(CryptoError::UntrustedSender("s-stranger".into()))
    );
    let _ = producer;
}

#[tokio::test]
async fn keys_without_a_recipient_key_open_nothing() {
    let (_consumer, producer) = pair_of_documents(Kem::default());
    let ring = KeyRing::new(Arc::new(StaticKeys::new(producer.to_keys("p").unwrap())));
    let context = Context::new("orders");
    let envelope = seal(&producer, b"secret", &context);
    assert_eq!(
        ring.open_public(&envelope, &context).await.unwrap_err(),
        KeyError::Crypto(CryptoError::UnknownKeyId("r1".into()))
    );
    // And no shared key either: version 1 opens nothing.
    assert!(matches!(
        ring.keyset().await.unwrap_err(),
        KeyError::Invalid { .. }
    ));
}

#[test]
fn private_keys_never_appear_in_debug_or_errors() {
    let (consumer, producer) = pair_of_documents(Kem::default());
    let secret_entries = [&consumer, &producer]
        .iter()
        .flat_map(|document| document.public_keys())
        .filter(|entry| entry.kind().is_secret())
        .count();
    assert_eq!(secret_entries, 2, "the recipient key and the signing key");
    let mut texts = Vec::new();
    for document in [&consumer, &producer] {
        let json = document.to_json().unwrap();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        for (list, field) in [("recipient_keys", "private_key"), ("signing_keys", "seed")] {
            for entry in value[list].as_array().into_iter().flatten() {
                texts.push(entry[field].as_str().unwrap().to_owned());
            }
        }
        let keys = document.to_keys("d").unwrap();
        let ring = KeyRing::new(Arc::new(StaticKeys::new(document.to_keys("d").unwrap())));
        let printed = format!(
            "{document:?} {keys:?} {ring:?} {:?} {:?}",
            keys.producer(),
            keys.consumer()
        );
        for secret in &texts {
            let bytes = STANDARD.decode(secret).unwrap();
            assert!(!printed.contains(&secret[..12]), "{printed}");
            assert!(!printed.contains(&hex::encode(&bytes)[..12]), "{printed}");
        }
        // A malformed file is reported by its place, never by quoting it.
        let broken = String::from_utf8(json.to_vec()).unwrap().replacen(
            "\"state\": \"primary\"",
            "\"state\": 7",
            1,
        );
        let error = KeysetDocument::parse(broken.as_bytes(), "file d.json").unwrap_err();
        for secret in &texts {
            assert!(!error.to_string().contains(&secret[..12]), "{error}");
        }
    }
    assert_eq!(texts.len(), 2);
}

#[test]
fn keys_describe_every_list_by_id_and_state() {
    let (mut consumer, producer) = pair_of_documents(Kem::default());
    consumer.add_generated(id("k1")).unwrap();
    assert_eq!(
        consumer.to_keys("consumer").unwrap().describe(),
        "shared: k1=primary; recipient: r1=primary; trusted senders: s1=primary"
    );
    assert_eq!(
        producer.to_keys("producer").unwrap().describe(),
        "recipient public: r1=primary; signing: s1=primary"
    );
}
