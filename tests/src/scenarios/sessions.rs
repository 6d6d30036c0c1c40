//! Sessions: order, exclusivity, locks, state.

use std::time::Duration;

use bytes::Bytes;
use queue_core::{ErrorKind, Message, QueueProviderExt, SessionId};

use crate::fixture::{Fixture, QueueSpec};
use crate::runner::Outcome;
use crate::support::{Setup, assert_kind, receive_in_session, require, text};

async fn session_setup(fixture: &dyn Fixture) -> Result<Setup, Outcome> {
    let provider = fixture.provider();
    if !provider.capabilities().sessions {
        return Err(Outcome::Skipped(format!(
            "the {} provider does not declare `sessions`",
            provider.name()
        )));
    }
    crate::support::prepare(fixture, QueueSpec::sessions()).await
}

macro_rules! session_setup {
    ($fixture:expr) => {
        match session_setup($fixture).await {
            Ok(setup) => setup,
            Err(outcome) => return outcome,
        }
    };
}

/// Within a session, messages come in send order.
pub async fn session_messages_come_in_order(fixture: &dyn Fixture) -> Outcome {
    let s = session_setup!(fixture);
    for index in 0..20 {
        s.send_in_session("order", &format!("{index}")).await;
    }
    let session = s
        .provider
        .accept_next_session(&s.queue, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("a session");
    assert_eq!(session.session_id().as_str(), "order");
    let received = receive_in_session(&*session, 20, Duration::from_secs(20)).await;
    let bodies: Vec<String> = received.iter().map(text).collect();
    let expected: Vec<String> = (0..20).map(|index| index.to_string()).collect();
    assert_eq!(bodies, expected);
    for message in &received {
        assert_eq!(message.session_id().map(SessionId::as_str), Some("order"));
        s.provider.complete(&message.receipt).await.unwrap();
    }
    session.close().await.unwrap();
    Outcome::Passed
}

/// Two sessions sent interleaved each keep their own order.
pub async fn interleaved_sessions_keep_their_own_order(fixture: &dyn Fixture) -> Outcome {
    let s = session_setup!(fixture);
    for index in 0..10 {
        s.send_in_session("left", &format!("left-{index}")).await;
        s.send_in_session("right", &format!("right-{index}")).await;
    }
    for _ in 0..2 {
        let session = s
            .provider
            .accept_next_session(&s.queue, Duration::from_secs(10))
            .await
            .unwrap()
            .expect("a session");
        let name = session.session_id().as_str().to_owned();
        let received = receive_in_session(&*session, 10, Duration::from_secs(20)).await;
        let bodies: Vec<String> = received.iter().map(text).collect();
        let expected: Vec<String> = (0..10).map(|index| format!("{name}-{index}")).collect();
        assert_eq!(bodies, expected);
        for message in &received {
            s.provider.complete(&message.receipt).await.unwrap();
        }
        session.close().await.unwrap();
    }
    Outcome::Passed
}

/// While a session is held, nobody else gets it: `Next` skips it and `Named` waits, then
/// returns `None`.
pub async fn session_lock_is_exclusive(fixture: &dyn Fixture) -> Outcome {
    let s = session_setup!(fixture);
    s.send_in_session("mine", "a").await;
    let held = s
        .provider
        .accept_next_session(&s.queue, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("a session");
    let next = s
        .provider
        .accept_next_session(&s.queue, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(next.is_none(), "a held session is not handed out again");
    if s.provider.capabilities().accept_named_session {
        let named = s
            .provider
            .accept_named_session(&s.queue, held.session_id(), Duration::from_secs(1))
            .await
            .unwrap();
        assert!(named.is_none(), "a held session cannot be accepted by name");
    }
    held.close().await.unwrap();
    let again = s
        .provider
        .accept_next_session(&s.queue, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(again.is_some(), "a closed session can be accepted again");
    Outcome::Passed
}

/// When a session lock expires, the session can be accepted again and its unsettled messages come
/// back first, with their delivery count raised.
pub async fn session_lock_expiry_releases_the_session(fixture: &dyn Fixture) -> Outcome {
    let s = session_setup!(fixture);
    s.send_in_session("expiring", "first").await;
    s.send_in_session("expiring", "second").await;
    let held = s
        .provider
        .accept_next_session(&s.queue, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("a session");
    let first = receive_in_session(&*held, 1, Duration::from_secs(10)).await;
    assert_eq!(text(&first[0]), "first");
    tokio::time::sleep(s.past_lock()).await;
    let again = s
        .provider
        .accept_next_session(&s.queue, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the session is free again");
    let received = receive_in_session(&*again, 2, Duration::from_secs(10)).await;
    assert_eq!(text(&received[0]), "first");
    assert_eq!(received[0].delivery_count(), 2);
    assert_eq!(text(&received[1]), "second");
    Outcome::Passed
}

/// Closing a session gives its unsettled messages back at once, first in line.
pub async fn session_close_returns_unsettled_messages(fixture: &dyn Fixture) -> Outcome {
    let s = session_setup!(fixture);
    s.send_in_session("closing", "unsettled").await;
    let held = s
        .provider
        .accept_next_session(&s.queue, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("a session");
    let received = receive_in_session(&*held, 1, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 1);
    held.close().await.unwrap();
    held.close().await.unwrap();
    assert_kind(
        held.receive(1, Duration::ZERO).await,
        ErrorKind::Closed,
        "receive after close",
    );
    let again = s
        .provider
        .accept_next_session(&s.queue, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the session is free at once");
    let redelivered = receive_in_session(&*again, 1, Duration::from_secs(10)).await;
    assert_eq!(text(&redelivered[0]), "unsettled");
    Outcome::Passed
}

/// `renew_session_lock` extends the session past its first deadline.
pub async fn renew_session_lock_extends_it(fixture: &dyn Fixture) -> Outcome {
    let s = session_setup!(fixture);
    require!(s.provider, lock_renewal);
    s.send_in_session("renewed", "a").await;
    let held = s
        .provider
        .accept_next_session(&s.queue, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("a session");
    let first_deadline = held.locked_until();
    let half = s.spec.lock_duration / 2;
    tokio::time::sleep(half).await;
    let renewed = held.renew_session_lock().await.unwrap();
    assert!(renewed > first_deadline);
    assert_eq!(held.locked_until(), renewed);
    tokio::time::sleep(half + Duration::from_millis(500)).await;
    let received = receive_in_session(&*held, 1, Duration::from_secs(1)).await;
    assert_eq!(received.len(), 1, "the session is still held");
    s.provider.complete(&received[0].receipt).await.unwrap();
    Outcome::Passed
}

/// Session state is set, read, kept across close and re-accept, and cleared.
pub async fn session_state_round_trips(fixture: &dyn Fixture) -> Outcome {
    let s = session_setup!(fixture);
    require!(s.provider, session_state);
    require!(s.provider, accept_named_session);
    let id = SessionId::new("stateful").unwrap();
    let held = s
        .provider
        .accept_named_session(&s.queue, &id, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("a named session, even empty");
    assert_eq!(held.state().await.unwrap(), None);
    held.set_state(Some(Bytes::from_static(b"step 3 of 5")))
        .await
        .unwrap();
    held.close().await.unwrap();
    let again = s
        .provider
        .accept_named_session(&s.queue, &id, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the session again");
    assert_eq!(
        again.state().await.unwrap().as_deref(),
        Some(&b"step 3 of 5"[..])
    );
    again.set_state(None).await.unwrap();
    assert_eq!(again.state().await.unwrap(), None);
    Outcome::Passed
}

/// `accept` of the next session on a queue without messages returns `None` within the wait.
pub async fn accept_next_without_sessions_returns_none(fixture: &dyn Fixture) -> Outcome {
    let s = session_setup!(fixture);
    let started = tokio::time::Instant::now();
    let session = s
        .provider
        .accept_next_session(&s.queue, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(session.is_none());
    assert!(started.elapsed() <= Duration::from_secs(2) + s.margin() * 2);
    Outcome::Passed
}

/// A session queue refuses a message without a session id with `InvalidInput`.
pub async fn session_queue_refuses_messages_without_session(fixture: &dyn Fixture) -> Outcome {
    let s = session_setup!(fixture);
    assert_kind(
        s.provider.send(&s.queue, Message::new("no session")).await,
        ErrorKind::InvalidInput,
        "send without a session id",
    );
    Outcome::Passed
}

/// After the session lock is lost, settling and receiving fail with `LockLost`.
pub async fn session_lost_lock_fails_settles(fixture: &dyn Fixture) -> Outcome {
    let s = session_setup!(fixture);
    s.send_in_session("lost", "a").await;
    let held = s
        .provider
        .accept_next_session(&s.queue, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("a session");
    let received = receive_in_session(&*held, 1, Duration::from_secs(10)).await;
    tokio::time::sleep(s.past_lock()).await;
    assert_kind(
        s.provider.complete(&received[0].receipt).await,
        ErrorKind::LockLost,
        "complete through the provider after the session lock expired",
    );
    assert_kind(
        held.receive(1, Duration::ZERO).await,
        ErrorKind::LockLost,
        "receive after the session lock expired",
    );
    Outcome::Passed
}

/// A session's messages settle through the provider like any other receipt: abandon puts one
/// first in its session again, complete removes it, dead-letter moves it with its reason, and
/// `renew_lock` on a session message renews the session's lock. After the session is closed,
/// settling its receipts is `LockLost` (the messages are available again).
pub async fn session_messages_settle_through_the_provider(fixture: &dyn Fixture) -> Outcome {
    let s = session_setup!(fixture);
    for body in ["first", "second", "third"] {
        s.send_in_session("settled", body).await;
    }
    let held = s
        .provider
        .accept_next_session(&s.queue, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("a session");
    let first = receive_in_session(&*held, 1, Duration::from_secs(10)).await;
    assert_eq!(text(&first[0]), "first");
    assert_eq!(
        first[0].receipt.session_id().map(SessionId::as_str),
        Some("settled")
    );
    s.provider.abandon(&first[0].receipt, None).await.unwrap();
    let again = receive_in_session(&*held, 1, Duration::from_secs(10)).await;
    assert_eq!(
        text(&again[0]),
        "first",
        "an abandoned message comes first again"
    );
    assert_eq!(again[0].delivery_count(), 2);
    if s.provider.capabilities().lock_renewal {
        let before = held.locked_until();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let renewed = s.provider.renew_lock(&again[0].receipt).await.unwrap();
        assert!(
            renewed > before,
            "renewing a session message renews the session"
        );
    }
    s.provider.complete(&again[0].receipt).await.unwrap();
    let second = receive_in_session(&*held, 1, Duration::from_secs(10)).await;
    assert_eq!(text(&second[0]), "second");
    s.provider
        .dead_letter_with(
            &second[0].receipt,
            "session-reason",
            "dead-lettered through the provider",
        )
        .await
        .unwrap();
    let third = receive_in_session(&*held, 1, Duration::from_secs(10)).await;
    assert_eq!(text(&third[0]), "third");
    held.close().await.unwrap();
    assert_kind(
        s.provider.complete(&third[0].receipt).await,
        ErrorKind::LockLost,
        "complete after the session was closed",
    );
    let dead = s.receive_dead_letters(1, Duration::from_secs(10)).await;
    assert_eq!(text(&dead[0]), "second");
    let reason = dead[0].delivery.dead_letter.as_ref().expect("a reason");
    assert_eq!(reason.reason, "session-reason");
    Outcome::Passed
}
