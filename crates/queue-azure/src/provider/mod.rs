//! [`AzureProvider`]: the provider contract over Service Bus's AMQP interface.
//!
//! By role: `connection` opens the SDK client, `send` sends, schedules and cancels, `receive`
//! pools receive links, turns deliveries into messages and settles them, and `session` accepts
//! and holds sessions. This module holds the provider, its shared state and the contract's
//! entry points, each of which runs the SDK [`uninterrupted`].

mod connection;
mod receive;
mod send;
mod session;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use azservicebus::{ServiceBusClient, ServiceBusSender};
use futures::FutureExt;
use queue_core::{
    AcceptSessionOptions, Capabilities, DeadLetterReason, ErrorKind, MAX_PROPERTIES, PeekOptions,
    PeekedMessage, QueueError, QueueName, QueueProvider, Receipt, ReceiveOptions, ReceivedMessage,
    Result, SendOutcome, SessionReceiver, SessionSelector, SubQueue,
};
use tokio::sync::Mutex as AsyncMutex;

use crate::config::{AzureConfig, Endpoint};
use crate::error::{closed, map_sdk_error};
use crate::links::Settle;
use crate::retry::FinalFailuresNotRetried;
use crate::sdk::sdk_call;

use self::connection::open_client;
use self::receive::{ReceiverPool, dispose_receiver};
use self::send::MAX_BATCH_MESSAGES;
use self::session::PendingAccept;

/// The provider's name in receipts, errors and metrics.
pub const NAME: &str = "azure";

/// The reason a message whose body queue-runtime cannot read is dead-lettered with.
pub const UNREADABLE_BODY_REASON: &str = "UnreadableBody";

/// Messages per `receive` call at most.
const MAX_RECEIVE_MESSAGES: usize = 100;
/// The longest Service Bus queue name.
const MAX_QUEUE_NAME_LEN: usize = 260;

type Client = ServiceBusClient<FinalFailuresNotRetried>;
type Shared<T> = Arc<AsyncMutex<Option<T>>>;

/// Runs an operation on the SDK outside tokio's cooperative budget, and turns a panic inside
/// the SDK into an error.
///
/// fe2o3-amqp 0.14.1 (under azservicebus 0.25) hands a transfer to its session task first and
/// only then records it as waiting for an outcome. A disposition processed in between is
/// dropped: the send or management request waits out its whole try timeout, and the SDK's
/// retry of a send then panics ("called after complete"). Tokio forces a yield there whenever
/// the task has used up its budget; outside the budget it does not, which leaves only the OS
/// preempting the thread at that moment (rare across a network, not across loopback on a busy
/// machine: see docs/providers.md). The SDK's panic is caught here, so the caller gets an error
/// saying the outcome is unknown, never a panic. Every call is bounded by the SDK's try
/// timeout, so nothing run here can spin.
fn uninterrupted<T>(operation: impl Future<Output = Result<T>>) -> impl Future<Output = Result<T>> {
    // A combinator, not an `async fn`: an `async fn` would hold the operation twice (as its
    // argument and as what it awaits), and move it between the two.
    AssertUnwindSafe(tokio::task::unconstrained(operation))
        .catch_unwind()
        .map(|outcome| {
            outcome.unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|text| (*text).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".to_owned());
                Err(QueueError::new(
                    ErrorKind::Provider,
                    format!(
                        "the Service Bus client failed inside (it panicked: {what}); the outcome \
                         of the operation is unknown"
                    ),
                ))
            })
        })
}

/// The Service Bus provider. Cheap to clone: clones share the connection and the links.
///
/// ```no_run
/// use queue_azure::{AzureConfig, AzureCredentials, AzureProvider};
/// use queue_core::{Message, QueueProvider};
///
/// # async fn run() -> Result<(), queue_core::QueueError> {
/// let config = AzureConfig::new(AzureCredentials::Default {
///     namespace: "example.servicebus.windows.net".into(),
/// })
/// .with_queue("orders".parse()?, false);
/// let provider = AzureProvider::connect(&config).await?;
/// provider.send(&"orders".parse()?, Message::new("hello")).await?;
/// provider.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct AzureProvider {
    inner: Arc<Inner>,
}

