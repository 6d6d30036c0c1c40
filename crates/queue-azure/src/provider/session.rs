//! Sessions: accepting the next available session (on a connection of its own) or a named one,
//! and the receiver that holds a session through its own link.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use azservicebus::{
    ServiceBusReceiveMode, ServiceBusSessionReceiver, ServiceBusSessionReceiverOptions,
};
use bytes::Bytes;
use queue_core::raw::check_max_messages;
use queue_core::{
    ErrorKind, QueueError, QueueName, ReceivedMessage, Result, SessionId, SessionReceiver,
};
use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinHandle;

use super::connection::{client_closed, open_sdk_client};
use super::receive::{DeliveryLink, accept_deliveries};
use super::{AzureProvider, Inner, uninterrupted};
use crate::codec;
use crate::error::{closed, lock_lost, map_sdk_error};
use crate::links::{Backlog, Polls, poll};
use crate::sdk::sdk_call;

/// How often a named session held by someone else is asked for again.
const NAMED_SESSION_RETRY: Duration = Duration::from_millis(500);

pub(super) type PendingAccept =
    JoinHandle<std::result::Result<ServiceBusSessionReceiver, azure_core::Error>>;

impl AzureProvider {
    pub(super) async fn accept_next(
        &self,
        queue: &QueueName,
        wait: Duration,
    ) -> Result<Option<Box<dyn SessionReceiver>>> {
        let deadline = Instant::now() + wait;
        let slot = self
            .inner
            .pending_accepts
            .lock()
            .entry(queue.clone())
            .or_default()
            .clone();
        let Ok(mut pending) = tokio::time::timeout(wait, slot.lock()).await else {
            return Ok(None);
        };
        loop {
            let mut accept = match pending.take() {
                Some(accept) => accept,
                None => self.spawn_accept(queue),
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, &mut accept).await {
                Err(_) => {
                    // Still waiting on the broker: the next caller takes this accept over.
                    *pending = Some(accept);
                    return Ok(None);
                }
                Ok(Err(join)) => {
                    return Err(QueueError::new(
                        ErrorKind::Provider,
                        format!("Service Bus accept session task failed: {join}"),
                    ));
                }
                Ok(Ok(Ok(receiver))) => {
                    return self.session_receiver(queue, receiver).await.map(Some);
                }
                Ok(Ok(Err(error))) => {
                    let error = map_sdk_error("accept_session", error);
                    // The broker's own "no session became available" answer.
                    if error.kind() != ErrorKind::Timeout {
                        return Err(error);
                    }
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                }
            }
        }
    }

    fn spawn_accept(&self, queue: &QueueName) -> PendingAccept {
        let inner = self.inner.clone();
        let queue = queue.clone();
        // Outside the cooperative budget, as `uninterrupted` explains; a panic ends the task
        // and reaches the caller as a join error.
        tokio::spawn(tokio::task::unconstrained(async move {
            let mut client = inner.session_client.lock().await;
            if client.is_none() {
                if inner.closed.load(Ordering::Acquire) {
                    return Err(client_closed());
                }
                *client = Some(open_sdk_client(&inner.config, &inner.endpoint).await?);
            }
            let Some(client) = client.as_mut() else {
                return Err(client_closed());
            };
            client
                .accept_next_session_for_queue(queue.as_str(), session_options(inner.prefetch()))
                .await
        }))
    }

