//! Receiving from a queue or its dead-letter queue: pooled receive links, deliveries turned into
//! messages (unreadable ones dead-lettered, stale buffered ones let go), settlement on the
//! delivering link, lock renewal and peeking.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use azservicebus::primitives::service_bus_received_message::ServiceBusReceivedMessage;
use azservicebus::{
    ServiceBusReceiveMode, ServiceBusReceiver, ServiceBusReceiverOptions, SubQueue as SdkSubQueue,
};
use queue_core::raw::check_max_messages;
use queue_core::{
    DeadLetterReason, ErrorKind, PeekOptions, PeekedMessage, QueueError, QueueName, QueueProvider,
    Receipt, ReceiveOptions, ReceivedMessage, Result, SessionId, SubQueue,
};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::session::SessionLink;
use super::{AzureProvider, NAME, Shared, UNREADABLE_BODY_REASON};
use crate::codec::{self, Incoming};
use crate::error::{closed, lock_lost, map_sdk_error};
use crate::links::{Backlog, LinkReceiver, Polls, Settle, poll};
use crate::sdk::sdk_call;

/// A receive link held for one caller (the guard knows its link).
type LinkGuard = OwnedMutexGuard<Option<ServiceBusReceiver>>;

/// The receive links of one queue (or its dead-letter queue).
pub(super) struct ReceiverPool {
    pub(super) links: parking_lot::Mutex<Vec<Shared<ServiceBusReceiver>>>,
    pub(super) next: AtomicUsize,
    /// Whether the queue's last receive filled its batch (a backlog is a queue's, whichever
    /// link receives).
    pub(super) backlog: Backlog,
}

/// What a receipt holds: the delivery, the link it came through, and its lock as last known.
pub(super) struct Delivery {
    pub(super) link: DeliveryLink,
    pub(super) message: AsyncMutex<ServiceBusReceivedMessage>,
    pub(super) lock: parking_lot::Mutex<LockState>,
}

pub(super) enum DeliveryLink {
    Queue(Shared<ServiceBusReceiver>),
    Session(Arc<SessionLink>),
}

#[derive(Debug, Clone, Copy)]
pub(super) struct LockState {
    locked_until: SystemTime,
    settled: bool,
}

impl AzureProvider {
    pub(super) fn pool(&self, queue: &QueueName, sub_queue: SubQueue) -> Arc<ReceiverPool> {
        self.inner
            .receivers
            .lock()
            .entry((queue.clone(), sub_queue == SubQueue::DeadLetter))
            .or_insert_with(|| {
                Arc::new(ReceiverPool {
                    links: parking_lot::Mutex::new(Vec::new()),
                    next: AtomicUsize::new(0),
                    backlog: Backlog::default(),
                })
            })
            .clone()
    }

    pub(super) async fn open_receiver(
        &self,
        queue: &QueueName,
        sub_queue: SubQueue,
    ) -> Result<Shared<ServiceBusReceiver>> {
        let options = ServiceBusReceiverOptions {
            prefetch_count: self.inner.prefetch(),
            receive_mode: ServiceBusReceiveMode::PeekLock,
            identifier: None,
            sub_queue: match sub_queue {
                SubQueue::Main => SdkSubQueue::None,
                SubQueue::DeadLetter => SdkSubQueue::DeadLetter,
            },
        };
        let mut client = self.inner.client.lock().await;
        let client = client.as_mut().ok_or_else(|| closed("receive"))?;
        let receiver = sdk_call(client.create_receiver_for_queue(queue.as_str(), options))
            .await
            .map_err(|error| map_sdk_error("open receiver", error))?;
        Ok(Arc::new(AsyncMutex::new(Some(receiver))))
    }

