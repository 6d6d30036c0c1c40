//! Public-key mode through the secure client over the embedded broker: producers seal to the
//! consumers' public key and sign; the attacks of issue 20 (a producer reading, an untrusted
//! producer, a producer impersonating another, a shared-key holder forging) are refused and
//! dead-lettered with their reason; freshness, the replay guard and the three-step rotation of
//! recipient and sender keys work as with shared keys.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use queue_runtime::core::QueueProvider;
use queue_runtime::crypto::public::{self, Kem, SenderSigningKey};
use queue_runtime::crypto::{Context, KeyId, KeyState, envelope_version};
use queue_runtime::keys::{FileKeys, KeyRing, KeyRingOptions, KeysetDocument, Role, StaticKeys};
use queue_runtime::prelude::*;
use support::*;

fn id(text: &str) -> KeyId {
    KeyId::new(text).unwrap()
}

fn event(body: &str) -> Message {
    Message::builder(body.to_owned())
        .content_type("application/json")
        .property("tenant", "acme")
        .build()
        .unwrap()
}

/// A consumer's document (recipient key `r1`) and a producer's (signing key `producer_key`),
/// each holding the other's public half, as the keys tool makes them.
fn documents(kem: Kem, producer_key: &str) -> (KeysetDocument, KeysetDocument) {
    let mut consumer = KeysetDocument::empty(Some(Role::Consumer));
    consumer.generate_recipient_key(id("r1"), kem).unwrap();
    let mut producer = KeysetDocument::empty(Some(Role::Producer));
    producer.generate_signing_key(id(producer_key)).unwrap();
    producer
        .import_public(&consumer.export_public().unwrap())
        .unwrap();
    consumer
        .import_public(&producer.export_public().unwrap())
        .unwrap();
    (consumer, producer)
}

/// Another producer that the consumer has never heard of, sealing to the same recipient key.
fn stranger(consumer: &KeysetDocument, signing_key_id: &str) -> KeysetDocument {
    let mut stranger = KeysetDocument::empty(Some(Role::Producer));
    stranger.generate_signing_key(id(signing_key_id)).unwrap();
    stranger
        .import_public(&consumer.export_public().unwrap())
        .unwrap();
    stranger
}

fn public_policy() -> QueuePolicy {
    QueuePolicy::default().with_mode(SealMode::PublicKey)
}

/// Security over `document`'s keys with `events` and `prs` in public-key mode.
fn security(document: &KeysetDocument, producer_only: bool) -> Security {
    let ring = KeyRing::with_options(
        Arc::new(StaticKeys::new(document.to_keys("test").unwrap())),
        KeyRingOptions::default().with_producer_only(producer_only),
    );
    Security::new(ring)
        .with_queue_policy(queue("events"), public_policy())
        .with_queue_policy(queue("prs"), public_policy())
}

