//! Batch sends: per-entry results, splitting.

use std::time::Duration;

use queue_core::{ErrorKind, Message};

use crate::fixture::{Fixture, QueueSpec};
use crate::runner::Outcome;
use crate::support::{setup, text};

/// One oversized entry fails alone with `MessageTooLarge`; the others are delivered.
pub async fn batch_with_an_oversized_entry_partly_fails(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    let limit = s.provider.capabilities().max_message_bytes;
    let batch = vec![
        Message::new("first"),
        Message::new(vec![b'x'; limit + 1]),
        Message::new("third"),
    ];
    let results = s.provider.send_batch(&s.queue, batch).await.unwrap();
    assert_eq!(results.len(), 3, "one result per message");
    assert!(results[0].is_ok() && results[2].is_ok());
    let error = results[1].as_ref().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::MessageTooLarge, "{error}");
    let received = s.receive_up_to(2, Duration::from_secs(10)).await;
    let mut bodies: Vec<String> = received.iter().map(text).collect();
    bodies.sort();
    assert_eq!(bodies, ["first", "third"]);
    s.assert_empty().await;
    Outcome::Passed
}

/// A batch larger than the provider's batch limit is split; every message arrives.
pub async fn large_batches_are_split(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    let count = s.provider.capabilities().max_batch_messages * 2 + 1;
    let batch = (0..count)
        .map(|index| Message::new(format!("m{index}")))
        .collect();
    let results = s.provider.send_batch(&s.queue, batch).await.unwrap();
    assert_eq!(results.len(), count);
    assert!(results.iter().all(Result::is_ok));
    let received = s.receive_up_to(count, Duration::from_secs(30)).await;
    assert_eq!(received.len(), count);
    Outcome::Passed
}
