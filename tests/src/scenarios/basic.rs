//! Sending and receiving: what goes in comes out, once.

use std::time::{Duration, SystemTime};

use queue_core::Message;

use crate::fixture::{Fixture, QueueSpec};
use crate::runner::Outcome;
use crate::support::{setup, text};

/// `send` + `receive`: the body and every metadata field come back as sent, with delivery count 1
/// and the broker's enqueue time inside the send window.
pub async fn round_trip_keeps_body_and_every_field(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    let body: Vec<u8> = (0..=255).collect();
    let message = Message::builder(body.clone())
        .message_id("order-42")
        .correlation_id("request-7")
        .content_type("application/octet-stream")
        .property("tenant", "contoso")
        .property("attempt", "1")
        .time_to_live(Duration::from_secs(3600))
        .build()
        .unwrap();
    let before = SystemTime::now() - Duration::from_secs(5);
    s.provider.send(&s.queue, message).await.unwrap();
    let received = s.receive_single(Duration::from_secs(10)).await;
    let after = SystemTime::now() + Duration::from_secs(5);

    assert_eq!(received.body().as_ref(), body.as_slice());
    assert_eq!(received.message_id().as_str(), "order-42");
    assert_eq!(received.message.correlation_id(), Some("request-7"));
    assert_eq!(
        received.message.content_type(),
        Some("application/octet-stream")
    );
    assert_eq!(received.message.properties().get("tenant"), Some("contoso"));
    assert_eq!(received.message.properties().get("attempt"), Some("1"));
    assert_eq!(received.message.properties().len(), 2);
    assert_eq!(received.session_id(), None);
    assert_eq!(received.delivery_count(), 1);
    assert!(
        (before..after).contains(&received.enqueued_at()),
        "enqueued_at {:?} outside the send window",
        received.enqueued_at()
    );
    assert!(received.locked_until > received.enqueued_at());
    assert!(received.delivery.dead_letter.is_none());
    if s.provider.capabilities().time_to_live
        && let Some(expires_at) = received.delivery.expires_at
    {
        let ttl = expires_at
            .duration_since(received.enqueued_at())
            .unwrap_or_default();
        assert!(ttl <= Duration::from_secs(3600) && ttl > Duration::from_secs(3500));
    }
    if s.provider.capabilities().sequence_numbers {
        assert!(received.delivery.sequence_number.is_some());
    }
    s.provider.complete(&received.receipt).await.unwrap();
    Outcome::Passed
}

/// A message sent without an id gets a UUID v4, which `send` reports and the receiver sees.
pub async fn generated_message_ids_are_uuid_v4(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    let outcome = s.send_text("no id given").await;
    let id = uuid::Uuid::parse_str(outcome.message_id.as_str()).expect("a UUID");
    assert_eq!(id.get_version_num(), 4);
    let received = s.receive_single(Duration::from_secs(10)).await;
    assert_eq!(received.message_id(), &outcome.message_id);
    Outcome::Passed
}

/// A pinned message id is kept, and two messages with different ids stay two messages.
pub async fn pinned_message_id_is_kept(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    for id in ["pinned-1", "pinned-2"] {
        let message = Message::builder(id).message_id(id).build().unwrap();
        let outcome = s.provider.send(&s.queue, message).await.unwrap();
        assert_eq!(outcome.message_id.as_str(), id);
    }
    let received = s.receive_up_to(2, Duration::from_secs(10)).await;
    let mut ids: Vec<&str> = received.iter().map(|m| m.message_id().as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["pinned-1", "pinned-2"]);
    Outcome::Passed
}

/// `complete` removes the message: it is never delivered again.
pub async fn complete_removes_the_message(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    s.send_text("done once").await;
    let received = s.receive_single(Duration::from_secs(10)).await;
    s.provider.complete(&received.receipt).await.unwrap();
    tokio::time::sleep(s.past_lock()).await;
    s.assert_empty().await;
    Outcome::Passed
}

/// `complete_batch` settles each receipt as `complete` would: the fresh ones are removed, a
/// receipt settled before fails alone with `LockLost`.
pub async fn complete_batch_settles_each_receipt(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    let count = s.provider.capabilities().max_batch_messages.max(1) + 2;
    let batch = (0..count)
        .map(|index| Message::new(format!("m{index}")))
        .collect();
    for result in s.provider.send_batch(&s.queue, batch).await.unwrap() {
        result.unwrap();
    }
    let received = s.receive_up_to(count, Duration::from_secs(20)).await;
    assert_eq!(received.len(), count);
    s.provider.complete(&received[0].receipt).await.unwrap();
    let receipts: Vec<_> = received.iter().map(|m| m.receipt.clone()).collect();
    let results = s.provider.complete_batch(&receipts).await.unwrap();
    assert_eq!(results.len(), count, "one result per receipt");
    let error = results[0].as_ref().unwrap_err();
    assert_eq!(error.kind(), queue_core::ErrorKind::LockLost, "{error}");
    assert!(results[1..].iter().all(Result::is_ok), "{results:?}");
    tokio::time::sleep(s.past_lock()).await;
    s.assert_empty().await;
    Outcome::Passed
}