struct Inner {
    config: AzureConfig,
    endpoint: Endpoint,
    capabilities: Capabilities,
    /// Creates the send and receive links.
    client: AsyncMutex<Option<Client>>,
    /// Accepts next-available sessions only: the broker holds such an attach until a session
    /// is free, and the SDK holds its connection's lock meanwhile, so they get a connection of
    /// their own (opened on first use) and never stall sends and receives.
    session_client: AsyncMutex<Option<Client>>,
    senders: parking_lot::Mutex<HashMap<QueueName, Shared<ServiceBusSender>>>,
    receivers: parking_lot::Mutex<HashMap<(QueueName, bool), Arc<ReceiverPool>>>,
    /// At most one next-session accept per queue outlives its caller's wait; the next caller
    /// takes it over instead of starting another.
    pending_accepts: parking_lot::Mutex<HashMap<QueueName, Arc<AsyncMutex<Option<PendingAccept>>>>>,
    closed: Arc<AtomicBool>,
}

impl Inner {
    /// The SDK prefetch of a link: `prefetch_count` as configured (0 by default).
    ///
    /// A consumer's hint ([`QueueProvider::set_prefetch_hint`]) is not followed on Service Bus:
    /// azservicebus 0.25 cannot give back what it fetched ahead, so buffered messages would stay
    /// locked a lock's duration after every shutdown, their locks out of the processor's reach;
    /// see docs/batching.md.
    fn prefetch(&self) -> u32 {
        self.config.prefetch_count
    }
}

