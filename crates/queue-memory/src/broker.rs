//! The broker handle shared by the provider and its session receivers: the queues, the clock,
//! waiting for a queue to change, and the receipts it hands out.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    pub(crate) changed: Notify,
}

#[derive(Debug)]
pub(crate) struct Broker {
    pub(crate) config: MemoryConfig,
    pub(crate) capabilities: Capabilities,
    clock: Clock,
    pub(crate) queues: RwLock<HashMap<QueueName, Arc<Queue>>>,
    pub(crate) closed: AtomicBool,
}

impl Broker {
    pub(crate) fn new(config: MemoryConfig, capabilities: Capabilities) -> Self {
        Broker {
            config,
            capabilities,
            clock: Clock::new(),
            queues: RwLock::new(HashMap::new()),
            closed: AtomicBool::new(false),
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
        let deadline = later(Instant::now(), wait);
        loop {
            let (changed, wake_at) = {
                let mut state = queue.state.lock();
                self.check_open()?;
                let now = Instant::now();
                if state.advance(now) {
                    queue.changed.notify_waiters();
                }
                if let Some(found) = attempt(&mut state, now)? {
                    return Ok(Some(found));
                }
                if now >= deadline {
                    return Ok(None);
                }
                // Created under the lock, so a change made after we release it wakes us.
                let changed = queue.changed.notified();
                let wake_at = state.next_event().map_or(deadline, |at| at.min(deadline));
                (changed, wake_at)
            };
            // Either outcome means: look again.
            let _ = tokio::time::timeout_at(wake_at, changed).await;
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
            queue.changed.notify_waiters();
        }
        result
    }

    pub(crate) fn received(
        &self,
        queue: &Queue,
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
                },
            ),
        }
    }
}

/// What a memory receipt holds: the lock token, the lane, and the session lock if any.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemoryReceipt {
    pub(crate) token: u64,
    pub(crate) kind: LaneKind,
    pub(crate) session_lock: Option<u64>,
}
