//! Session queues: workers each holding one session at a time, its messages one by one.

use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use queue_core::{QueueError, Result};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, error, warn};

use super::locks::keep_lock;
use super::message::{expired_before_handling, handle_one};
use super::{Shared, back_off, is_fatal};
use crate::client::ClientSession;

/// `max_concurrency` workers, each holding one session at a time.
pub(super) async fn run_sessions(shared: &Arc<Shared>) -> Result<()> {
    let mut workers = JoinSet::new();
    for _ in 0..shared.options.max_concurrency {
        let shared = shared.clone();
        workers.spawn(async move { session_worker(&shared).await });
    }
    let mut outcome = Ok(());
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                if outcome.is_ok() {
                    // One worker met a fatal error: stop the others the orderly way.
                    shared.shutdown.cancel();
                    outcome = Err(error);
                }
            }
            Err(join_error) => error!(%join_error, "a session worker failed"),
        }
    }
    outcome
}

async fn session_worker(shared: &Shared) -> Result<()> {
    let mut failures = 0_u32;
    while !shared.shutdown.is_cancelled() {
        match shared
            .client
            .accept_next_session(&shared.queue, shared.options.receive_wait)
            .await
        {
            Ok(None) => failures = 0,
            Ok(Some(session)) => {
                failures = 0;
                hold_session(shared, session).await;
            }
            Err(error) if is_fatal(&error) => {
                error!(messaging.destination.name = %shared.queue, %error, "processor stopping");
                return Err(error);
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                if !back_off(shared, &error, failures).await {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Works one session until it is idle, shutdown comes, or its lock is lost; its lock is renewed
/// all along (except past `max_lock_renewal` into one handler).
async fn hold_session(shared: &Shared, session: ClientSession) {
    let session_id = shared.session_ids.display(session.session_id());
    let busy_since: Mutex<Option<Instant>> = Mutex::new(None);
    let lost = tokio::select! {
        () = drain_session(shared, &session, &busy_since) => None,
        error = keep_session_lock(shared, &session, &busy_since) => Some(error),
    };
    if let Some(error) = lost {
        if busy_since.lock().is_some() {
            shared.meters.lock_lost.add();
        }
        warn!(
            messaging.destination.name = %shared.queue,
            session = %session_id,
            %error,
            "session lock lost; its unsettled messages will be redelivered"
        );
    }
    if let Err(error) = session.close().await {
        debug!(session = %session_id, %error, "closing the session failed");
    }
}

async fn drain_session(
    shared: &Shared,
    session: &ClientSession,
    busy_since: &Mutex<Option<Instant>>,
) {
    while !shared.shutdown.is_cancelled() {
        // One at a time: a message given back comes first again, and messages fetched behind
        // it would have to be given back too, each gaining a delivery it never had (three
        // retries of one poison message would dead-letter the ones behind it as well).
        let message = match session.receive(1, shared.options.session_idle).await {
            Ok(batch) => match batch.into_iter().next() {
                Some(message) => message,
                None => return,
            },
            Err(error) => {
                warn!(
                    messaging.destination.name = %shared.queue,
                    session = %shared.session_ids.display(session.session_id()),
                    %error,
                    "session receive failed; releasing the session"
                );
                return;
            }
        };
        // The session lock covers its messages: the handler starts only while it holds.
        let locked_until = session.locked_until();
        if SystemTime::now() >= locked_until {
            let error = QueueError::new(
                queue_core::ErrorKind::LockLost,
                "the session lock ran out before the handler could start",
            );
            expired_before_handling(shared, &message, &error).await;
            return;
        }
        let mut message = message;
        message.locked_until = locked_until;
        *busy_since.lock() = Some(Instant::now());
        // The session's keeper watches its lock and stops the whole session when it is lost.
        handle_one(shared, message, std::future::pending()).await;
        *busy_since.lock() = None;
    }
}

/// Renews the session lock at half its remaining time; returns when the lock is lost.
async fn keep_session_lock(
    shared: &Shared,
    session: &ClientSession,
    busy_since: &Mutex<Option<Instant>>,
) -> QueueError {
    let stuck = || {
        busy_since
            .lock()
            .is_some_and(|since| since.elapsed() >= shared.options.max_lock_renewal)
    };
    keep_lock(
        shared,
        session.locked_until(),
        || !stuck(),
        || session.renew_lock(),
    )
    .await
}