/// `receive` returns at most `max_messages`; the rest stay available.
pub async fn receive_respects_max_messages(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    for index in 0..5 {
        s.send_text(&format!("m{index}")).await;
    }
    let first = s
        .provider
        .receive(
            &s.queue,
            queue_core::ReceiveOptions::new(2, Duration::from_secs(10)),
        )
        .await
        .unwrap();
    assert!(!first.is_empty() && first.len() <= 2, "got {}", first.len());
    let rest = s
        .receive_up_to(5 - first.len(), Duration::from_secs(10))
        .await;
    assert_eq!(first.len() + rest.len(), 5);
    Outcome::Passed
}

/// On an empty queue `receive` waits for the whole wait, then returns an empty result (not an
/// error), and not much later.
pub async fn empty_receive_waits_then_returns_empty(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    let wait = Duration::from_secs(2);
    let started = tokio::time::Instant::now();
    let received = s
        .provider
        .receive(&s.queue, queue_core::ReceiveOptions::new(1, wait))
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(received.is_empty());
    assert!(
        waited >= wait - Duration::from_millis(100),
        "returned after {waited:?}"
    );
    assert!(waited <= wait + s.margin() * 2, "returned after {waited:?}");
    Outcome::Passed
}

/// A waiting `receive` returns as soon as a message arrives, well before its wait ends.
pub async fn waiting_receive_wakes_on_arrival(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    let provider = s.provider.clone();
    let queue = s.queue.clone();
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        provider
            .send(&queue, Message::new("wake up"))
            .await
            .unwrap();
    });
    let started = tokio::time::Instant::now();
    let received = s
        .provider
        .receive(
            &s.queue,
            queue_core::ReceiveOptions::new(1, Duration::from_secs(20)),
        )
        .await
        .unwrap();
    let waited = started.elapsed();
    sender.await.unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(text(&received[0]), "wake up");
    assert!(
        waited < Duration::from_secs(10),
        "woke only after {waited:?}"
    );
    Outcome::Passed
}

/// Sequence numbers, where the provider has them, grow in send order.
pub async fn sequence_numbers_increase(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    crate::support::require!(s.provider, sequence_numbers);
    // Some brokers number a message when it is sent (the send outcome says so), others only
    // when it is delivered (Service Bus answers a plain send with a bare accept): where the
    // send tells, the delivery must agree with it.
    let mut told = Vec::new();
    for index in 0..3 {
        told.push(s.send_text(&format!("m{index}")).await.sequence_number);
    }
    let told: Option<Vec<u64>> = told.into_iter().collect();
    if let Some(told) = &told {
        assert!(told.windows(2).all(|pair| pair[0] < pair[1]), "{told:?}");
    }
    let peeked = s
        .provider
        .peek(&s.queue, queue_core::PeekOptions::new(3))
        .await;
    if let Ok(peeked) = peeked {
        let numbers: Vec<u64> = peeked
            .iter()
            .filter_map(|m| m.delivery.sequence_number)
            .collect();
        assert_eq!(numbers.len(), 3, "every peeked message has a number");
        assert!(
            numbers.windows(2).all(|pair| pair[0] < pair[1]),
            "{numbers:?}"
        );
        if let Some(told) = &told {
            assert_eq!(&numbers, told);
        }
    }
    let received = s.receive_up_to(3, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 3);
    let mut delivered: Vec<(String, u64)> = received
        .iter()
        .map(|m| {
            (
                text(m),
                m.delivery
                    .sequence_number
                    .expect("a delivered message has a number"),
            )
        })
        .collect();
    delivered.sort_by_key(|(_, number)| *number);
    let order: Vec<&str> = delivered.iter().map(|(body, _)| body.as_str()).collect();
    assert_eq!(order, ["m0", "m1", "m2"], "numbers follow the send order");
    if let Some(told) = &told {
        let numbers: Vec<u64> = delivered.iter().map(|(_, number)| *number).collect();
        assert_eq!(&numbers, told);
    }
    for message in &received {
        s.provider.complete(&message.receipt).await.unwrap();
    }
    Outcome::Passed
}
