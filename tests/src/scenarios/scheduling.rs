//! Scheduled delivery and time to live.

use std::time::{Duration, SystemTime};

use queue_core::{DeadLetterReason, ErrorKind, Message};

use crate::fixture::{Fixture, QueueSpec};
use crate::runner::Outcome;
use crate::support::{assert_kind, require, setup, text};

/// A scheduled message stays invisible until its time, then is delivered.
pub async fn scheduled_message_is_invisible_until_due(fixture: &dyn Fixture) -> Outcome {
    require!(fixture.provider(), scheduling);
    let s = setup!(fixture, QueueSpec::default());
    let delay = Duration::from_secs(5);
    let message = Message::builder("on time")
        .scheduled_enqueue_time(SystemTime::now() + delay)
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    s.provider.send(&s.queue, message).await.unwrap();
    assert!(s.receive_up_to(1, Duration::from_secs(2)).await.is_empty());
    let received = s.receive_single(delay + s.margin() * 3).await;
    assert_eq!(text(&received), "on time");
    assert!(started.elapsed() >= delay - Duration::from_secs(1));
    Outcome::Passed
}

/// A cancelled scheduled message is never delivered.
pub async fn cancel_scheduled_removes_the_message(fixture: &dyn Fixture) -> Outcome {
    require!(fixture.provider(), cancel_scheduled);
    let s = setup!(fixture, QueueSpec::default());
    let message = Message::builder("cancelled")
        .delay(Duration::from_secs(3))
        .build()
        .unwrap();
    let outcome = s.provider.send(&s.queue, message).await.unwrap();
    let sequence_number = outcome
        .sequence_number
        .expect("a scheduled send has a number");
    s.provider
        .cancel_scheduled(&s.queue, sequence_number)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3) + s.margin()).await;
    s.assert_empty().await;
    Outcome::Passed
}

/// Cancelling a sequence number that names no scheduled message fails with `NotFound`.
pub async fn cancel_unknown_sequence_number_is_not_found(fixture: &dyn Fixture) -> Outcome {
    require!(fixture.provider(), cancel_scheduled);
    let s = setup!(fixture, QueueSpec::default());
    assert_kind(
        s.provider.cancel_scheduled(&s.queue, 987_654_321).await,
        ErrorKind::NotFound,
        "cancel of an unknown sequence number",
    );
    Outcome::Passed
}

/// A message whose time to live passed is never delivered.
pub async fn expired_messages_are_never_delivered(fixture: &dyn Fixture) -> Outcome {
    require!(fixture.provider(), time_to_live);
    let s = setup!(fixture, QueueSpec::default());
    let message = Message::builder("short-lived")
        .time_to_live(Duration::from_secs(2))
        .build()
        .unwrap();
    s.provider.send(&s.queue, message).await.unwrap();
    s.send_text("long-lived").await;
    tokio::time::sleep(Duration::from_secs(2) + s.margin()).await;
    let received = s.receive_up_to(2, s.quiet_wait()).await;
    let bodies: Vec<String> = received.iter().map(text).collect();
    assert_eq!(bodies, ["long-lived"]);
    Outcome::Passed
}

/// With dead-lettering on expiration, an expired message lands in the dead-letter queue with
/// reason `TTLExpiredException`.
pub async fn expired_messages_are_dead_lettered_when_configured(fixture: &dyn Fixture) -> Outcome {
    require!(fixture.provider(), time_to_live);
    require!(fixture.provider(), native_dead_letter);
    let spec = QueueSpec {
        default_time_to_live: Some(Duration::from_secs(2)),
        dead_letter_on_expiration: true,
        ..QueueSpec::default()
    };
    let s = setup!(fixture, spec);
    s.send_text("expires").await;
    tokio::time::sleep(Duration::from_secs(2) + s.margin()).await;
    s.assert_empty().await;
    let dead = s.receive_dead_letters(1, Duration::from_secs(10)).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0]
            .delivery
            .dead_letter
            .as_ref()
            .map(|r| r.reason.as_str()),
        Some(DeadLetterReason::TTL_EXPIRED)
    );
    Outcome::Passed
}