    pub(super) async fn accept_named(
        &self,
        queue: &QueueName,
        session: &SessionId,
        wait: Duration,
    ) -> Result<Option<Box<dyn SessionReceiver>>> {
        let deadline = Instant::now() + wait;
        loop {
            let accepted = {
                let mut client = self.inner.client.lock().await;
                let client = client.as_mut().ok_or_else(|| closed("accept_session"))?;
                sdk_call(client.accept_session_for_queue(
                    queue.as_str(),
                    session.as_str(),
                    session_options(self.inner.prefetch()),
                ))
                .await
            };
            match accepted {
                Ok(receiver) => return self.session_receiver(queue, receiver).await.map(Some),
                Err(error) => {
                    let error = map_sdk_error("accept_session", error);
                    // Held by another receiver ("session cannot be locked"): ask again until
                    // the wait is over.
                    if error.kind() != ErrorKind::LockLost {
                        return Err(error);
                    }
                    // Perhaps by a next-session accept whose caller stopped waiting: it has
                    // no owner, so release it (or keep it, when it is this session).
                    if let Some(receiver) = self.take_finished_accept(queue).await {
                        if receiver.session_id() == session.as_str() {
                            return self.session_receiver(queue, receiver).await.map(Some);
                        }
                        if let Err(error) = receiver.dispose().await {
                            tracing::debug!(%error, "releasing an unclaimed session failed");
                        }
                        continue;
                    }
                    if Instant::now() + NAMED_SESSION_RETRY > deadline {
                        return Ok(None);
                    }
                    tokio::time::sleep(NAMED_SESSION_RETRY).await;
                }
            }
        }
    }

    /// The session a finished next-session accept holds for nobody, if any.
    async fn take_finished_accept(&self, queue: &QueueName) -> Option<ServiceBusSessionReceiver> {
        let slot = self.inner.pending_accepts.lock().get(queue).cloned()?;
        let mut pending = slot.try_lock().ok()?;
        if !pending.as_ref().is_some_and(JoinHandle::is_finished) {
            return None;
        }
        match pending.take()?.await {
            Ok(Ok(receiver)) => Some(receiver),
            _ => None,
        }
    }

    async fn session_receiver(
        &self,
        queue: &QueueName,
        mut receiver: ServiceBusSessionReceiver,
    ) -> Result<Box<dyn SessionReceiver>> {
        let session_id = SessionId::new(receiver.session_id()).map_err(|error| {
            QueueError::new(
                ErrorKind::Provider,
                format!("Service Bus delivered a session id queue-runtime cannot carry: {error}"),
            )
        })?;
        let mut locked_until = codec::system_time(receiver.session_locked_until());
        if locked_until <= SystemTime::now() {
            // Service Bus puts the session's lock deadline on the attach as a `long` of .NET
            // ticks (what .NET, Python and JS read); azservicebus 0.25 reads only an AMQP
            // timestamp there and otherwise reports the year 1. One renewal tells the true
            // deadline (its answer is a timestamp the SDK keeps), so a fresh session is never
            // taken for an expired one.
            sdk_call(receiver.renew_session_lock())
                .await
                .map_err(|error| map_sdk_error("accept_session", error))?;
            locked_until = codec::system_time(receiver.session_locked_until());
        }
        Ok(Box::new(AzureSessionReceiver {
            link: Arc::new(SessionLink {
                queue: queue.clone(),
                session_id,
                receiver: AsyncMutex::new(Some(receiver)),
                locked_until: parking_lot::Mutex::new(locked_until),
                backlog: Backlog::default(),
                provider: self.inner.clone(),
            }),
        }))
    }
}

fn session_options(prefetch_count: u32) -> ServiceBusSessionReceiverOptions {
    ServiceBusSessionReceiverOptions {
        prefetch_count,
        receive_mode: ServiceBusReceiveMode::PeekLock,
        identifier: None,
    }
}

/// A session held through its own receive link.
pub(super) struct SessionLink {
    pub(super) queue: QueueName,
    pub(super) session_id: SessionId,
    pub(super) receiver: AsyncMutex<Option<ServiceBusSessionReceiver>>,
    pub(super) locked_until: parking_lot::Mutex<SystemTime>,
    /// Whether the session's last receive filled its batch.
    pub(super) backlog: Backlog,
    /// The provider the session came from: its closed flag and capabilities apply.
    pub(super) provider: Arc<Inner>,
}

impl SessionLink {
    pub(super) fn check_lock(&self, operation: &'static str) -> Result<()> {
        if self.provider.closed.load(Ordering::Acquire) {
            return Err(closed(operation));
        }
        if SystemTime::now() >= *self.locked_until.lock() {
            return Err(lock_lost(operation, "the session lock expired"));
        }
        Ok(())
    }