    /// An idle receive link of the queue, locked for this caller: an idle open one, else a new
    /// one while the pool has room, else the next in turn (waiting for it).
    async fn checkout(
        &self,
        pool: &ReceiverPool,
        queue: &QueueName,
        sub_queue: SubQueue,
    ) -> Result<LinkGuard> {
        let busy = {
            let mut links = pool.links.lock();
            let mut idle = None;
            links.retain(|link| match link.clone().try_lock_owned() {
                // A link closed after a connection failure leaves the pool.
                Ok(guard) if guard.is_none() => false,
                Ok(guard) => {
                    if idle.is_none() {
                        idle = Some(guard);
                    }
                    true
                }
                Err(_) => true,
            });
            if let Some(found) = idle {
                return Ok(found);
            }
            (links.len() >= self.inner.config.receive_links_per_queue).then(|| {
                let turn = pool.next.fetch_add(1, Ordering::Relaxed) % links.len().max(1);
                links.get(turn).cloned()
            })
        };
        match busy.flatten() {
            Some(link) => Ok(link.lock_owned().await),
            None => {
                let link = self.open_receiver(queue, sub_queue).await?;
                pool.links.lock().push(link.clone());
                Ok(link.lock_owned().await)
            }
        }
    }

    /// Receives from a queue or its dead-letter queue through a pooled link.
    pub(super) async fn receive_from(
        &self,
        queue: &QueueName,
        options: ReceiveOptions,
    ) -> Result<Vec<ReceivedMessage>> {
        let max = check_max_messages(options.max_messages, &self.inner.capabilities)?;
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        let mut polls = Polls::new(options.wait);
        let pool = self.pool(queue, options.sub_queue);
        loop {
            let mut guard = self.checkout(&pool, queue, options.sub_queue).await?;
            let link = OwnedMutexGuard::mutex(&guard).clone();
            let Some(receiver) = guard.as_mut() else {
                continue;
            };
            let polled = poll(receiver, max, polls.next_wait(), &pool.backlog).await;
            let raw = match polled {
                Ok(raw) => raw,
                Err(error) => {
                    let error = map_sdk_error("receive", error);
                    if error.kind() == ErrorKind::Connection {
                        close_link(&mut guard).await;
                    }
                    return Err(error);
                }
            };
            let messages = accept_deliveries(receiver, raw, queue, None, || {
                DeliveryLink::Queue(link.clone())
            })
            .await;
            drop(guard);
            if polls.over(!messages.is_empty()) {
                return Ok(messages);
            }
        }
    }

    pub(super) async fn settle(&self, receipt: &Receipt, how: Settle) -> Result<()> {
        let operation = how.operation();
        self.ensure_open(operation)?;
        let delivery = receipt.data::<Delivery>(NAME)?;
        delivery.check_lock(operation)?;
        match &delivery.link {
            DeliveryLink::Queue(link) => {
                let mut guard = link.lock().await;
                let receiver = guard.as_mut().ok_or_else(|| {
                    lock_lost(
                        operation,
                        "the receive link that delivered the message is closed",
                    )
                })?;
                let result = settle_on(receiver, delivery, how).await;
                if matches!(&result, Err(error) if error.kind() == ErrorKind::Connection) {
                    close_link(&mut guard).await;
                }
                result
            }
            DeliveryLink::Session(session) => {
                session.check_lock(operation)?;
                let mut guard = session.receiver.lock().await;
                let receiver = guard
                    .as_mut()
                    .ok_or_else(|| lock_lost(operation, "the session receiver is closed"))?;
                settle_on(receiver, delivery, how).await
            }
        }
    }

    /// Completes each of `receipts` in turn, each on the link that delivered it, in one future:
    /// each SDK settle is made in place, as a loop of raw `complete_message` calls makes it,
    /// where a lone [`complete`](QueueProvider::complete) boxes it ([`sdk_call`]). Each receipt
    /// gets its own result; the whole call does not fail.
    pub(super) async fn complete_each(&self, receipts: &[Receipt]) -> Result<Vec<Result<()>>> {
        let mut results = Vec::with_capacity(receipts.len());
        for receipt in receipts {
            results.push(self.settle(receipt, Settle::Complete).await);
        }
        Ok(results)
    }