impl fmt::Debug for AzureProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureProvider")
            .field("namespace", &self.inner.endpoint.namespace)
            .field("emulator", &self.inner.endpoint.emulator)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl AzureProvider {
    /// Connects to the namespace and, unless turned off, checks every configured queue: that
    /// it exists and is (or is not) session-enabled as configured.
    pub async fn connect(config: &AzureConfig) -> Result<Self> {
        config.validate()?;
        let endpoint = config.endpoint()?;
        let client = uninterrupted(open_client(config, &endpoint)).await?;
        let provider = AzureProvider {
            inner: Arc::new(Inner {
                capabilities: capabilities(config),
                config: config.clone(),
                endpoint,
                client: AsyncMutex::new(Some(client)),
                session_client: AsyncMutex::new(None),
                senders: parking_lot::Mutex::default(),
                receivers: parking_lot::Mutex::default(),
                pending_accepts: parking_lot::Mutex::default(),
                closed: Arc::new(AtomicBool::new(false)),
            }),
        };
        if config.check_on_connect
            && let Err(error) = provider.check().await
        {
            let _ = provider.close().await;
            return Err(error);
        }
        Ok(provider)
    }

    /// Checks every configured queue (what [`connect`](Self::connect) does unless turned off).
    pub async fn check(&self) -> Result<()> {
        for queue in self.inner.config.queues() {
            uninterrupted(self.check_queue(&queue.name, queue.sessions)).await?;
        }
        Ok(())
    }

    async fn check_queue(&self, queue: &QueueName, sessions: bool) -> Result<()> {
        let context = |error: QueueError| {
            QueueError::new(
                if error.kind() == ErrorKind::NotFound {
                    ErrorKind::Config
                } else {
                    error.kind()
                },
                format!("checking Service Bus queue {queue} failed: {error}"),
            )
            .with_source(error)
        };
        self.validate_queue_name(queue)?;
        self.sender(queue).await.map_err(context)?;
        // A plain (non-session) receive link is refused on a session-enabled queue; that
        // tells the two apart without touching a message.
        let plain_link = self.open_receiver(queue, SubQueue::Main).await;
        match (plain_link, sessions) {
            (Ok(link), false) => {
                self.pool(queue, SubQueue::Main).links.lock().push(link);
                Ok(())
            }
            (Ok(link), true) => {
                dispose_receiver(link).await;
                Err(QueueError::new(
                    ErrorKind::Config,
                    format!(
                        "Service Bus queue {queue} is configured with sessions but is not session-enabled"
                    ),
                ))
            }
            (Err(error), true) if error.kind() == ErrorKind::InvalidInput => Ok(()),
            (Err(error), false) if error.kind() == ErrorKind::InvalidInput => Err(QueueError::new(
                ErrorKind::Config,
                format!(
                    "Service Bus queue {queue} is session-enabled but configured without sessions"
                ),
            )
            .with_source(error)),
            (Err(error), _) => Err(context(error)),
        }
    }

    /// The namespace host this provider is connected to.
    pub fn namespace(&self) -> &str {
        &self.inner.endpoint.namespace
    }

    fn ensure_open(&self, operation: &'static str) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(closed(operation))
        } else {
            Ok(())
        }
    }

    /// Whether the configuration declares `queue` session-enabled, when it declares it.
    fn declared_sessions(&self, queue: &QueueName) -> Option<bool> {
        self.inner
            .config
            .queues()
            .iter()
            .find(|declared| &declared.name == queue)
            .map(|declared| declared.sessions)
    }

    /// A settle as the contract's calls make it: the SDK's settle (awaited in place inside
    /// [`settle`](Self::settle)) boxed once, run [`uninterrupted`].
    fn settle_one(&self, receipt: &Receipt, how: Settle) -> impl Future<Output = Result<()>> {
        uninterrupted(sdk_call(self.settle(receipt, how)))
    }

    /// `complete_batch`: one boxed future settling each receipt in place.
    fn complete_all(&self, receipts: &[Receipt]) -> impl Future<Output = Result<Vec<Result<()>>>> {
        uninterrupted(sdk_call(self.complete_each(receipts)))
    }

    /// Closes every link and both connections; later calls fail as closed.
    async fn shut_down(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let pending = drain_values(&self.inner.pending_accepts);
        for slot in pending {
            if let Some(accept) = slot.lock().await.take() {
                accept.abort();
                if let Ok(Ok(receiver)) = accept.await {
                    let _ = receiver.dispose().await;
                }
            }
        }
        let senders = drain_values(&self.inner.senders);
        for sender in senders {
            if let Some(sender) = sender.lock().await.take() {
                let _ = sender.dispose().await;
            }
        }
        let pools = drain_values(&self.inner.receivers);
        for pool in pools {
            let links: Vec<_> = pool.links.lock().drain(..).collect();
            for link in links {
                dispose_receiver(link).await;
            }
        }
        let mut result = Ok(());
        for client in [&self.inner.client, &self.inner.session_client] {
            if let Some(client) = client.lock().await.take()
                && let Err(error) = client.dispose().await
            {
                result = Err(map_sdk_error("close", error));
            }
        }
        result
    }
}

