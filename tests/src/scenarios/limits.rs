//! Bad input: oversized messages, invalid and missing names, invalid arguments.

use std::time::Duration;

use queue_core::{ErrorKind, Message, QueueName, ReceiveOptions};

use crate::fixture::{Fixture, QueueSpec};
use crate::runner::Outcome;
use crate::support::{assert_kind, setup};

/// A message over the limit fails with `MessageTooLarge`, carrying its size and the limit, and
/// nothing is sent.
pub async fn oversized_message_reports_size_and_limit(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    let limit = s.provider.capabilities().max_message_bytes;
    let message = Message::new(vec![0_u8; limit + 1]);
    let size = message.approximate_size();
    let error = s.provider.send(&s.queue, message).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::MessageTooLarge, "{error}");
    let reported = error.size_limit().expect("size and limit in the error");
    assert!(
        reported.size >= size.min(limit + 1),
        "reported size {}",
        reported.size
    );
    assert_eq!(reported.max, limit);
    s.assert_empty().await;
    // A message well inside the limit still goes through.
    let fits = Message::new(vec![0_u8; limit / 2]);
    s.provider.send(&s.queue, fits).await.unwrap();
    Outcome::Passed
}

/// Names that no provider accepts are refused with `InvalidInput` before any call, and the
/// provider applies its own rules.
pub async fn invalid_queue_names_are_rejected(fixture: &dyn Fixture) -> Outcome {
    let provider = fixture.provider();
    let too_long = "q".repeat(300);
    for bad in [
        "",
        "has space",
        "semi;colon",
        "../escape",
        too_long.as_str(),
        "tab\tname",
    ] {
        let error = QueueName::new(bad).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{bad:?}: {error}");
    }
    // Letters, digits, '-' and '_': what every broker accepts (SQS allows no '.' but .fifo).
    let fine = QueueName::new("orders-2024_v1").unwrap();
    provider.validate_queue_name(&fine).unwrap();
    Outcome::Passed
}

/// Operations on a queue that does not exist fail with `NotFound`.
pub async fn missing_queue_is_not_found(fixture: &dyn Fixture) -> Outcome {
    let Some(missing) = fixture.missing_queue() else {
        return Outcome::Skipped("the fixture cannot name a missing queue".into());
    };
    let provider = fixture.provider();
    assert_kind(
        provider.send(&missing, Message::new("lost?")).await,
        ErrorKind::NotFound,
        "send to a missing queue",
    );
    assert_kind(
        provider
            .receive(&missing, ReceiveOptions::new(1, Duration::from_millis(100)))
            .await,
        ErrorKind::NotFound,
        "receive from a missing queue",
    );
    Outcome::Passed
}

/// `max_messages` of zero is `InvalidInput`, not a silent empty result.
pub async fn zero_max_messages_is_invalid(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    assert_kind(
        s.provider
            .receive(&s.queue, ReceiveOptions::new(0, Duration::ZERO))
            .await,
        ErrorKind::InvalidInput,
        "receive of zero messages",
    );
    Outcome::Passed
}