    pub(super) async fn renew(&self) -> Result<SystemTime> {
        self.check_lock("renew_session_lock")?;
        let mut guard = self.receiver.lock().await;
        let receiver = guard.as_mut().ok_or_else(|| closed("renew_session_lock"))?;
        sdk_call(receiver.renew_session_lock())
            .await
            .map_err(|error| map_sdk_error("renew_session_lock", error))?;
        let locked_until = codec::system_time(receiver.session_locked_until());
        *self.locked_until.lock() = locked_until;
        Ok(locked_until)
    }
}

/// A session of a session-enabled queue, held by this receiver until closed or its lock
/// expires.
struct AzureSessionReceiver {
    link: Arc<SessionLink>,
}

impl fmt::Debug for AzureSessionReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureSessionReceiver")
            .field("queue", &self.link.queue)
            .field("session_id", &self.link.session_id)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl SessionReceiver for AzureSessionReceiver {
    fn queue(&self) -> &QueueName {
        &self.link.queue
    }

    fn session_id(&self) -> &SessionId {
        &self.link.session_id
    }

    fn locked_until(&self) -> SystemTime {
        *self.link.locked_until.lock()
    }

    async fn receive(&self, max_messages: usize, wait: Duration) -> Result<Vec<ReceivedMessage>> {
        uninterrupted(async {
            let max = check_max_messages(max_messages, &self.link.provider.capabilities)?;
            let max = u32::try_from(max).unwrap_or(u32::MAX);
            let mut polls = Polls::new(wait);
            loop {
                self.link.check_lock("receive")?;
                let mut guard = self.link.receiver.lock().await;
                let receiver = guard.as_mut().ok_or_else(|| closed("receive"))?;
                let raw = poll(receiver, max, polls.next_wait(), &self.link.backlog)
                    .await
                    .map_err(|error| map_sdk_error("receive", error))?;
                let locked_until = *self.link.locked_until.lock();
                let messages = accept_deliveries(
                    receiver,
                    raw,
                    &self.link.queue,
                    Some((&self.link.session_id, locked_until)),
                    || DeliveryLink::Session(self.link.clone()),
                )
                .await;
                drop(guard);
                if polls.over(!messages.is_empty()) {
                    return Ok(messages);
                }
            }
        })
        .await
    }

    async fn renew_session_lock(&self) -> Result<SystemTime> {
        uninterrupted(async { self.link.renew().await }).await
    }

    async fn state(&self) -> Result<Option<Bytes>> {
        uninterrupted(async {
            self.link.check_lock("session_state")?;
            let mut guard = self.link.receiver.lock().await;
            let receiver = guard.as_mut().ok_or_else(|| closed("session_state"))?;
            let state = match sdk_call(receiver.session_state()).await {
                Ok(state) => state,
                // Service Bus answers a session without state with `session-state: null`;
                // azservicebus 0.25 decodes the answer as a map of binaries only and fails on the
                // null. The answer holds nothing else, so a body that does not decode is that null.
                Err(error) if crate::error::is_undecodable_answer(&error) => return Ok(None),
                Err(error) => return Err(map_sdk_error("session_state", error)),
            };
            // Service Bus keeps no difference between an empty state and none.
            Ok((!state.is_empty()).then(|| Bytes::from(state)))
        })
        .await
    }

    async fn set_state(&self, state: Option<Bytes>) -> Result<()> {
        uninterrupted(async {
            self.link.check_lock("set_session_state")?;
            let mut guard = self.link.receiver.lock().await;
            let receiver = guard.as_mut().ok_or_else(|| closed("set_session_state"))?;
            sdk_call(receiver.set_session_state(state.map(|s| s.to_vec()).unwrap_or_default()))
                .await
                .map_err(|error| map_sdk_error("set_session_state", error))
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        uninterrupted(async {
            let receiver = self.link.receiver.lock().await.take();
            if let Some(receiver) = receiver {
                sdk_call(receiver.dispose())
                    .await
                    .map_err(|error| map_sdk_error("close_session", error))?;
            }
            Ok(())
        })
        .await
    }
}