#[async_trait]
impl QueueProvider for AzureProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn messaging_system(&self) -> &'static str {
        "servicebus"
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    fn validate_queue_name(&self, queue: &QueueName) -> Result<()> {
        validate_queue_name(queue.as_str())
    }

    async fn send(&self, queue: &QueueName, message: queue_core::Message) -> Result<SendOutcome> {
        self.ensure_open("send")?;
        self.validate_queue_name(queue)?;
        self.check_outgoing(queue, &message)?;
        uninterrupted(self.send_one(queue, &message)).await
    }

    async fn send_batch(
        &self,
        queue: &QueueName,
        messages: Vec<queue_core::Message>,
    ) -> Result<Vec<Result<SendOutcome>>> {
        uninterrupted(self.send_many(queue, messages)).await
    }

    async fn receive(
        &self,
        queue: &QueueName,
        options: ReceiveOptions,
    ) -> Result<Vec<ReceivedMessage>> {
        self.ensure_open("receive")?;
        self.validate_queue_name(queue)?;
        if options.sub_queue == SubQueue::Main && self.declared_sessions(queue) == Some(true) {
            return Err(QueueError::invalid_input(format!(
                "queue {queue} is session-enabled: receive through accept_session"
            )));
        }
        uninterrupted(self.receive_from(queue, options)).await
    }

    async fn peek(&self, queue: &QueueName, options: PeekOptions) -> Result<Vec<PeekedMessage>> {
        uninterrupted(self.peek_messages(queue, options)).await
    }

    async fn complete(&self, receipt: &Receipt) -> Result<()> {
        self.settle_one(receipt, Settle::Complete).await
    }

    async fn complete_batch(&self, receipts: &[Receipt]) -> Result<Vec<Result<()>>> {
        self.complete_all(receipts).await
    }

    async fn abandon(&self, receipt: &Receipt, delay: Option<Duration>) -> Result<()> {
        self.settle_one(receipt, Settle::abandon_at_once(delay)?)
            .await
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: DeadLetterReason) -> Result<()> {
        self.settle_one(receipt, Settle::DeadLetter(reason)).await
    }

    async fn renew_lock(&self, receipt: &Receipt) -> Result<SystemTime> {
        uninterrupted(self.renew_delivery_lock(receipt)).await
    }

    async fn accept_session(
        &self,
        queue: &QueueName,
        options: AcceptSessionOptions,
    ) -> Result<Option<Box<dyn SessionReceiver>>> {
        self.ensure_open("accept_session")?;
        self.validate_queue_name(queue)?;
        uninterrupted(async {
            match &options.session {
                SessionSelector::Next => self.accept_next(queue, options.wait).await,
                SessionSelector::Named(session) => {
                    self.accept_named(queue, session, options.wait).await
                }
            }
        })
        .await
    }

    async fn cancel_scheduled(&self, queue: &QueueName, sequence_number: u64) -> Result<()> {
        uninterrupted(self.cancel_one(queue, sequence_number)).await
    }

    async fn close(&self) -> Result<()> {
        uninterrupted(self.shut_down()).await
    }
}

fn capabilities(config: &AzureConfig) -> Capabilities {
    let mut capabilities = Capabilities::default();
    capabilities.sessions = true;
    capabilities.accept_named_session = true;
    capabilities.session_order_on_receive = false;
    capabilities.session_state = true;
    capabilities.scheduling = true;
    capabilities.cancel_scheduled = true;
    // Service Bus abandons at once; a delayed retry is the processor's business.
    capabilities.abandon_with_delay = false;
    capabilities.native_dead_letter = true;
    capabilities.max_delivery_count = true;
    capabilities.time_to_live = true;
    capabilities.peek = true;
    capabilities.lock_renewal = true;
    capabilities.sequence_numbers = true;
    // What a message may take: the namespace's limit less the room kept for a dead-letter
    // reason (the broker adds it as two application properties).
    capabilities.max_message_bytes = config
        .max_message_bytes
        .saturating_sub(queue_core::DEAD_LETTER_RESERVE);
    capabilities.max_batch_messages = MAX_BATCH_MESSAGES;
    capabilities.max_receive_messages = MAX_RECEIVE_MESSAGES;
    capabilities.max_properties = MAX_PROPERTIES;
    capabilities
}

/// Empties a cache, handing back what it held (to close outside the lock).
fn drain_values<K, V>(map: &parking_lot::Mutex<HashMap<K, V>>) -> Vec<V> {
    map.lock().drain().map(|(_, value)| value).collect()
}

