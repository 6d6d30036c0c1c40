//! Keeping locks while messages wait and while their handlers run.
//!
//! A run (the messages of one receive that must be handled in order: one message, or the
//! messages of one FIFO group) is held as a whole: every message of it keeps its lock until it
//! is settled or given back, the waiting ones as well as the one being handled, renewed in one
//! batch call ([`QueueClient::renew_lock_batch`]: one `ChangeMessageVisibilityBatch` on SQS).
//! Without that, a message waiting behind a slow one lost its lock, the broker delivered it
//! again, and another task handled it at the same time as the first (issue 16).

use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use queue_core::{ErrorKind, QueueError, ReceivedMessage, Result};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Shared;

/// Time left until `deadline` (zero when past).
pub(super) fn until(deadline: SystemTime) -> Duration {
    deadline
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

/// Renew at half the time left, never in a tight loop.
pub(super) fn renewal_pause(locked_until: SystemTime) -> Duration {
    (until(locked_until) / 2).max(Duration::from_millis(10))
}

pub(super) fn renewal_limit_reached(shared: &Shared) -> QueueError {
    QueueError::new(
        ErrorKind::LockLost,
        format!(
            "the handler ran past max_lock_renewal ({:?}); the lock was left to expire",
            shared.options.max_lock_renewal
        ),
    )
}

fn expired() -> QueueError {
    QueueError::new(
        ErrorKind::LockLost,
        "the lock ran out before it could be renewed",
    )
}

/// Renews one lock (a session's) at half its remaining time while `may_renew` allows; returns
/// when the lock is lost, or once it expired after `may_renew` stopped allowing.
pub(super) async fn keep_lock<Renewal: Future<Output = Result<SystemTime>>>(
    shared: &Shared,
    mut locked_until: SystemTime,
    may_renew: impl Fn() -> bool,
    renew: impl Fn() -> Renewal,
) -> QueueError {
    loop {
        tokio::time::sleep(renewal_pause(locked_until)).await;
        if !may_renew() {
            tokio::time::sleep(until(locked_until)).await;
            return renewal_limit_reached(shared);
        }
        match renew().await {
            Ok(renewed) => {
                locked_until = renewed;
                shared.meters.lock_renewed.increment(1);
            }
            Err(error) => {
                shared.meters.lock_renewal_failed.increment(1);
                if error.is_lock_lost() || SystemTime::now() >= locked_until {
                    return error;
                }
            }
        }
    }
}

/// The messages of one ordered run that the processor holds, and what it knows of their locks.
pub(super) struct HeldRun {
    messages: Vec<ReceivedMessage>,
    locks: Mutex<RunLocks>,
    /// Woken when a lock is found lost.
    lost: Notify,
}

struct RunLocks {
    /// Each message's lock: its deadline as last renewed, and the error that lost it.
    each: Vec<(SystemTime, Option<QueueError>)>,
    /// Messages before this index are settled or given back: no longer held.
    next: usize,
    /// When the handler of the message at `next` started (its renewals stop after
    /// `max_lock_renewal`); `None` while it waits.
    started: Option<Instant>,
    /// Messages from this index on were given back unstarted (at shutdown): no longer held.
    released: usize,
}

/// The least lock a message must have left for its handler to start: less, and it would be
/// lost before the first renewal could land.
const START_MARGIN: Duration = Duration::from_millis(50);

impl HeldRun {
    pub(super) fn new(messages: Vec<ReceivedMessage>) -> Self {
        let each = messages
            .iter()
            .map(|message| (message.locked_until, None))
            .collect();
        let released = messages.len();
        HeldRun {
            messages,
            locks: Mutex::new(RunLocks {
                each,
                next: 0,
                started: None,
                released,
            }),
            lost: Notify::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.messages.len()
    }

    /// The message at `index` with its lock deadline as last renewed, or the error that lost
    /// it (or, with no error, the deadline already past): then it must not be handled.
    pub(super) fn take_up(&self, index: usize) -> std::result::Result<ReceivedMessage, QueueError> {
        let mut locks = self.locks.lock();
        let (locked_until, lost) = &locks.each[index];
        if let Some(error) = lost {
            return Err(QueueError::new(error.kind(), error.message().to_owned()));
        }
        if SystemTime::now() + START_MARGIN >= *locked_until {
            return Err(expired());
        }
        let mut message = self.messages[index].clone();
        message.locked_until = *locked_until;
        locks.next = index;
        locks.started = Some(Instant::now());
        Ok(message)
    }

    /// The message at `index` is settled or given back: no longer held.
    pub(super) fn let_go(&self, index: usize) {
        let mut locks = self.locks.lock();
        locks.next = locks.next.max(index + 1);
        locks.started = None;
    }

    /// Whether the message at `index` was given back unstarted (it must not be handled, nor
    /// given back again).
    pub(super) fn released(&self, index: usize) -> bool {
        index >= self.locks.lock().released
    }

    /// Gives back at once every message after `index` (they wait behind the one being
    /// handled): shutdown hands back what was fetched but not started, without waiting for the
    /// running handler.
    pub(super) async fn give_back_after(&self, shared: &Shared, index: usize) {
        let (from, to) = {
            let mut locks = self.locks.lock();
            let from = (index + 1).min(locks.released);
            let to = locks.released;
            locks.released = from;
            (from, to)
        };
        for rest in from..to {
            super::message::give_back(shared, &self.messages[rest]).await;
        }
    }

    /// The message at `index`, as received (for giving it back).
    pub(super) fn message(&self, index: usize) -> &ReceivedMessage {
        &self.messages[index]
    }

    /// Resolves with the error once the lock of the message at `index` is lost.
    pub(super) async fn lost(&self, index: usize) -> QueueError {
        loop {
            let notified = self.lost.notified();
            if let Some(error) = &self.locks.lock().each[index].1 {
                return QueueError::new(error.kind(), error.message().to_owned());
            }
            notified.await;
        }
    }

    /// Keeps the locks of every held message, renewing them together at half the shortest
    /// remaining time, until the run ends (this future is dropped then). The message being
    /// handled is renewed for at most `max_lock_renewal`; the waiting ones all along.
    pub(super) async fn keep(&self, shared: &Shared) {
        let can_renew = shared.client.capabilities().lock_renewal;
        loop {
            let (renewable, renew_in, expire_in) = {
                let locks = self.locks.lock();
                let past_limit = locks
                    .started
                    .is_some_and(|started| started.elapsed() >= shared.options.max_lock_renewal);
                let (renewable, left_to_expire): (Vec<usize>, Vec<usize>) = (locks.next
                    ..locks.released)
                    .filter(|&index| locks.each[index].1.is_none())
                    .partition(|&index| can_renew && !(index == locks.next && past_limit));
                let deadline = |index: &usize| locks.each[*index].0;
                let renew_in = renewable.iter().map(deadline).min().map(renewal_pause);
                let expire_in = left_to_expire.iter().map(deadline).min().map(until);
                (renewable, renew_in, expire_in)
            };
            match (renew_in, expire_in) {
                // Nothing held, or every lock lost: nothing left to keep.
                (None, None) => return std::future::pending().await,
                (Some(renew_in), None) => {
                    tokio::time::sleep(renew_in).await;
                    self.renew(shared, &renewable).await;
                }
                (Some(renew_in), Some(expire_in)) if renew_in <= expire_in => {
                    tokio::time::sleep(renew_in).await;
                    self.renew(shared, &renewable).await;
                }
                (_, Some(expire_in)) => tokio::time::sleep(expire_in).await,
            }
            self.mark_expired(shared);
        }
    }

    /// Renews the locks at `indexes` in one batch and files each result.
    async fn renew(&self, shared: &Shared, indexes: &[usize]) {
        let messages: Vec<&ReceivedMessage> =
            indexes.iter().map(|&index| &self.messages[index]).collect();
        let results = match shared.client.renew_lock_batch(&messages).await {
            Ok(results) => results,
            Err(error) => {
                shared.meters.lock_renewal_failed.increment(1);
                tracing::debug!(%error, "renewing the locks of a run failed; trying again");
                return;
            }
        };
        let mut locks = self.locks.lock();
        let mut any_lost = false;
        for (&index, result) in indexes.iter().zip(results) {
            match result {
                Ok(renewed) => {
                    locks.each[index].0 = renewed;
                    shared.meters.lock_renewed.increment(1);
                }
                Err(error) => {
                    shared.meters.lock_renewal_failed.increment(1);
                    if error.is_lock_lost() || SystemTime::now() >= locks.each[index].0 {
                        locks.each[index].1 = Some(error);
                        any_lost = true;
                    }
                }
            }
        }
        drop(locks);
        if any_lost {
            self.lost.notify_waiters();
        }
    }

    /// Marks the held locks whose deadline passed as lost: the one past `max_lock_renewal`, or
    /// any whose renewals failed until it ran out.
    fn mark_expired(&self, shared: &Shared) {
        let mut locks = self.locks.lock();
        let now = SystemTime::now();
        let first_held = locks.next;
        let started = locks.started;
        let mut any_lost = false;
        for index in first_held..locks.released {
            let (deadline, lost) = &mut locks.each[index];
            if lost.is_none() && now >= *deadline {
                let past_limit = index == first_held
                    && started.is_some_and(|at| at.elapsed() >= shared.options.max_lock_renewal);
                *lost = Some(if past_limit {
                    renewal_limit_reached(shared)
                } else {
                    expired()
                });
                any_lost = true;
            }
        }
        drop(locks);
        if any_lost {
            self.lost.notify_waiters();
        }
    }
}
