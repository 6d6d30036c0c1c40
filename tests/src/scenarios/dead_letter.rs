//! The dead-letter queue: explicit dead-lettering, the delivery limit, settling there.

use std::time::Duration;

use queue_core::{DeadLetterReason, PeekOptions, QueueProviderExt};

use crate::fixture::{Fixture, QueueSpec};
use crate::runner::Outcome;
use crate::support::{require, setup, text};

/// A dead-lettered message keeps its body and metadata and carries the reason and description.
pub async fn dead_letter_keeps_reason_and_message(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    let message = queue_core::Message::builder("bad input")
        .correlation_id("request-9")
        .property("kind", "order")
        .build()
        .unwrap();
    s.provider.send(&s.queue, message).await.unwrap();
    let received = s.receive_single(Duration::from_secs(10)).await;
    s.provider
        .dead_letter_with(
            &received.receipt,
            "ValidationFailed",
            "field `amount` is negative",
        )
        .await
        .unwrap();
    s.assert_empty().await;
    let dead = s.receive_dead_letters(1, Duration::from_secs(10)).await;
    assert_eq!(dead.len(), 1, "the message is in the dead-letter queue");
    let dead = &dead[0];
    assert_eq!(text(dead), "bad input");
    assert_eq!(dead.message_id(), received.message_id());
    assert_eq!(dead.message.correlation_id(), Some("request-9"));
    assert_eq!(dead.message.properties().get("kind"), Some("order"));
    let reason = dead.delivery.dead_letter.as_ref().expect("a reason");
    assert_eq!(reason.reason, "ValidationFailed");
    assert_eq!(reason.description, "field `amount` is negative");
    Outcome::Passed
}

/// A message delivered the maximum number of times goes to the dead-letter queue with reason
/// `MaxDeliveryCountExceeded` instead of a further delivery.
pub async fn max_delivery_count_moves_to_dead_letter(fixture: &dyn Fixture) -> Outcome {
    require!(fixture.provider(), max_delivery_count);
    let spec = QueueSpec {
        max_delivery_count: 3,
        ..QueueSpec::default()
    };
    let s = setup!(fixture, spec);
    s.send_text("poison").await;
    for attempt in 1..=3 {
        let received = s.receive_single(Duration::from_secs(10)).await;
        assert_eq!(received.delivery_count(), attempt);
        s.provider.abandon(&received.receipt, None).await.unwrap();
    }
    s.assert_empty().await;
    let dead = s.receive_dead_letters(1, Duration::from_secs(10)).await;
    assert_eq!(dead.len(), 1);
    let reason = dead[0].delivery.dead_letter.as_ref().expect("a reason");
    assert_eq!(reason.reason, DeadLetterReason::MAX_DELIVERY_COUNT_EXCEEDED);
    Outcome::Passed
}

/// A message received from the dead-letter queue can be completed, and is then gone.
pub async fn dead_lettered_messages_can_be_completed(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    s.send_text("inspect me").await;
    let received = s.receive_single(Duration::from_secs(10)).await;
    s.provider
        .dead_letter_with(&received.receipt, "Manual", "for inspection")
        .await
        .unwrap();
    let dead = s.receive_dead_letters(1, Duration::from_secs(10)).await;
    assert_eq!(dead.len(), 1);
    s.provider.complete(&dead[0].receipt).await.unwrap();
    tokio::time::sleep(s.past_lock()).await;
    assert!(s.receive_dead_letters(1, s.quiet_wait()).await.is_empty());
    Outcome::Passed
}

/// The dead-letter queue can be peeked, with reasons, without locking.
pub async fn dead_letter_queue_can_be_peeked(fixture: &dyn Fixture) -> Outcome {
    require!(fixture.provider(), peek);
    let s = setup!(fixture, QueueSpec::default());
    s.send_text("peek at me").await;
    let received = s.receive_single(Duration::from_secs(10)).await;
    s.provider
        .dead_letter_with(&received.receipt, "Manual", "peek test")
        .await
        .unwrap();
    let peeked = s
        .provider
        .peek(&s.queue, PeekOptions::new(10).dead_letter())
        .await
        .unwrap();
    assert_eq!(peeked.len(), 1);
    assert_eq!(peeked[0].message.body().as_ref(), b"peek at me");
    assert_eq!(
        peeked[0]
            .delivery
            .dead_letter
            .as_ref()
            .map(|r| r.reason.as_str()),
        Some("Manual")
    );
    // Still receivable: peeking did not lock it.
    assert_eq!(
        s.receive_dead_letters(1, Duration::from_secs(10))
            .await
            .len(),
        1
    );
    Outcome::Passed
}

/// The largest message a provider accepts can be dead-lettered with its reason, its body
/// intact: every provider keeps room for what dead-lettering adds, and a description too long
/// for that room is cut, ending with [`DeadLetterReason::TRUNCATED`].
pub async fn largest_accepted_message_is_dead_lettered_with_its_reason(
    fixture: &dyn Fixture,
) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    // The error of a message just over the declared limit says how much over it is, as the
    // provider counts it (a queue may also have its own, lower, limit).
    let declared = s.provider.capabilities().max_message_bytes;
    let probe = queue_core::Message::new(vec![b'x'; declared + 1]);
    let over = s
        .provider
        .send(&s.queue, probe)
        .await
        .unwrap_err()
        .size_limit()
        .expect("size and limit in the error");
    let largest_body = declared + 1 - (over.size - over.max);
    let largest = queue_core::Message::new(vec![b'x'; largest_body]);
    s.provider.send(&s.queue, largest).await.unwrap();
    let one_more = queue_core::Message::new(vec![b'x'; largest_body + 1]);
    let refused = s.provider.send(&s.queue, one_more).await.unwrap_err();
    assert_eq!(
        refused.kind(),
        queue_core::ErrorKind::MessageTooLarge,
        "{refused}"
    );

    let received = s.receive_single(Duration::from_secs(30)).await;
    assert_eq!(received.body().len(), largest_body);
    let reason = "r".repeat(queue_core::MAX_DEAD_LETTER_REASON_LEN);
    let description = "why \"it\" failed; ".repeat(400);
    s.provider
        .dead_letter_with(&received.receipt, &reason, &description)
        .await
        .unwrap();
    s.assert_empty().await;
    let dead = s.receive_dead_letters(1, Duration::from_secs(30)).await;
    assert_eq!(dead.len(), 1, "the message is in the dead-letter queue");
    assert_eq!(dead[0].body().len(), largest_body, "its body intact");
    assert!(dead[0].body().iter().all(|byte| *byte == b'x'));
    let stored = dead[0].delivery.dead_letter.as_ref().expect("a reason");
    assert_eq!(stored.reason, reason, "the reason whole");
    let kept = stored
        .description
        .strip_suffix(DeadLetterReason::TRUNCATED)
        .expect("the description cut, and marked as cut");
    assert!(description.starts_with(kept), "a prefix of the description");
    Outcome::Passed
}
