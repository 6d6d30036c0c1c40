//! Closing the provider.

use std::time::Duration;

use queue_core::{ErrorKind, Message, ReceiveOptions};

use crate::fixture::{Fixture, QueueSpec};
use crate::runner::Outcome;
use crate::support::{assert_kind, setup};

/// After `close`, calls fail with `Closed`; closing twice is fine.
pub async fn closed_provider_refuses_calls(fixture: &dyn Fixture) -> Outcome {
    let s = setup!(fixture, QueueSpec::default());
    s.provider.close().await.unwrap();
    s.provider.close().await.unwrap();
    assert_kind(
        s.provider.send(&s.queue, Message::new("after close")).await,
        ErrorKind::Closed,
        "send after close",
    );
    assert_kind(
        s.provider
            .receive(&s.queue, ReceiveOptions::new(1, Duration::from_millis(10)))
            .await,
        ErrorKind::Closed,
        "receive after close",
    );
    Outcome::Passed
}