#[tokio::test(start_paused = true)]
async fn a_producer_seals_to_the_consumer_and_the_consumer_learns_who_sent_it() {
    for kem in [Kem::X25519HkdfSha256, Kem::XWing] {
        let broker = broker();
        let (consumer_doc, producer_doc) = documents(kem, "webhook-1");
        let producer = client_with(&broker, security(&producer_doc, true));
        let consumer = client_with(&broker, security(&consumer_doc, false));
        producer
            .send(&queue("events"), event(r#"{"order":1}"#))
            .await
            .unwrap();

        let raw = raw_messages(&broker, "events").await;
        assert_eq!(envelope_version(raw[0].body()), Some(2));
        assert!(!raw[0].body().windows(9).any(|w| w == br#"{"order":"#));

        let handed = drain(&consumer, "events").await;
        assert_eq!(handed.len(), 1);
        assert_eq!(handed[0].body().as_ref(), br#"{"order":1}"#);
        assert_eq!(handed[0].message.properties().get("tenant"), Some("acme"));
        let seal = handed[0].delivery.seal.as_ref().unwrap();
        assert_eq!(seal.key_id, "r1");
        assert_eq!(seal.sender_key_id.as_deref(), Some("webhook-1"));
        assert!(dead_letter_reasons(&broker, "events").await.is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn a_producer_key_cannot_open_anything() {
    let broker = broker();
    let (_consumer_doc, producer_doc) = documents(Kem::default(), "webhook-1");
    let producer = client_with(&broker, security(&producer_doc, true));
    producer
        .send(&queue("events"), event("card 4111"))
        .await
        .unwrap();
    // Not by peeking (what does not open is shown as it sits in the queue)...
    let peeked = producer
        .peek(&queue("events"), queue_runtime::core::PeekOptions::new(10))
        .await
        .unwrap();
    assert_eq!(peeked.len(), 1);
    assert!(peeked[0].delivery.seal.is_none());
    assert_eq!(envelope_version(peeked[0].message.body()), Some(2));
    // ... nor by receiving: the producer holds no recipient key, the message is refused.
    assert_all_refused(&producer, &broker, "events", &["rejected: key"]).await;

    // And a producer's configuration cannot be given the consumer's key behind its back.
    let (consumer_doc, _) = documents(Kem::default(), "webhook-1");
    let smuggled = client_with(&broker, security(&consumer_doc, true));
    let error = smuggled
        .send(&queue("events"), event("x"))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("recipient private key"),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_untrusted_producer_is_refused_and_dead_lettered() {
    let broker = broker();
    let (consumer_doc, _producer_doc) = documents(Kem::default(), "webhook-1");
    let consumer = client_with(&broker, security(&consumer_doc, false));
    let intruder = client_with(
        &broker,
        security(&stranger(&consumer_doc, "intruder-1"), true),
    );
    intruder
        .send(&queue("events"), event("refund 1000"))
        .await
        .unwrap();
    assert_all_refused(&consumer, &broker, "events", &["rejected: authentication"]).await;
}

#[tokio::test(start_paused = true)]
async fn a_producer_impersonating_another_is_refused() {
    let broker = broker();
    let (consumer_doc, _producer_doc) = documents(Kem::default(), "webhook-1");
    let consumer = client_with(&broker, security(&consumer_doc, false));
    // Its own signing key, under the trusted producer's key id.
    let impostor_doc = stranger(&consumer_doc, "webhook-1");
    let impostor = client_with(&broker, security(&impostor_doc, true));
    impostor
        .send(&queue("events"), event("refund 1000"))
        .await
        .unwrap();
    // The same through the crypto API directly, on a session queue, to be sure the claim is
    // the one in the header.
    let keys = impostor_doc.to_keys("impostor").unwrap();
    let forged_signer = SenderSigningKey::generate(id("webhook-1"), KeyState::Primary).unwrap();
    let producer_keys = public::ProducerKeyset::new(
        keys.producer().unwrap().recipients().cloned(),
        [forged_signer],
    )
    .unwrap();
    let message = Message::builder("refund 2000")
        .session_id("s-1")
        .build()
        .unwrap();
    let context = Context::new("prs")
        .with_message_id(message.message_id().as_str())
        .with_session_id("s-1");
    let envelope = public::seal(&producer_keys, message.body(), &context).unwrap();
    assert_eq!(
        public::peek_header(&envelope).unwrap().sender_key_id,
        "webhook-1"
    );
    let mut forged = message.clone();
    forged.set_body(envelope);
    broker.send(&queue("prs"), forged).await.unwrap();

    assert_all_refused(&consumer, &broker, "events", &["rejected: authentication"]).await;
    let session = consumer
        .accept_named_session(
            &queue("prs"),
            &SessionId::new("s-1").unwrap(),
            Duration::ZERO,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        session
            .receive(10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    session.close().await.unwrap();
    assert_eq!(
        dead_letter_reasons(&broker, "prs").await,
        ["rejected: authentication"]
    );
}

/// One consumer opens both versions, chosen by the envelope's version byte: version 1 on its
/// shared-key queue, version 2 on any queue (the migration path: producers switch first); but a
/// public-key queue refuses version 1, which anyone holding the shared key could have sealed.
#[tokio::test(start_paused = true)]
async fn both_versions_open_side_by_side_but_a_public_key_queue_refuses_shared_key_envelopes() {
    let broker = broker();
    let (mut consumer_doc, producer_doc) = documents(Kem::default(), "webhook-1");
    consumer_doc.add_generated(id("k1")).unwrap();
    let shared = consumer_doc.keyset().unwrap().get("k1").unwrap();
    let holder = client(&broker, keyset([copy_key(shared, KeyState::Primary)]));
    let consumer = client_with(&broker, security(&consumer_doc, false));
    let producer = client_with(
        &broker,
        security(&producer_doc, true).with_queue_policy(queue("audit"), public_policy()),
    );

    holder
        .send(&queue("audit"), event("v1 on audit"))
        .await
        .unwrap();
    producer
        .send(&queue("audit"), event("v2 on audit"))
        .await
        .unwrap();
    let handed = drain(&consumer, "audit").await;
    let seen: Vec<(&[u8], Option<&str>)> = handed
        .iter()
        .map(|m| {
            (
                m.body().as_ref(),
                m.delivery.seal.as_ref().unwrap().sender_key_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (&b"v1 on audit"[..], None),
            (&b"v2 on audit"[..], Some("webhook-1"))
        ]
    );

    holder
        .send(&queue("events"), event("forged as v1"))
        .await
        .unwrap();
    assert_all_refused(&consumer, &broker, "events", &["rejected: authentication"]).await;
}

#[tokio::test(start_paused = true)]
async fn a_retired_sender_is_refused_as_a_key_problem() {
    let broker = broker();
    let (mut consumer_doc, producer_doc) = documents(Kem::default(), "webhook-1");
    let producer = client_with(&broker, security(&producer_doc, true));
    producer
        .send(&queue("events"), event("late"))
        .await
        .unwrap();
    consumer_doc.retire("webhook-1").unwrap();
    // A consumer trusting nobody else: give it a second producer so the trust list is valid.
    let other = stranger(&consumer_doc, "webhook-2");
    consumer_doc
        .import_public(&other.export_public().unwrap())
        .unwrap();
    let consumer = client_with(&broker, security(&consumer_doc, false));
    assert_all_refused(&consumer, &broker, "events", &["rejected: key"]).await;
}

#[tokio::test(start_paused = true)]
async fn freshness_and_the_replay_guard_apply_unchanged() {
    let broker = broker();
    let (consumer_doc, producer_doc) = documents(Kem::default(), "webhook-1");
    let producer = client_with(&broker, security(&producer_doc, true));
    let consumer = client_with(&broker, security(&consumer_doc, false));
    producer
        .send(&queue("events"), event("pay 10"))
        .await
        .unwrap();
    let copy = raw_messages(&broker, "events").await.remove(0);
    assert_eq!(drain(&consumer, "events").await.len(), 1);
    // Re-sent within the freshness window, after the original was completed: a replay.
    tokio::time::advance(Duration::from_secs(30)).await;
    broker.send(&queue("events"), copy.clone()).await.unwrap();
    assert_all_refused(&consumer, &broker, "events", &["rejected: replay"]).await;
    // Re-sent after the window (5 min + 1 min of skew): stale, even for a fresh consumer.
    tokio::time::advance(Duration::from_secs(7 * 60)).await;
    broker.send(&queue("events"), copy).await.unwrap();
    let fresh_consumer = client_with(&broker, security(&consumer_doc, false));
    assert_all_refused(&fresh_consumer, &broker, "events", &["rejected: stale"]).await;
}

/// The three steps of docs/operations.md, through key files that are replaced while both sides
/// run: first the consumer's recipient key, then the producer's signing key, with messages in
/// flight at every step.
#[tokio::test]
async fn recipient_and_sender_keys_rotate_in_three_steps_through_key_files() {
    let directory = tempfile::tempdir().unwrap();
    let consumer_file = directory.path().join("consumer.json");
    let producer_file = directory.path().join("producer.json");
    let (mut consumer_doc, mut producer_doc) = documents(Kem::default(), "s1");
    consumer_doc.write_file(&consumer_file).unwrap();
    producer_doc.write_file(&producer_file).unwrap();
    let options = KeyRingOptions::default().with_refresh_interval(Duration::from_millis(100));
    let broker = broker();
    let side = |path: &std::path::Path, producer_only: bool| {
        Security::new(KeyRing::with_options(
            Arc::new(FileKeys::new(path)),
            options.clone().with_producer_only(producer_only),
        ))
        .with_queue_policy(queue("events"), public_policy())
    };
    let producer = client_with(&broker, side(&producer_file, true));
    let consumer = client_with(&broker, side(&consumer_file, false));
    let events = queue("events");
    let wait_for_refresh = || tokio::time::sleep(Duration::from_millis(250));
    let sealed_with = |handed: &[ReceivedMessage]| -> Vec<(String, String)> {
        handed
            .iter()
            .map(|m| {
                let seal = m.delivery.seal.as_ref().unwrap();
                (seal.key_id.clone(), seal.sender_key_id.clone().unwrap())
            })
            .collect()
    };

    producer.send(&events, event("r1, s1")).await.unwrap();
    // Recipient step 1: the consumer adds r2 (opens only); producers learn its public half.
    consumer_doc
        .generate_recipient_key(id("r2"), Kem::XWing)
        .unwrap();
    consumer_doc.write_file(&consumer_file).unwrap();
    producer_doc
        .import_public(&consumer_doc.export_public().unwrap())
        .unwrap();
    producer_doc.write_file(&producer_file).unwrap();
    wait_for_refresh().await;
    producer.send(&events, event("still r1")).await.unwrap();
    // Step 2: r2 becomes primary on both sides.
    consumer_doc.promote("r2").unwrap();
    consumer_doc.write_file(&consumer_file).unwrap();
    producer_doc
        .import_public(&consumer_doc.export_public().unwrap())
        .unwrap();
    producer_doc.write_file(&producer_file).unwrap();
    wait_for_refresh().await;
    producer.send(&events, event("r2")).await.unwrap();

    // Sender step 1: the producer adds s2; consumers trust it before it signs.
    producer_doc.generate_signing_key(id("s2")).unwrap();
    producer_doc.write_file(&producer_file).unwrap();
    consumer_doc
        .import_public(&producer_doc.export_public().unwrap())
        .unwrap();
    consumer_doc.write_file(&consumer_file).unwrap();
    wait_for_refresh().await;
    // Step 2: s2 signs.
    producer_doc.promote("s2").unwrap();
    producer_doc.write_file(&producer_file).unwrap();
    wait_for_refresh().await;
    producer.send(&events, event("r2, s2")).await.unwrap();
    assert_eq!(
        sealed_with(&drain(&consumer, "events").await),
        [
            ("r1".to_owned(), "s1".to_owned()),
            ("r1".to_owned(), "s1".to_owned()),
            ("r2".to_owned(), "s1".to_owned()),
            ("r2".to_owned(), "s2".to_owned()),
        ]
    );

    // Step 3, after the longest life of a message: r1 and s1 are retired on the consumer. A
    // straggler still sealing to r1 with s1 is refused.
    let straggler_doc = KeysetDocument::parse(&producer_doc.to_json().unwrap(), "p").unwrap();
    let mut straggler_doc = straggler_doc;
    straggler_doc.promote("r1").unwrap();
    straggler_doc.promote("s1").unwrap();
    consumer_doc.retire("r1").unwrap();
    consumer_doc.retire("s1").unwrap();
    consumer_doc.write_file(&consumer_file).unwrap();
    wait_for_refresh().await;
    let straggler = client_with(&broker, security(&straggler_doc, true));
    straggler
        .send(&events, event("r1, s1, too late"))
        .await
        .unwrap();
    producer
        .send(&events, event("r2, s2, after"))
        .await
        .unwrap();
    let handed = drain(&consumer, "events").await;
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].body().as_ref(), b"r2, s2, after");
    assert_eq!(
        dead_letter_reasons(&broker, "events").await,
        ["rejected: key"]
    );
}

/// A consumer of two public-key queues gives each its own trust list: the producer trusted on
/// `events` is refused on `audit`, whose only trusted producer is another.
#[tokio::test(start_paused = true)]
async fn each_queue_can_have_its_own_trust_list() {
    let broker = broker();
    let (events_consumer, events_producer) = documents(Kem::default(), "events-producer");
    let (audit_consumer, audit_producer) = documents(Kem::default(), "audit-producer");
    let ring = |document: &KeysetDocument| {
        KeyRing::new(Arc::new(StaticKeys::new(document.to_keys("test").unwrap())))
    };
    let consumer = client_with(
        &broker,
        Security::new(ring(&events_consumer))
            .with_queue_keys(queue("audit"), ring(&audit_consumer))
            .with_queue_policy(queue("events"), public_policy())
            .with_queue_policy(queue("audit"), public_policy()),
    );
    let events_side = client_with(&broker, security(&events_producer, true));
    let audit_side = client_with(
        &broker,
        security(&audit_producer, true).with_queue_policy(queue("audit"), public_policy()),
    );
    events_side
        .send(&queue("events"), event("to events"))
        .await
        .unwrap();
    audit_side
        .send(&queue("audit"), event("to audit"))
        .await
        .unwrap();
    assert_eq!(drain(&consumer, "events").await.len(), 1);
    assert_eq!(drain(&consumer, "audit").await.len(), 1);

    // The events producer seals to the audit queue's recipient key (public keys are not
    // secret) and signs with its own key: it is not on the audit queue's trust list.
    let audit_recipient = audit_consumer.to_keys("a").unwrap();
    let audit_public = audit_recipient
        .consumer()
        .unwrap()
        .primary_key_pair()
        .unwrap()
        .public_key();
    let events_keys = events_producer.to_keys("e").unwrap();
    let events_signer = events_keys.producer().unwrap().primary_signer().unwrap();
    let signer = SenderSigningKey::from_seed(
        events_signer.id().clone(),
        events_signer.expose_seed(),
        KeyState::Primary,
    )
    .unwrap();
    let producer_keys = public::ProducerKeyset::new([audit_public], [signer]).unwrap();
    let message = event("crossing over");
    let context = Context::new("audit")
        .with_message_id(message.message_id().as_str())
        .with_content_type("application/json")
        .with_property("tenant", "acme");
    let envelope = public::seal(&producer_keys, message.body(), &context).unwrap();
    let mut crossed = message.clone();
    crossed.set_body(envelope);
    broker.send(&queue("audit"), crossed).await.unwrap();
    assert_all_refused(&consumer, &broker, "audit", &["rejected: authentication"]).await;
}
