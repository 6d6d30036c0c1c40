//! The broker handle shared by the provider and its session receivers: the queues, the clock,
//! waiting for a queue to change, and the receipts it hands out.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use queue_core::{
    Capabilities, ErrorKind, QueueError, QueueName, Receipt, ReceivedMessage, Result, SessionId,
};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::state::{Clock, Delivery, LaneKind, QueueState, later};
use crate::{MemoryConfig, PROVIDER_NAME, QueueOptions};

/// One queue: its state behind its own lock, and the waiters to wake when it changes.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) name: QueueName,
    pub(crate) state: Mutex<QueueState>,
    changed: Notify,
    /// Receivers between a look that found nothing and their wake-up. Counted under the state
    /// lock, so a change made after a look (under the same lock) always sees the waiter; a
    /// change nobody waits for then skips `Notify`, whose `notify_waiters` takes a lock of its
    /// own every time.
    waiting: AtomicUsize,
    /// Set when the queue is deleted: receipts that still point at it are refused.
    deleted: AtomicBool,
    /// The broker the queue belongs to.
    broker: u64,
}

impl Queue {
    /// Wakes the receivers waiting for this queue to change, if any.
    pub(crate) fn wake(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.changed.notify_waiters();
        }
    }

    /// Wakes every waiter, counted or not: the queue was deleted or the broker closed.
    pub(crate) fn wake_all(&self) {
        self.changed.notify_waiters();
    }

    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::SeqCst);
        self.wake_all();
    }
}

/// A waiter counted in [`Queue::waiting`] until dropped (woken, timed out, or cancelled).
struct Waiting<'a>(&'a Queue);

