//! Peeking: reading without locking.

use std::time::Duration;

use queue_core::PeekOptions;

use crate::fixture::{Fixture, QueueSpec};
use crate::runner::Outcome;
use crate::support::{require, setup, text};

/// Peeked messages stay available, in sequence order, and peeking does not raise the delivery
/// count.
pub async fn peek_does_not_lock_or_count(fixture: &dyn Fixture) -> Outcome {
    require!(fixture.provider(), peek);
    let s = setup!(fixture, QueueSpec::default());
    s.send_text("one").await;
    s.send_text("two").await;
    for _ in 0..2 {
        let peeked = s
            .provider
            .peek(&s.queue, PeekOptions::new(10))
            .await
            .unwrap();
        let bodies: Vec<&[u8]> = peeked.iter().map(|m| m.message.body().as_ref()).collect();
        assert_eq!(bodies, [b"one".as_slice(), b"two".as_slice()]);
    }
    let received = s.receive_up_to(2, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 2, "peeked messages are still available");
    assert!(received.iter().all(|m| m.delivery_count() == 1));
    let mut bodies: Vec<String> = received.iter().map(text).collect();
    bodies.sort();
    assert_eq!(bodies, ["one", "two"]);
    Outcome::Passed
}
