//! Settling: complete, abandon, lock expiry, lock renewal, lost locks.

use std::time::Duration;

use queue_core::{ErrorKind, QueueName, Receipt};

use crate::fixture::{Fixture, QueueSpec};
use crate::runner::Outcome;
use crate::support::{assert_kind, require, setup, text};

/// `abandon` makes the message available again, delivered with its count raised by one.
pub async fn abandon_redelivers_with_a_higher_count(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    s.send_text("try again").await;
    let first = s.receive_single(Duration::from_secs(10)).await;
    s.provider.abandon(&first.receipt, None).await.unwrap();
    let second = s.receive_single(Duration::from_secs(10)).await;
    assert_eq!(text(&second), "try again");
    assert_eq!(second.message_id(), first.message_id());
    assert_eq!(second.delivery_count(), first.delivery_count() + 1);
    s.provider.complete(&second.receipt).await.unwrap();
    Outcome::Passed
}

/// `abandon` with a delay keeps the message invisible for the delay, then delivers it.
pub async fn abandon_with_delay_hides_the_message_for_the_delay(fixture: &dyn Fixture) -> Outcome {
    require!(fixture.provider(), abandon_with_delay);
    let s = setup!(fixture, QueueSpec::default());
    s.send_text("later please").await;
    let first = s.receive_single(Duration::from_secs(10)).await;
    let delay = Duration::from_secs(4);
    s.provider
        .abandon(&first.receipt, Some(delay))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    assert!(s.receive_up_to(1, Duration::from_secs(2)).await.is_empty());
    let again = s.receive_single(delay + s.margin() * 2).await;
    assert!(started.elapsed() >= delay - Duration::from_millis(500));
    assert_eq!(again.delivery_count(), 2);
    Outcome::Passed
}

/// When a lock expires the message is delivered again with its count raised by one.
pub async fn lock_expiry_redelivers_with_a_higher_count(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    s.send_text("forgotten").await;
    let first = s.receive_single(Duration::from_secs(10)).await;
    assert!(
        s.receive_up_to(1, Duration::from_secs(1)).await.is_empty(),
        "a locked message is invisible"
    );
    tokio::time::sleep(s.past_lock()).await;
    let second = s.receive_single(Duration::from_secs(10)).await;
    assert_eq!(second.message_id(), first.message_id());
    assert_eq!(second.delivery_count(), 2);
    Outcome::Passed
}

/// A settle after the lock expired fails with `LockLost` and changes nothing.
pub async fn complete_after_lock_expiry_is_lock_lost(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    s.send_text("too late").await;
    let first = s.receive_single(Duration::from_secs(10)).await;
    tokio::time::sleep(s.past_lock()).await;
    let second = s.receive_single(Duration::from_secs(10)).await;
    let error = s.provider.complete(&first.receipt).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::LockLost, "{error}");
    assert!(error.is_lock_lost() && !error.is_transient());
    // The message is still there for the current holder.
    s.provider.complete(&second.receipt).await.unwrap();
    Outcome::Passed
}

/// Completing twice: the second settle fails with `LockLost`.
pub async fn complete_twice_is_lock_lost(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    s.send_text("once").await;
    let received = s.receive_single(Duration::from_secs(10)).await;
    s.provider.complete(&received.receipt).await.unwrap();
    assert_kind(
        s.provider.complete(&received.receipt).await,
        ErrorKind::LockLost,
        "second complete",
    );
    Outcome::Passed
}

/// Abandoning after the lock was lost fails with `LockLost`.
pub async fn abandon_after_lock_loss_is_lock_lost(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    s.send_text("gone").await;
    let received = s.receive_single(Duration::from_secs(10)).await;
    tokio::time::sleep(s.past_lock()).await;
    let again = s.receive_single(Duration::from_secs(10)).await;
    assert_kind(
        s.provider.abandon(&received.receipt, None).await,
        ErrorKind::LockLost,
        "abandon with a lost lock",
    );
    s.provider.complete(&again.receipt).await.unwrap();
    Outcome::Passed
}

/// `renew_lock` moves the deadline forward and keeps the message hidden past the first lock.
pub async fn renew_lock_keeps_the_message_hidden(fixture: &dyn Fixture) -> Outcome {
    require!(fixture.provider(), lock_renewal);
    let s = setup!(fixture, QueueSpec::default());
    s.send_text("long job").await;
    let received = s.receive_single(Duration::from_secs(10)).await;
    let half = s.spec.lock_duration / 2;
    tokio::time::sleep(half).await;
    let renewed_until = s.provider.renew_lock(&received.receipt).await.unwrap();
    assert!(
        renewed_until > received.locked_until,
        "the deadline moved forward"
    );
    // Past the first deadline, within the renewed one.
    tokio::time::sleep(half + Duration::from_millis(500)).await;
    assert!(
        s.receive_up_to(1, Duration::from_millis(500))
            .await
            .is_empty()
    );
    s.provider.complete(&received.receipt).await.unwrap();
    Outcome::Passed
}

/// A receipt made by another provider is refused with `InvalidInput`, not misread.
pub async fn foreign_receipts_are_refused(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    let foreign = Receipt::new(
        "someone-else",
        QueueName::new(s.queue.as_str()).unwrap(),
        None,
        42_u64,
    );
    assert_kind(
        s.provider.complete(&foreign).await,
        ErrorKind::InvalidInput,
        "complete with a foreign receipt",
    );
    Outcome::Passed
}