impl<'a> Waiting<'a> {
    fn new(queue: &'a Queue) -> Self {
        queue.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(queue)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Tells brokers apart, so that a receipt is only taken as pointing into this broker's queues
/// when it does.
static BROKER_IDS: AtomicU64 = AtomicU64::new(1);

#[derive(Debug)]
pub(crate) struct Broker {
    pub(crate) config: MemoryConfig,
    pub(crate) capabilities: Capabilities,
    clock: Clock,
    pub(crate) queues: RwLock<HashMap<QueueName, Arc<Queue>>>,
    pub(crate) closed: AtomicBool,
    id: u64,
}

impl Broker {
    pub(crate) fn new(config: MemoryConfig, capabilities: Capabilities) -> Self {
        Broker {
            config,
            capabilities,
            clock: Clock::new(),
            queues: RwLock::new(HashMap::new()),
            closed: AtomicBool::new(false),
            id: BROKER_IDS.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(QueueError::new(
                ErrorKind::Closed,
                "the memory provider was closed",
            ));
        }
        Ok(())
    }

    pub(crate) fn clock(&self) -> Clock {
        self.clock
    }

    pub(crate) fn create(&self, name: &QueueName, options: QueueOptions) -> Result<Arc<Queue>> {
        options.validate()?;
        let mut queues = self.queues.write();
        if queues.contains_key(name) {
            return Err(QueueError::invalid_input(format!(
                "queue {name} already exists"
            )));
        }
        if queues.len() >= self.config.max_queues() {
            return Err(QueueError::new(
                ErrorKind::QueueFull,
                format!(
                    "the broker already holds its maximum of {} queues",
                    self.config.max_queues()
                ),
            ));
        }
        let queue = Arc::new(Queue {
            name: name.clone(),
            state: Mutex::new(QueueState::new(
                options,
                self.clock,
                self.config.accepted_message_bytes(),
            )),
            changed: Notify::new(),
            waiting: AtomicUsize::new(0),
            deleted: AtomicBool::new(false),
            broker: self.id,
        });
        queues.insert(name.clone(), Arc::clone(&queue));
        Ok(queue)
    }

    pub(crate) fn find(&self, name: &QueueName) -> Result<Arc<Queue>> {
        self.check_open()?;
        self.queues.read().get(name).cloned().ok_or_else(|| {
            QueueError::new(ErrorKind::NotFound, format!("queue {name} does not exist"))
        })
    }

    /// The queue to send to: created with the default options when the broker allows it.
    pub(crate) fn find_or_create(&self, name: &QueueName) -> Result<Arc<Queue>> {
        match self.find(name) {
            Err(error)
                if error.kind() == ErrorKind::NotFound && self.config.auto_create_queues() =>
            {
                match self.create(name, self.config.default_queue_options().clone()) {
                    Ok(queue) => Ok(queue),
                    // Another sender created it first.
                    Err(_) => self.find(name),
                }
            }
            found => found,
        }
    }

    /// Runs `attempt` under the queue's lock until it yields something or `wait` passes.
    ///
    /// Between attempts the task sleeps until the queue changes (a send, a settle) or the next
    /// timed event of the queue (a lock expiry, a scheduled arrival) or the deadline, whichever
    /// comes first: no polling.
    pub(crate) async fn wait_for<T>(
        &self,
        queue: &Queue,
        wait: Duration,
        mut attempt: impl FnMut(&mut QueueState, Instant) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let mut deadline = None;
        loop {
            let (changed, wake_at, waiting) = {
                let mut state = queue.state.lock();
                self.check_open()?;
                let now = Instant::now();
                if state.advance(now) {
                    queue.wake();
                }
                if let Some(found) = attempt(&mut state, now)? {
                    return Ok(Some(found));
                }
                let deadline = *deadline.get_or_insert_with(|| later(now, wait));
                if now >= deadline {
                    return Ok(None);
                }
                // Counted and created under the lock, so a change made after we release it
                // sees us and wakes us.
                let waiting = Waiting::new(queue);
                let changed = queue.changed.notified();
                let wake_at = state.next_event().map_or(deadline, |at| at.min(deadline));
                (changed, wake_at, waiting)
            };
            // Either outcome means: look again.
            let _ = tokio::time::timeout_at(wake_at, changed).await;
            drop(waiting);
        }
    }

    /// Runs a quick operation under the queue's lock, after applying what became due.
    pub(crate) fn with_state<T>(
        &self,
        queue: &Queue,
        operation: impl FnOnce(&mut QueueState, Instant) -> Result<T>,
    ) -> Result<T> {
        self.check_open()?;
        let mut state = queue.state.lock();
        let now = Instant::now();
        let mut woke = state.advance(now);
        let result = operation(&mut state, now);
        // Settling and abandoning can free capacity or return messages; wake waiters then.
        woke |= result.is_ok();
        drop(state);
        if woke {
            queue.wake();
        }
        result
    }

    pub(crate) fn received(
        &self,
        queue: &Arc<Queue>,
        kind: LaneKind,
        session: Option<(SessionId, u64)>,
        delivery: Delivery,
    ) -> ReceivedMessage {
        let session_id = session.as_ref().map(|(id, _)| id.clone());
        ReceivedMessage {
            message: delivery.message,
            delivery: delivery.info,
            locked_until: self.clock.system(delivery.locked_until),
            receipt: Receipt::new(
                PROVIDER_NAME,
                queue.name.clone(),
                session_id,
                MemoryReceipt {
                    token: delivery.token,
                    kind,
                    session_lock: session.map(|(_, lock)| lock),
                    queue: Arc::downgrade(queue),
                },
            ),
        }
    }

    /// The queue a receipt settles on: the one it was received from when that queue belongs to
    /// this broker (no lookup by name), refused as not found once that queue was deleted;
    /// a receipt of another broker is looked up by its queue's name.
    pub(crate) fn receipt_queue(&self, receipt: &Receipt) -> Result<(Arc<Queue>, MemoryReceipt)> {
        let data = receipt.data::<MemoryReceipt>(PROVIDER_NAME)?;
        self.check_open()?;
        let queue = match data.queue.upgrade() {
            Some(queue) if queue.broker == self.id => {
                if queue.deleted.load(Ordering::SeqCst) {
                    return Err(QueueError::new(
                        ErrorKind::NotFound,
                        format!("queue {} does not exist", queue.name),
                    ));
                }
                queue
            }
            _ => self.find(receipt.queue())?,
        };
        Ok((queue, data.clone()))
    }
}

/// What a memory receipt holds: the lock token, the lane, the session lock if any, and the queue
/// (weakly: a receipt does not keep a deleted queue alive).
#[derive(Debug, Clone)]
pub(crate) struct MemoryReceipt {
    pub(crate) token: u64,
    pub(crate) kind: LaneKind,
    pub(crate) session_lock: Option<u64>,
    queue: Weak<Queue>,
}