/// Service Bus's queue naming rules, stricter than [`QueueName`]'s.
fn validate_queue_name(name: &str) -> Result<()> {
    if name.len() > MAX_QUEUE_NAME_LEN {
        return Err(QueueError::invalid_input(format!(
            "Service Bus queue names are at most {MAX_QUEUE_NAME_LEN} characters, got {}",
            name.len()
        )));
    }
    let alphanumeric_ends = name.split('/').all(|segment| {
        segment.starts_with(|c: char| c.is_ascii_alphanumeric())
            && segment.ends_with(|c: char| c.is_ascii_alphanumeric())
    });
    if !alphanumeric_ends {
        return Err(QueueError::invalid_input(format!(
            "Service Bus queue name {name:?}: each '/'-separated part must start and end with a letter or digit"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AzureCredentials;

    /// The size of the future `call` makes, from its type alone (nothing is connected or run).
    fn future_size<A, F: Future>(_: impl FnOnce(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn provider_futures_hold_no_sdk_future_inline() {
        // The SDK's futures are about 32 KiB (see `sdk`); each provider call's future is boxed
        // by `async_trait` and moved into `uninterrupted`, so an SDK call awaited inline would
        // be copied whole at each step. The bound leaves room for debug builds' larger frames.
        const MOST: usize = 8 * 1024;
        type Sent = Vec<queue_core::Message>;
        let sizes = [
            (
                "send_one",
                future_size(
                    |(p, q, m): (AzureProvider, QueueName, queue_core::Message)| async move {
                        p.send_one(&q, &m).await
                    },
                ),
            ),
            (
                "send_many",
                future_size(|(p, q, m): (AzureProvider, QueueName, Sent)| async move {
                    p.send_many(&q, m).await
                }),
            ),
            (
                "receive_from",
                future_size(
                    |(p, q, o): (AzureProvider, QueueName, ReceiveOptions)| async move {
                        p.receive_from(&q, o).await
                    },
                ),
            ),
            (
                "peek_messages",
                future_size(
                    |(p, q, o): (AzureProvider, QueueName, PeekOptions)| async move {
                        p.peek_messages(&q, o).await
                    },
                ),
            ),
            (
                "complete",
                future_size(|(p, r): (AzureProvider, Receipt)| async move {
                    p.settle_one(&r, Settle::Complete).await
                }),
            ),
            (
                "complete_batch",
                future_size(|(p, r): (AzureProvider, Vec<Receipt>)| async move {
                    p.complete_all(&r).await
                }),
            ),
            (
                "renew_lock",
                future_size(|(p, r): (AzureProvider, Receipt)| async move {
                    p.renew_delivery_lock(&r).await
                }),
            ),
        ];
        for (call, size) in sizes {
            assert!(size <= MOST, "{call}: a future of {size} bytes");
        }
    }

    #[test]
    fn queue_names_follow_service_bus_rules() {
        for good in [
            "orders",
            "a",
            "orders-2024_v1",
            "team/orders.v2",
            &"a".repeat(260),
        ] {
            assert!(validate_queue_name(good).is_ok(), "{good}");
        }
        for bad in [
            "-orders",
            "orders_",
            "team/.orders",
            "team./orders",
            &"a".repeat(261),
        ] {
            let error = validate_queue_name(bad).expect_err(bad);
            assert_eq!(error.kind(), ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn capabilities_declare_the_service_bus_feature_set() {
        let config = AzureConfig::new(AzureCredentials::Default {
            namespace: "x.servicebus.windows.net".into(),
        })
        .with_max_message_bytes(1024 * 1024);
        let capabilities = capabilities(&config);
        assert!(capabilities.sessions && capabilities.accept_named_session);
        assert!(capabilities.session_state && capabilities.native_dead_letter);
        assert!(capabilities.scheduling && capabilities.cancel_scheduled);
        assert!(capabilities.peek && capabilities.sequence_numbers && capabilities.lock_renewal);
        assert!(!capabilities.abandon_with_delay && !capabilities.session_order_on_receive);
        assert_eq!(
            capabilities.max_message_bytes,
            1024 * 1024 - queue_core::DEAD_LETTER_RESERVE
        );
    }
}
