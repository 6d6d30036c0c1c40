//! A session held by one receiver.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use queue_core::{
    ErrorKind, QueueError, QueueName, ReceivedMessage, Result, SessionId, SessionReceiver,
};

use crate::broker::{Broker, Queue};
use crate::state::LaneKind;

/// The receiver of one accepted session of the embedded broker.
#[derive(Debug)]
pub(crate) struct MemorySession {
    broker: Arc<Broker>,
    queue: Arc<Queue>,
    session_id: SessionId,
    lock: u64,
    locked_until: Mutex<SystemTime>,
    closed: AtomicBool,
}

impl MemorySession {
    pub(crate) fn new(
        broker: Arc<Broker>,
        queue: Arc<Queue>,
        session_id: SessionId,
        lock: u64,
        locked_until: SystemTime,
    ) -> Self {
        MemorySession {
            broker,
            queue,
            session_id,
            lock,
            locked_until: Mutex::new(locked_until),
            closed: AtomicBool::new(false),
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(QueueError::new(
                ErrorKind::Closed,
                format!("session {} was closed", self.session_id),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl SessionReceiver for MemorySession {
    fn queue(&self) -> &QueueName {
        &self.queue.name
    }

    fn session_id(&self) -> &SessionId {
        &self.session_id
    }

    fn locked_until(&self) -> SystemTime {
        *self.locked_until.lock()
    }

    async fn receive(&self, max_messages: usize, wait: Duration) -> Result<Vec<ReceivedMessage>> {
        self.check_open()?;
        let max = queue_core::raw::check_max_messages(max_messages, &crate_capabilities())?;
        let deliveries = self
            .broker
            .wait_for(&self.queue, wait, |state, now| {
                let deliveries = state.session_receive(&self.session_id, self.lock, max, now)?;
                Ok((!deliveries.is_empty()).then_some(deliveries))
            })
            .await?
            .unwrap_or_default();
        Ok(deliveries
            .into_iter()
            .map(|delivery| {
                self.broker.received(
                    &self.queue,
                    LaneKind::Main,
                    Some((self.session_id.clone(), self.lock)),
                    delivery,
                )
            })
            .collect())
    }

    async fn renew_session_lock(&self) -> Result<SystemTime> {
        self.check_open()?;
        let until = self.broker.with_state(&self.queue, |state, now| {
            state.session_renew(&self.session_id, self.lock, now)
        })?;
        let until = self.broker.clock().system(until);
        *self.locked_until.lock() = until;
        Ok(until)
    }

    async fn state(&self) -> Result<Option<Bytes>> {
        self.check_open()?;
        self.broker.with_state(&self.queue, |state, now| {
            state.session_state(&self.session_id, self.lock, now)
        })
    }

    async fn set_state(&self, session_state: Option<Bytes>) -> Result<()> {
        self.check_open()?;
        self.broker.with_state(&self.queue, |state, now| {
            state.set_session_state(&self.session_id, self.lock, session_state, now)
        })
    }

    async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // A closed broker has nothing left to release.
        if self.broker.check_open().is_err() {
            return Ok(());
        }
        self.broker.with_state(&self.queue, |state, now| {
            state.close_session(&self.session_id, self.lock, now);
            Ok(())
        })
    }
}

/// The receive limit of session receivers: the same as the provider's.
fn crate_capabilities() -> queue_core::Capabilities {
    let mut capabilities = queue_core::Capabilities::default();
    capabilities.max_receive_messages = crate::MAX_RECEIVE_MESSAGES;
    capabilities
}
