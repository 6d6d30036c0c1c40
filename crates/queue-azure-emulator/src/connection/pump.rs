//! Link pumps: one task per receiver link that takes messages from the engine while the link
//! has credit, and hands them to the connection; and the task that waits for a session.
//!
//! The pump only ever asks for as many messages as the link's credit; the connection sends
//! what the credit still allows when the messages arrive (a flow may have cut it meanwhile) and
//! releases the rest without counting a delivery. Taking messages from the engine happens
//! within one poll of its receive, so a receive abandoned for a credit change loses nothing.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use queue_core::{
    AcceptSessionOptions, ErrorKind, QueueError, QueueName, QueueProvider, ReceiveOptions,
    ReceivedMessage, SessionReceiver, SessionSelector, SubQueue,
};
use queue_memory::MemoryProvider;
use tokio::sync::{mpsc, oneshot, watch};

use super::links::LinkId;
use crate::broker::HeldSession;
use crate::error::Failure;

/// How long one receive from the engine waits before the pump looks again.
const RECEIVE_SLICE: Duration = Duration::from_secs(30);
/// The most messages taken from the engine at once.
const MAX_BATCH: u32 = 256;
/// Added to a session lock's deadline before checking it is gone (the engine's clock and the
/// wall clock may differ by a little).
const LOCK_CHECK_MARGIN: Duration = Duration::from_millis(50);

/// What a receiver link may be sent: its credit, and whether the client asked to drain it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Credit {
    pub(super) available: u32,
    pub(super) drain: bool,
}

/// What link tasks report to their connection.
#[derive(Debug)]
pub(crate) enum Event {
    /// Messages taken for a link; `drained` when the pump took all it could for a drain. The
    /// pump waits for `done` before taking more.
    Deliveries {
        link: LinkId,
        messages: Vec<ReceivedMessage>,
        drained: bool,
        done: oneshot::Sender<()>,
    },
    /// The wait for a session ended.
    SessionAccepted {
        link: LinkId,
        result: Result<Option<Box<dyn SessionReceiver>>, QueueError>,
    },
    /// The session lock of a session link is gone.
    SessionLost { link: LinkId },
    /// The engine failed a receive for good.
    Failed { link: LinkId, failure: Failure },
}

/// Where a pump takes messages from.
#[derive(Debug, Clone)]
pub(super) enum Source {
    Queue {
        provider: MemoryProvider,
        queue: QueueName,
        sub_queue: SubQueue,
    },
    Session {
        provider: MemoryProvider,
        held: Arc<HeldSession>,
    },
}

impl Source {
    async fn receive(&self, max: u32, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        let max = max.min(MAX_BATCH) as usize;
        match self {
            Source::Queue {
                provider,
                queue,
                sub_queue,
            } => {
                let mut options = ReceiveOptions::new(max, wait);
                options.sub_queue = *sub_queue;
                provider.receive(queue, options).await
            }
            Source::Session { held, .. } => held.receiver.receive(max, wait).await,
        }
    }

    /// Gives messages back without counting the delivery.
    fn release(&self, messages: &[ReceivedMessage]) {
        let provider = match self {
            Source::Queue { provider, .. } | Source::Session { provider, .. } => provider,
        };
        for message in messages {
            let _ = provider.release(&message.receipt);
        }
    }

    /// When to check that the session lock is still held.
    fn lock_check_at(&self) -> Option<tokio::time::Instant> {
        let Source::Session { held, .. } = self else {
            return None;
        };
        let left = held
            .receiver
            .locked_until()
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        Some(tokio::time::Instant::now() + left + LOCK_CHECK_MARGIN)
    }

    /// Whether the session lock is gone.
    async fn session_lost(&self) -> bool {
        match self {
            Source::Session { held, .. } => held
                .receiver
                .state()
                .await
                .is_err_and(|error| error.kind() == ErrorKind::LockLost),
            Source::Queue { .. } => false,
        }
    }
}

/// Starts the pump of a receiver link; it stops when the link drops its credit sender.
pub(super) fn spawn(
    link: LinkId,
    source: Source,
    credit: watch::Receiver<Credit>,
    events: mpsc::Sender<Event>,
) {
    tokio::spawn(run(link, source, credit, events));
}

async fn run(
    link: LinkId,
    source: Source,
    mut credit: watch::Receiver<Credit>,
    events: mpsc::Sender<Event>,
) {
    loop {
        let wanted = *credit.borrow_and_update();
        let check_at = source.lock_check_at();
        let lock_check = async {
            match check_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let received = if wanted.available == 0 {
            tokio::select! {
                changed = credit.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
                () = lock_check => None,
            }
        } else {
            let wait = if wanted.drain {
                Duration::ZERO
            } else {
                RECEIVE_SLICE
            };
            tokio::select! {
                received = source.receive(wanted.available, wait) => Some(received),
                changed = credit.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
                () = lock_check => None,
            }
        };
        let event = match received {
            None => {
                if !source.session_lost().await {
                    continue;
                }
                Event::SessionLost { link }
            }
            Some(Ok(messages)) => {
                if messages.is_empty() && !wanted.drain {
                    continue;
                }
                let (done, applied) = oneshot::channel();
                let event = Event::Deliveries {
                    link,
                    messages,
                    drained: wanted.drain,
                    done,
                };
                if let Err(mpsc::error::SendError(Event::Deliveries { messages, .. })) =
                    events.send(event).await
                {
                    // The connection is gone: what was taken for it goes back, uncounted.
                    source.release(&messages);
                    return;
                }
                // Until the connection has applied them, the credit read above is stale.
                let _ = applied.await;
                continue;
            }
            Some(Err(error)) if error.kind() == ErrorKind::LockLost => Event::SessionLost { link },
            Some(Err(error)) => Event::Failed {
                link,
                failure: Failure::from(error),
            },
        };
        let _ = events.send(event).await;
        return;
    }
}

/// Waits for a session for a link, then reports it.
pub(super) fn spawn_accept(
    link: LinkId,
    provider: MemoryProvider,
    queue: QueueName,
    session: SessionSelector,
    wait: Duration,
    events: mpsc::Sender<Event>,
) -> tokio::task::AbortHandle {
    let task = tokio::spawn(async move {
        let options = AcceptSessionOptions { session, wait };
        let result = provider.accept_session(&queue, options).await;
        if let Err(tokio::sync::mpsc::error::SendError(Event::SessionAccepted {
            result: Ok(Some(receiver)),
            ..
        })) = events.send(Event::SessionAccepted { link, result }).await
        {
            // The connection is gone: let the session go at once.
            let _ = receiver.close().await;
        }
    });
    task.abort_handle()
}