    pub(super) async fn peek_messages(
        &self,
        queue: &QueueName,
        options: PeekOptions,
    ) -> Result<Vec<PeekedMessage>> {
        self.ensure_open("peek")?;
        self.validate_queue_name(queue)?;
        if options.max_messages == 0 {
            return Err(QueueError::invalid_input("max_messages must be at least 1"));
        }
        let pool = self.pool(queue, options.sub_queue);
        let mut guard = self.checkout(&pool, queue, options.sub_queue).await?;
        let receiver = guard.as_mut().ok_or_else(|| closed("peek"))?;
        // Always from an explicit sequence number: the SDK's "next" cursor is per link, and
        // links are shared. Sequence numbers start at 1 (where the SDK's own cursor starts).
        let from = options
            .from_sequence_number
            .map_or(1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let peeked = sdk_call(receiver.peek_messages(
            u32::try_from(options.max_messages).unwrap_or(u32::MAX),
            Some(from),
        ))
        .await
        .map_err(|error| map_sdk_error("peek", error))?;
        drop(guard);
        let now = SystemTime::now();
        Ok(peeked
            .iter()
            .map(|message| {
                let incoming = codec::decode(message.raw_amqp_message(), now);
                if let Some(what) = incoming.unreadable_body {
                    tracing::warn!(queue = %queue, body = what, "peeked a message whose body cannot be read; shown empty");
                }
                PeekedMessage {
                    message: incoming.message,
                    delivery: incoming.delivery,
                }
            })
            .collect())
    }

    pub(super) async fn renew_delivery_lock(&self, receipt: &Receipt) -> Result<SystemTime> {
        self.ensure_open("renew_lock")?;
        let delivery = receipt.data::<Delivery>(NAME)?;
        delivery.check_lock("renew_lock")?;
        match &delivery.link {
            DeliveryLink::Session(session) => session.renew().await,
            DeliveryLink::Queue(link) => {
                let mut guard = link.lock().await;
                let receiver = guard.as_mut().ok_or_else(|| {
                    lock_lost(
                        "renew_lock",
                        "the receive link that delivered the message is closed",
                    )
                })?;
                let mut message = delivery.message.lock().await;
                sdk_call(receiver.renew_message_lock(&mut message))
                    .await
                    .map_err(|error| map_sdk_error("renew_lock", error))?;
                let locked_until = message
                    .locked_until()
                    .map(codec::system_time)
                    .unwrap_or_else(SystemTime::now);
                delivery.lock.lock().locked_until = locked_until;
                Ok(locked_until)
            }
        }
    }
}

/// Closes a link that failed with a connection error: the pool drops it, and receipts it
/// delivered report their lock as lost (the broker releases them when the link goes).
async fn close_link(guard: &mut Option<ServiceBusReceiver>) {
    if let Some(receiver) = guard.take() {
        dispose_receiver_now(receiver).await;
    }
}

pub(super) async fn dispose_receiver(link: Shared<ServiceBusReceiver>) {
    if let Some(receiver) = link.lock().await.take() {
        dispose_receiver_now(receiver).await;
    }
}

/// Not an `async fn`: the receiver goes straight into the boxed disposal, so no future that may
/// close a link (every receive and settle) holds its kilobytes across the await.
pub(super) fn dispose_receiver_now(receiver: ServiceBusReceiver) -> impl Future<Output = ()> {
    let disposal = sdk_call(receiver.dispose());
    async move {
        if let Err(error) = disposal.await {
            tracing::debug!(%error, "closing a Service Bus receive link failed");
        }
    }
}

/// Turns delivered messages into [`ReceivedMessage`]s; a message whose body cannot be read is
/// dead-lettered at once with [`UNREADABLE_BODY_REASON`], never handed over nor dropped.
pub(super) async fn accept_deliveries<
    R: LinkReceiver<Delivery = ServiceBusReceivedMessage> + ?Sized,
>(
    receiver: &mut R,
    raw: Vec<ServiceBusReceivedMessage>,
    queue: &QueueName,
    session: Option<(&SessionId, SystemTime)>,
    link: impl Fn() -> DeliveryLink,
) -> Vec<ReceivedMessage> {
    let now = SystemTime::now();
    let mut messages = Vec::with_capacity(raw.len());
    for delivered in raw {
        let Incoming {
            message,
            delivery,
            locked_until,
            unreadable_body,
        } = codec::decode(delivered.raw_amqp_message(), now);
        if let Some(what) = unreadable_body {
            let id = delivered
                .message_id()
                .map(|id| id.into_owned())
                .unwrap_or_default();
            tracing::warn!(
                queue = %queue,
                service_bus_message_id = %id,
                body = what,
                "dead-lettering a message whose body cannot be read"
            );
            let reason = DeadLetterReason::new(
                UNREADABLE_BODY_REASON,
                format!(
                    "the body is {what}; queue-runtime reads data sections and text or binary values"
                ),
            );
            if let Err(error) =
                sdk_call(receiver.settle(&delivered, Settle::DeadLetter(reason))).await
            {
                // Not settled: the lock expires and the broker delivers it again (and
                // dead-letters it past the maximum delivery count).
                tracing::warn!(queue = %queue, service_bus_message_id = %id, %error, "dead-lettering an unreadable message failed");
            }
            continue;
        }
        let locked_until = session
            .map(|(_, until)| until)
            .or(locked_until)
            .unwrap_or(now);
        if session.is_none() && locked_until <= now {
            // A delivery that waited in the link's buffer past its lock (it arrived while an
            // earlier receive was draining its credit): the broker has made the message
            // available again, and hands it out anew with its delivery counted. This copy
            // could only fail to settle, so it is let go rather than handed over.
            tracing::debug!(
                queue = %queue,
                sequence_number = ?delivery.sequence_number,
                "skipping a buffered delivery whose lock already expired"
            );
            continue;
        }
        let receipt = Receipt::new(
            NAME,
            queue.clone(),
            session.map(|(id, _)| id.clone()),
            Delivery {
                link: link(),
                message: AsyncMutex::new(delivered),
                lock: parking_lot::Mutex::new(LockState {
                    locked_until,
                    settled: false,
                }),
            },
        );
        messages.push(ReceivedMessage {
            message,
            delivery,
            locked_until,
            receipt,
        });
    }
    messages
}

/// Settles `delivery` through `receiver` (the link that delivered it) and records that it is
/// settled.
async fn settle_on<R: LinkReceiver<Delivery = ServiceBusReceivedMessage> + ?Sized>(
    receiver: &mut R,
    delivery: &Delivery,
    how: Settle,
) -> Result<()> {
    let operation = how.operation();
    let message = delivery.message.lock().await;
    receiver
        .settle(&message, how)
        .await
        .map_err(|error| map_sdk_error(operation, error))?;
    delivery.lock.lock().settled = true;
    Ok(())
}

impl Delivery {
    fn check_lock(&self, operation: &'static str) -> Result<()> {
        self.lock.lock().check(operation, SystemTime::now())
    }
}

impl LockState {
    /// Settling after the lock ran out, or twice, is refused here: the SDK sends a
    /// disposition without waiting for the broker's answer, so the broker's refusal would
    /// never be seen.
    fn check(&self, operation: &'static str, now: SystemTime) -> Result<()> {
        if self.settled {
            return Err(lock_lost(operation, "the message was already settled"));
        }
        if now >= self.locked_until {
            return Err(lock_lost(operation, "the message lock expired"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn settled_or_expired_deliveries_are_refused_locally() {
        let now = SystemTime::now();
        let state = |locked_until, settled| LockState {
            locked_until,
            settled,
        };
        let later = now + Duration::from_secs(60);
        assert!(state(later, false).check("complete", now).is_ok());
        for refused in [state(later, true), state(now, false)] {
            let error = refused.check("complete", now).expect_err("refused");
            assert!(error.is_lock_lost(), "{error}");
        }
    }
}
