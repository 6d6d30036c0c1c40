//! The secure client over the embedded broker: round trips, rotation, and every attack the
//! issue lists, each injected straight through the provider as an attacker would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use queue_runtime::core::{QueueProvider, QueueProviderExt};
use queue_runtime::crypto::{Clock, Context, KeyId, KeyState, Sealer, looks_sealed};
use queue_runtime::keys::{FileKeys, KeyRing, KeyRingOptions, KeysetDocument, StaticKeys};
use queue_runtime::prelude::*;
use support::*;

fn event(body: &str) -> Message {
    Message::builder(body.to_owned())
        .content_type("application/json")
        .correlation_id("delivery-1")
        .property("tenant", "acme")
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn sealed_round_trip_hands_over_plaintext_and_authenticated_metadata() {
    let broker = broker();
    let k1 = key("k1", KeyState::Primary);
    let sender = client(&broker, keyset([copy_key(&k1, KeyState::Primary)]));
    let receiver = client(&broker, keyset([k1]));
    sender
        .send(&queue("events"), event(r#"{"n":1}"#))
        .await
        .unwrap();

    // On the queue: an envelope, not the body.
    let raw = raw_messages(&broker, "events").await;
    assert!(looks_sealed(raw[0].body()));
    assert!(!raw[0].body().windows(5).any(|w| w == br#"{"n":1"#));

    let handed = drain(&receiver, "events").await;
    assert_eq!(handed.len(), 1);
    let message = &handed[0];
    assert_eq!(message.body().as_ref(), br#"{"n":1}"#);
    assert_eq!(message.message.content_type(), Some("application/json"));
    assert_eq!(message.message.correlation_id(), Some("delivery-1"));
    assert_eq!(message.message.properties().get("tenant"), Some("acme"));
    let seal = message.delivery.seal.as_ref().expect("authenticated");
    assert_eq!(seal.key_id, "k1");
    assert!(dead_letter_reasons(&broker, "events").await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_receiver_with_the_wrong_keyset_refuses_and_dead_letters() {
    let broker = broker();
    let sender = client(&broker, keyset([key("k1", KeyState::Primary)]));
    // Same key id, other material: the key commitment fails.
    let wrong_material = client(&broker, keyset([key("k1", KeyState::Primary)]));
    // Other key id altogether.
    let wrong_id = client(&broker, keyset([key("k9", KeyState::Primary)]));
    sender.send(&queue("events"), event("a")).await.unwrap();
    assert!(drain(&wrong_material, "events").await.is_empty());
    sender.send(&queue("events"), event("b")).await.unwrap();
    assert_all_refused(
        &wrong_id,
        &broker,
        "events",
        &["rejected: authentication", "rejected: key"],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_unsealed_message_is_refused_under_reject_and_passed_under_allow() {
    let broker = broker();
    let keys = key("k1", KeyState::Primary);
    let strict = client(&broker, keyset([copy_key(&keys, KeyState::Primary)]));
    let lenient = client_with(
        &broker,
        Security::new(KeyRing::new(Arc::new(StaticKeys::new(keyset([keys]))))).with_queue_policy(
            queue("audit"),
            QueuePolicy::default()
                .with_seal(false)
                .with_unsealed(UnsealedPolicy::AllowWithAlert),
        ),
    );
    // The attacker writes plaintext straight to the queue.
    broker
        .send(&queue("events"), event("forged"))
        .await
        .unwrap();
    assert_all_refused(&strict, &broker, "events", &["rejected: unsealed"]).await;

    // A queue whose policy allows unsealed messages: sent unsealed, received as they are.
    lenient
        .send(&queue("audit"), event("legacy"))
        .await
        .unwrap();
    assert!(!looks_sealed(
        raw_messages(&broker, "audit").await[0].body()
    ));
    let handed = drain(&lenient, "audit").await;
    assert_eq!(handed[0].body().as_ref(), b"legacy");
    assert!(handed[0].delivery.seal.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_sealed_message_copied_to_another_queue_is_refused() {
    let broker = broker();
    let client = client(&broker, keyset([key("k1", KeyState::Primary)]));
    client
        .send(&queue("events"), event("pay 10"))
        .await
        .unwrap();
    let copy = raw_messages(&broker, "events").await.remove(0);
    broker.send(&queue("audit"), copy).await.unwrap();
    assert_all_refused(&client, &broker, "audit", &["rejected: authentication"]).await;
    // The original still opens where it belongs.
    assert_eq!(drain(&client, "events").await.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_message_moved_to_another_session_is_refused_and_the_session_goes_on() {
    let broker = broker();
    let client = client(&broker, keyset([key("k1", KeyState::Primary)]));
    let prs = queue("prs");
    let for_pr1 = Message::builder("merge pr-1")
        .session_id("pr-1")
        .build()
        .unwrap();
    client.send(&prs, for_pr1).await.unwrap();
    let original = raw_messages(&broker, "prs").await.remove(0);
    let moved = original.to_builder().session_id("pr-2").build().unwrap();
    broker.send(&prs, moved).await.unwrap();
    let after = Message::builder("comment on pr-2")
        .session_id("pr-2")
        .build()
        .unwrap();
    client.send(&prs, after).await.unwrap();

    let session = client
        .accept_named_session(&prs, &SessionId::new("pr-2").unwrap(), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    // The forgery is dead-lettered; the session's next message is handed over, in order.
    let handed = session.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].body().as_ref(), b"comment on pr-2");
    client.complete(&handed[0]).await.unwrap();
    session.close().await.unwrap();
    assert_eq!(
        dead_letter_reasons(&broker, "prs").await,
        ["rejected: authentication"]
    );
}

#[tokio::test(start_paused = true)]
async fn an_altered_property_is_refused() {
    let broker = broker();
    let client = client(&broker, keyset([key("k1", KeyState::Primary)]));
    client.send(&queue("events"), event("x")).await.unwrap();
    let original = raw_messages(&broker, "events").await.remove(0);
    // The attacker takes the original and sends an altered copy.
    let taken = broker
        .receive_one(&queue("events"), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    broker.complete(&taken.receipt).await.unwrap();
    for altered in [
        original
            .to_builder()
            .property("tenant", "evil")
            .build()
            .unwrap(),
        original
            .to_builder()
            .property("extra", "1")
            .build()
            .unwrap(),
        original
            .to_builder()
            .content_type("text/plain")
            .build()
            .unwrap(),
        original
            .to_builder()
            .correlation_id("delivery-2")
            .build()
            .unwrap(),
        original
            .to_builder()
            .message_id("other-id")
            .build()
            .unwrap(),
    ] {
        broker.send(&queue("events"), altered).await.unwrap();
    }
    assert_all_refused(&client, &broker, "events", &["rejected: authentication"; 5]).await;
}

#[tokio::test(start_paused = true)]
async fn a_copy_of_a_completed_message_is_refused_as_a_replay() {
    let broker = broker();
    let client = client(&broker, keyset([key("k1", KeyState::Primary)]));
    client
        .send(&queue("events"), event("pay 10"))
        .await
        .unwrap();
    let copy = raw_messages(&broker, "events").await.remove(0);
    assert_eq!(drain(&client, "events").await.len(), 1);
    // Re-sent within the freshness window, after the first copy was completed.
    tokio::time::advance(Duration::from_secs(30)).await;
    broker.send(&queue("events"), copy).await.unwrap();
    assert_all_refused(&client, &broker, "events", &["rejected: replay"]).await;
}

/// Issue 16: a copy of a message received in the same batch as its original (re-sent by an
/// attacker with a fresh deduplication id, or delivered twice by the broker) is not handled
/// twice: the first delivery claims the envelope, the other waits (given back with a delay,
/// not dead-lettered) and is refused as a replay once the original is completed.
#[tokio::test(start_paused = true)]
async fn a_copy_in_the_same_batch_waits_and_is_refused_once_the_original_completes() {
    let broker = broker();
    let client = client(&broker, keyset([key("k1", KeyState::Primary)]));
    client
        .send(&queue("events"), event("pay 10"))
        .await
        .unwrap();
    let copy = raw_messages(&broker, "events").await.remove(0);
    broker.send(&queue("events"), copy).await.unwrap();

    let batch = client
        .receive(&queue("events"), 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(batch.len(), 1, "one of the two copies is handed over");
    assert!(
        dead_letter_reasons(&broker, "events").await.is_empty(),
        "the other waits"
    );
    let waiting = client
        .receive(&queue("events"), 10, Duration::ZERO)
        .await
        .unwrap();
    assert!(
        waiting.is_empty(),
        "the copy is held back while the original is in flight"
    );
    client.complete(&batch[0]).await.unwrap();

    tokio::time::advance(Duration::from_secs(31)).await;
    assert_all_refused(&client, &broker, "events", &["rejected: replay"]).await;
}

/// The other order: a copy arrives while the original's handler runs (another receive), and
/// the original is given back instead of completed. Its claim is released, so the copy is
/// then handled, once; the original's redelivery is a replay of it.
#[tokio::test(start_paused = true)]
async fn a_copy_of_a_message_in_flight_waits_and_a_given_back_original_frees_it() {
    let broker = broker();
    let client = client(&broker, keyset([key("k1", KeyState::Primary)]));
    client
        .send(&queue("events"), event("pay 10"))
        .await
        .unwrap();
    let copy = raw_messages(&broker, "events").await.remove(0);
    let original = client
        .receive_one(&queue("events"), Duration::ZERO)
        .await
        .unwrap()
        .expect("the original");
    broker.send(&queue("events"), copy).await.unwrap();
    let during = client
        .receive(&queue("events"), 10, Duration::ZERO)
        .await
        .unwrap();
    assert!(
        during.is_empty(),
        "the copy waits while the original is held"
    );

    client.abandon(&original, None).await.unwrap();
    tokio::time::advance(Duration::from_secs(31)).await;
    let handed = drain(&client, "events").await;
    assert_eq!(handed.len(), 1, "handled once: {handed:?}");
    assert_eq!(handed[0].body().as_ref(), b"pay 10");
    // The other delivery, given back to wait while this one was handled, is now a replay.
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_all_refused(&client, &broker, "events", &["rejected: replay"]).await;
}

/// A consumer that dies holding a claim blocks nobody for longer than its lock: the claim ends
/// with it, and the redelivery is handled.
#[tokio::test(start_paused = true)]
async fn a_claim_ends_with_the_lock_of_a_consumer_that_died() {
    let broker = broker();
    let client = client(&broker, keyset([key("k1", KeyState::Primary)]));
    client
        .send(&queue("events"), event("pay 10"))
        .await
        .unwrap();
    let claimed = client
        .receive_one(&queue("events"), Duration::ZERO)
        .await
        .unwrap()
        .expect("received");
    // The consumer dies: the message is neither settled nor renewed.
    drop(claimed);
    tokio::time::advance(Duration::from_secs(6)).await;
    let handed = drain(&client, "events").await;
    assert_eq!(handed.len(), 1, "the redelivery is handled");
    assert_eq!(handed[0].delivery_count(), 2);
    assert!(dead_letter_reasons(&broker, "events").await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_copy_re_sent_after_the_window_is_refused_as_stale_even_by_a_fresh_process() {
    let broker = broker();
    let keys = key("k1", KeyState::Primary);
    let sender = client(&broker, keyset([copy_key(&keys, KeyState::Primary)]));
    sender
        .send(&queue("events"), event("pay 10"))
        .await
        .unwrap();
    let copy = raw_messages(&broker, "events").await.remove(0);
    assert_eq!(drain(&sender, "events").await.len(), 1);
    // Later than the window (5 min) plus skew (1 min); a consumer with an empty replay cache
    // (another process) still refuses it: the broker's enqueue time gives it away.
    tokio::time::advance(Duration::from_secs(7 * 60)).await;
    broker.send(&queue("events"), copy).await.unwrap();
    let fresh_process = client(&broker, keyset([keys]));
    assert_all_refused(&fresh_process, &broker, "events", &["rejected: stale"]).await;
}

#[tokio::test(start_paused = true)]
async fn a_backlog_and_redeliveries_do_not_age_a_message() {
    let broker = broker();
    let client = client(&broker, keyset([key("k1", KeyState::Primary)]));
    client.send(&queue("events"), event("slow")).await.unwrap();
    // An hour in the backlog.
    tokio::time::advance(Duration::from_secs(3600)).await;
    // Abandoned five times, and its lock left to expire five times.
    for round in 0..10 {
        let batch = client
            .receive(&queue("events"), 1, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(batch.len(), 1, "round {round}");
        if round % 2 == 0 {
            client.abandon(&batch[0], None).await.unwrap();
        } else {
            tokio::time::advance(Duration::from_secs(6)).await;
        }
    }
    let handed = drain(&client, "events").await;
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].delivery_count(), 11);
    assert!(dead_letter_reasons(&broker, "events").await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn scheduled_messages_are_judged_from_their_not_before_time() {
    let broker = broker();
    let sender = client(&broker, keyset([key("k1", KeyState::Primary)]));
    let clock = TokioClock::new();
    // Scheduled an hour ahead: delivered then, long after it was sealed, and accepted.
    let at = clock.now() + Duration::from_secs(3600);
    let scheduled = Message::builder("later")
        .scheduled_enqueue_time(at)
        .build()
        .unwrap();
    sender.send(&queue("events"), scheduled).await.unwrap();
    assert!(
        raw_messages(&broker, "events").await.is_empty(),
        "not visible yet"
    );
    tokio::time::advance(Duration::from_secs(3601)).await;
    let handed = drain(&sender, "events").await;
    assert_eq!(handed.len(), 1);
    assert!(
        handed[0]
            .delivery
            .seal
            .as_ref()
            .unwrap()
            .not_before
            .is_some()
    );

    // The bytes of a scheduled envelope (the operator sees scheduled messages), sent by an
    // attacker unscheduled, before their time: refused.
    let keys = key("k2", KeyState::Primary);
    let receiver = client(&broker, keyset([copy_key(&keys, KeyState::Primary)]));
    let not_before = clock.now() + Duration::from_secs(3600);
    let context = Context::new("events").with_message_id("scheduled-1");
    let envelope = Sealer::new()
        .with_clock(clock.clone())
        .seal_not_before(&keyset([keys]), b"later", &context, not_before)
        .unwrap();
    let early = Message::builder(envelope)
        .message_id("scheduled-1")
        .build()
        .unwrap();
    broker.send(&queue("events"), early).await.unwrap();
    assert_all_refused(&receiver, &broker, "events", &["rejected: stale"]).await;
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_forged_key_ids_never_reaches_the_key_source() {
    let broker = broker();
    let ring = Arc::new(KeyRing::new(Arc::new(StaticKeys::new(keyset([key(
        "real",
        KeyState::Primary,
    )])))));
    let receiver = client_with(&broker, Security::new(Arc::clone(&ring)));
    receiver
        .send(&queue("events"), event("real one"))
        .await
        .unwrap();
    // The forger knows the queue and the metadata, not the key: each envelope names a new key.
    for n in 0..300 {
        let forger = client(
            &broker,
            keyset([key(&format!("forged-{n}"), KeyState::Primary)]),
        );
        forger
            .send(&queue("events"), event("forged"))
            .await
            .unwrap();
    }
    let handed = drain(&receiver, "events").await;
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].body().as_ref(), b"real one");
    let reasons = dead_letter_reasons(&broker, "events").await;
    assert_eq!(reasons.len(), 300);
    assert!(reasons.iter().all(|reason| reason == "rejected: key"));
    // One fetch to start, one forced refresh for the first unknown id; none per message.
    assert_eq!(ring.fetch_count(), 2);
}

#[tokio::test]
async fn rotation_in_three_phases_with_messages_in_flight_and_a_replaced_key_file() {
    let directory = tempfile::tempdir().unwrap();
    let receiver_file = directory.path().join("receiver-keys.json");
    let sender_file = directory.path().join("sender-keys.json");
    let mut document = KeysetDocument::generate(KeyId::new("2026-11").unwrap()).unwrap();
    document.write_file(&receiver_file).unwrap();
    document.write_file(&sender_file).unwrap();
    let options = KeyRingOptions::default().with_refresh_interval(Duration::from_millis(100));
    let broker = broker();
    let ring = |path: &std::path::Path| {
        Security::new(KeyRing::with_options(
            Arc::new(FileKeys::new(path)),
            options.clone(),
        ))
    };
    let sender = client_with(&broker, ring(&sender_file));
    let receiver = client_with(&broker, ring(&receiver_file));
    let events = queue("events");
    let wait_for_refresh = || tokio::time::sleep(Duration::from_millis(250));

    sender
        .send(&events, event("sealed under the old key"))
        .await
        .unwrap();

    // Phase 1: every receiver gets the new key as active (opens only).
    document
        .add_generated(KeyId::new("2026-12").unwrap())
        .unwrap();
    document.write_file(&receiver_file).unwrap();
    wait_for_refresh().await;
    sender
        .send(&events, event("still the old key"))
        .await
        .unwrap();

    // Phase 2: senders make it primary. Both keys' messages are in flight.
    document.promote("2026-12").unwrap();
    document.write_file(&sender_file).unwrap();
    document.write_file(&receiver_file).unwrap();
    wait_for_refresh().await;
    sender
        .send(&events, event("sealed under the new key"))
        .await
        .unwrap();
    let handed = drain(&receiver, "events").await;
    let keys: Vec<&str> = handed
        .iter()
        .map(|m| m.delivery.seal.as_ref().unwrap().key_id.as_str())
        .collect();
    assert_eq!(keys, ["2026-11", "2026-11", "2026-12"]);

    // Phase 3: after the longest life of a message, the old key is retired.
    sender
        .send(&events, event("new key, after retirement"))
        .await
        .unwrap();
    let old_only = KeysetDocument::parse(&document.to_json().unwrap(), "old").unwrap();
    document.retire("2026-11").unwrap();
    document.write_file(&sender_file).unwrap();
    document.write_file(&receiver_file).unwrap();
    wait_for_refresh().await;
    // A message still sealed under the old key (a straggler sender) is refused from now on.
    let mut straggler_doc = old_only;
    straggler_doc.promote("2026-11").unwrap();
    let straggler = client(&broker, straggler_doc.into_keyset().unwrap());
    straggler
        .send(&events, event("old key, too late"))
        .await
        .unwrap();
    let handed = drain(&receiver, "events").await;
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].body().as_ref(), b"new key, after retirement");
    assert_eq!(
        dead_letter_reasons(&broker, "events").await,
        ["rejected: key"]
    );
}

#[tokio::test(start_paused = true)]
async fn nothing_refused_is_lost_and_dead_letters_are_inspectable() {
    let broker = broker();
    let client = client(&broker, keyset([key("k1", KeyState::Primary)]));
    client.send(&queue("events"), event("good")).await.unwrap();
    broker
        .send(&queue("events"), event("forged"))
        .await
        .unwrap();
    assert_eq!(drain(&client, "events").await.len(), 1);
    // The refused message sits in the dead-letter queue as it arrived, marked unauthenticated.
    let dead = client
        .receive_dead_letters(&queue("events"), 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body().as_ref(), b"forged");
    assert!(dead[0].delivery.seal.is_none());
    assert_eq!(
        dead[0].delivery.dead_letter.as_ref().unwrap().reason,
        "rejected: unsealed"
    );
    assert_eq!(broker.queue_stats(&queue("events")).unwrap().active, 0);
}
