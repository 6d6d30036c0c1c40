//! [`AzureProvider`]: the provider contract over Service Bus's AMQP interface.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use azservicebus::client::service_bus_client::WithCustomRetryPolicy;
use azservicebus::primitives::service_bus_received_message::ServiceBusReceivedMessage;
use azservicebus::{
    CreateMessageBatchOptions, ServiceBusClient, ServiceBusClientOptions, ServiceBusMessage,
    ServiceBusMessageBatch, ServiceBusReceiveMode, ServiceBusReceiver, ServiceBusReceiverOptions,
    ServiceBusRetryOptions, ServiceBusSender, ServiceBusSenderOptions, ServiceBusSessionReceiver,
    ServiceBusSessionReceiverOptions, ServiceBusTransportType, SubQueue as SdkSubQueue,
};
use azure_core::credentials::{Secret, TokenCredential};
use azure_identity::{
    ClientSecretCredential, DefaultAzureCredential, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
};
use bytes::Bytes;
use queue_core::raw::{check_max_messages, check_message_size};
use queue_core::{
    AcceptSessionOptions, Capabilities, DeadLetterReason, ErrorKind, MAX_PROPERTIES, PeekOptions,
    PeekedMessage, QueueError, QueueName, QueueProvider, Receipt, ReceiveOptions, ReceivedMessage,
    Result, SendOutcome, SessionId, SessionReceiver, SessionSelector, SubQueue,
};
use secrecy::ExposeSecret;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tokio::task::JoinHandle;

use crate::codec::{self, Incoming};
use crate::config::{AzureConfig, AzureCredentials, AzureTransport, Endpoint};
use crate::error::{closed, lock_lost, map_sdk_error};
use crate::links::{LinkReceiver, Settle, next_poll, poll};
use crate::retry::FinalFailuresNotRetried;

/// The provider's name in receipts, errors and metrics.
pub const NAME: &str = "azure";

/// The reason a message whose body queue-runtime cannot read is dead-lettered with.
pub const UNREADABLE_BODY_REASON: &str = "UnreadableBody";

/// Messages per `send_batch` request at most (requests are also split by bytes).
const MAX_BATCH_MESSAGES: usize = 100;
/// Messages per `receive` call at most.
const MAX_RECEIVE_MESSAGES: usize = 100;
/// The longest Service Bus queue name.
const MAX_QUEUE_NAME_LEN: usize = 260;
/// How often a named session held by someone else is asked for again.
const NAMED_SESSION_RETRY: Duration = Duration::from_millis(500);

type Client = ServiceBusClient<FinalFailuresNotRetried>;
type Shared<T> = Arc<AsyncMutex<Option<T>>>;
/// A receive link held for one caller (the guard knows its link).
type LinkGuard = OwnedMutexGuard<Option<ServiceBusReceiver>>;
type PendingAccept = JoinHandle<std::result::Result<ServiceBusSessionReceiver, azure_core::Error>>;

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
    /// How many messages a consumer of each queue handles at once
    /// ([`QueueProvider::set_prefetch_hint`]).
    prefetch_hints: parking_lot::Mutex<HashMap<QueueName, usize>>,
    closed: Arc<AtomicBool>,
}

impl Inner {
    /// The SDK prefetch of a link of `queue` shared by `links` links: an explicit
    /// `prefetch_count` wins; else the consumer's hint spread over the links; else none.
    fn prefetch_for(&self, queue: &QueueName, links: usize) -> u32 {
        if self.config.prefetch_count > 0 {
            return self.config.prefetch_count;
        }
        self.prefetch_hints.lock().get(queue).map_or(0, |messages| {
            u32::try_from(messages.div_ceil(links.max(1))).unwrap_or(u32::MAX)
        })
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

/// The receive links of one queue (or its dead-letter queue).
struct ReceiverPool {
    links: parking_lot::Mutex<Vec<Shared<ServiceBusReceiver>>>,
    next: AtomicUsize,
}

/// What a receipt holds: the delivery, the link it came through, and its lock as last known.
struct Delivery {
    link: DeliveryLink,
    message: AsyncMutex<ServiceBusReceivedMessage>,
    lock: parking_lot::Mutex<LockState>,
}

enum DeliveryLink {
    Queue(Shared<ServiceBusReceiver>),
    Session(Arc<SessionLink>),
}

#[derive(Debug, Clone, Copy)]
struct LockState {
    locked_until: SystemTime,
    settled: bool,
}

impl AzureProvider {
    /// Connects to the namespace and, unless turned off, checks every configured queue: that
    /// it exists and is (or is not) session-enabled as configured.
    pub async fn connect(config: &AzureConfig) -> Result<Self> {
        config.validate()?;
        let endpoint = config.endpoint()?;
        let client = open_client(config, &endpoint).await?;
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
                prefetch_hints: parking_lot::Mutex::default(),
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
            self.check_queue(&queue.name, queue.sessions).await?;
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

    /// The cached send link of `queue`, created on first use.
    async fn sender(&self, queue: &QueueName) -> Result<Shared<ServiceBusSender>> {
        if let Some(sender) = self.inner.senders.lock().get(queue) {
            return Ok(sender.clone());
        }
        let created = {
            let mut client = self.inner.client.lock().await;
            let client = client.as_mut().ok_or_else(|| closed("send"))?;
            client
                .create_sender(queue.as_str(), ServiceBusSenderOptions::default())
                .await
                .map_err(|error| map_sdk_error("open sender", error))?
        };
        let mut senders = self.inner.senders.lock();
        // Another task may have raced us here; keep the first link, close ours.
        if let Some(existing) = senders.get(queue) {
            let existing = existing.clone();
            drop(senders);
            tokio::spawn(async move {
                let _ = created.dispose().await;
            });
            return Ok(existing);
        }
        let shared = Arc::new(AsyncMutex::new(Some(created)));
        senders.insert(queue.clone(), shared.clone());
        Ok(shared)
    }

    /// Drops a send link that failed with a connection error, so the next send opens a new one.
    fn forget_sender(&self, queue: &QueueName, error: &QueueError) {
        if error.kind() == ErrorKind::Connection
            && let Some(sender) = self.inner.senders.lock().remove(queue)
        {
            tokio::spawn(async move {
                if let Some(sender) = sender.lock().await.take() {
                    let _ = sender.dispose().await;
                }
            });
        }
    }

    fn pool(&self, queue: &QueueName, sub_queue: SubQueue) -> Arc<ReceiverPool> {
        self.inner
            .receivers
            .lock()
            .entry((queue.clone(), sub_queue == SubQueue::DeadLetter))
            .or_insert_with(|| {
                Arc::new(ReceiverPool {
                    links: parking_lot::Mutex::new(Vec::new()),
                    next: AtomicUsize::new(0),
                })
            })
            .clone()
    }

    async fn open_receiver(
        &self,
        queue: &QueueName,
        sub_queue: SubQueue,
    ) -> Result<Shared<ServiceBusReceiver>> {
        let options = ServiceBusReceiverOptions {
            prefetch_count: self
                .inner
                .prefetch_for(queue, self.inner.config.receive_links_per_queue),
            receive_mode: ServiceBusReceiveMode::PeekLock,
            identifier: None,
            sub_queue: match sub_queue {
                SubQueue::Main => SdkSubQueue::None,
                SubQueue::DeadLetter => SdkSubQueue::DeadLetter,
            },
        };
        let mut client = self.inner.client.lock().await;
        let client = client.as_mut().ok_or_else(|| closed("receive"))?;
        let receiver = client
            .create_receiver_for_queue(queue.as_str(), options)
            .await
            .map_err(|error| map_sdk_error("open receiver", error))?;
        Ok(Arc::new(AsyncMutex::new(Some(receiver))))
    }

    /// An idle receive link of the queue, locked for this caller: an idle open one, else a new
    /// one while the pool has room, else the next in turn (waiting for it).
    async fn checkout(&self, queue: &QueueName, sub_queue: SubQueue) -> Result<LinkGuard> {
        let pool = self.pool(queue, sub_queue);
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
    async fn receive_from(
        &self,
        queue: &QueueName,
        options: ReceiveOptions,
    ) -> Result<Vec<ReceivedMessage>> {
        let max = check_max_messages(options.max_messages, &self.inner.capabilities)?;
        let deadline = Instant::now() + options.wait;
        loop {
            let mut guard = self.checkout(queue, options.sub_queue).await?;
            let link = OwnedMutexGuard::mutex(&guard).clone();
            let Some(receiver) = guard.as_mut() else {
                continue;
            };
            let polled = poll(
                receiver,
                u32::try_from(max).unwrap_or(u32::MAX),
                next_poll(deadline),
            )
            .await;
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
            if !messages.is_empty() || Instant::now() >= deadline {
                return Ok(messages);
            }
        }
    }

    async fn settle(&self, receipt: &Receipt, how: Settle) -> Result<()> {
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

    async fn accept_next(
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
        tokio::spawn(async move {
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
                .accept_next_session_for_queue(
                    queue.as_str(),
                    session_options(inner.prefetch_for(&queue, 1)),
                )
                .await
        })
    }

    async fn accept_named(
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
                client
                    .accept_session_for_queue(
                        queue.as_str(),
                        session.as_str(),
                        session_options(self.inner.prefetch_for(queue, 1)),
                    )
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
            receiver
                .renew_session_lock()
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
                provider: self.inner.clone(),
            }),
        }))
    }

    async fn send_one(
        &self,
        queue: &QueueName,
        message: &queue_core::Message,
    ) -> Result<SendOutcome> {
        let outgoing = codec::encode(message)?;
        let sender = self.sender(queue).await?;
        let mut guard = sender.lock().await;
        let sender_link = guard.as_mut().ok_or_else(|| closed("send"))?;
        let result = match outgoing.scheduled_at {
            Some(at) => sender_link
                .schedule_messages(std::iter::once(outgoing.message), at)
                .await
                .map(|numbers| numbers.first().and_then(|n| u64::try_from(*n).ok())),
            None => sender_link
                .send_message(outgoing.message)
                .await
                .map(|()| None),
        };
        drop(guard);
        match result {
            Ok(sequence_number) => Ok(SendOutcome {
                message_id: message.message_id().clone(),
                sequence_number,
            }),
            Err(error) => {
                let error = map_sdk_error("send", error);
                self.forget_sender(queue, &error);
                Err(error)
            }
        }
    }

    /// Refuses a message whose session presence does not match what the configuration says
    /// of the queue (the broker would refuse the first case too, less clearly).
    fn check_session_presence(
        &self,
        queue: &QueueName,
        message: &queue_core::Message,
    ) -> Result<()> {
        match (self.declared_sessions(queue), message.session_id()) {
            (Some(true), None) => Err(QueueError::invalid_input(format!(
                "queue {queue} is session-enabled: every message needs a session id"
            ))),
            (Some(false), Some(_)) => Err(QueueError::invalid_input(format!(
                "queue {queue} has no sessions: a message with a session id would lose its order"
            ))),
            _ => Ok(()),
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

    /// Records the outcome of one batch request for each message in it (`in_batch`, emptied).
    fn record_batch(
        &self,
        queue: &QueueName,
        messages: &[queue_core::Message],
        results: &mut [Option<Result<SendOutcome>>],
        in_batch: &mut Vec<usize>,
        sent: std::result::Result<(), azure_core::Error>,
    ) {
        let error = sent.err().map(|error| map_sdk_error("send_batch", error));
        if let Some(error) = &error {
            self.forget_sender(queue, error);
        }
        for index in in_batch.drain(..) {
            results[index] = Some(match &error {
                None => Ok(SendOutcome {
                    message_id: messages[index].message_id().clone(),
                    sequence_number: None,
                }),
                Some(error) => Err(QueueError::new(error.kind(), error.message().to_owned())
                    .with_operation("send_batch")),
            });
        }
    }

    fn check_outgoing(&self, queue: &QueueName, message: &queue_core::Message) -> Result<()> {
        check_message_size(message.approximate_size(), &self.inner.capabilities)?;
        self.check_session_presence(queue, message)
    }
}

fn client_closed() -> azure_core::Error {
    azure_core::Error::message(
        azure_core::error::ErrorKind::Other,
        "The client is disposed",
    )
}

fn session_options(prefetch_count: u32) -> ServiceBusSessionReceiverOptions {
    ServiceBusSessionReceiverOptions {
        prefetch_count,
        receive_mode: ServiceBusReceiveMode::PeekLock,
        identifier: None,
    }
}

async fn open_client(config: &AzureConfig, endpoint: &Endpoint) -> Result<Client> {
    open_sdk_client(config, endpoint)
        .await
        .map_err(|error| map_sdk_error("connect", error))
}

async fn open_sdk_client(
    config: &AzureConfig,
    endpoint: &Endpoint,
) -> std::result::Result<Client, azure_core::Error> {
    let mut retry_options = ServiceBusRetryOptions::default();
    // Validated by AzureConfig::validate (1 s to 1 h, inside the SDK's range).
    let _ = retry_options.set_try_timeout(config.operation_timeout);
    let options = ServiceBusClientOptions {
        transport_type: match config.transport {
            AzureTransport::Amqp => ServiceBusTransportType::AmqpTcp,
            AzureTransport::AmqpWebSockets => ServiceBusTransportType::AmqpWebSocket,
        },
        retry_options,
        ..ServiceBusClientOptions::default()
    };
    match &config.credentials {
        AzureCredentials::ConnectionString(secret) if endpoint.emulator => {
            WithCustomRetryPolicy::<FinalFailuresNotRetried>::unsecured()
                .new_from_connection_string(secret.expose_secret(), options)
                .await
        }
        AzureCredentials::ConnectionString(secret) => {
            ServiceBusClient::with_custom_retry_policy::<FinalFailuresNotRetried>()
                .new_from_connection_string(secret.expose_secret(), options)
                .await
        }
        other => {
            let credential = token_credential(other)?;
            ServiceBusClient::with_custom_retry_policy::<FinalFailuresNotRetried>()
                .new_from_token_credential(endpoint.namespace.clone(), credential, options)
                .await
        }
    }
}

fn token_credential(
    credentials: &AzureCredentials,
) -> std::result::Result<Arc<dyn TokenCredential>, azure_core::Error> {
    Ok(match credentials {
        AzureCredentials::Default { .. } => DefaultAzureCredential::new()?,
        AzureCredentials::ManagedIdentity { client_id, .. } => {
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                ..ManagedIdentityCredentialOptions::default()
            }))?
        }
        AzureCredentials::ClientSecret {
            tenant_id,
            client_id,
            secret,
            ..
        } => ClientSecretCredential::new(
            tenant_id,
            client_id.clone(),
            Secret::new(secret.expose_secret().to_owned()),
            None,
        )?,
        AzureCredentials::WorkloadIdentity { .. } => WorkloadIdentityCredential::new(None)?,
        AzureCredentials::Token { credential, .. } => credential.clone(),
        AzureCredentials::ConnectionString(_) => {
            return Err(azure_core::Error::message(
                azure_core::error::ErrorKind::Credential,
                "a connection string is not a token credential",
            ));
        }
    })
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

/// Closes a link that failed with a connection error: the pool drops it, and receipts it
/// delivered report their lock as lost (the broker releases them when the link goes).
async fn close_link(guard: &mut Option<ServiceBusReceiver>) {
    if let Some(receiver) = guard.take() {
        dispose_receiver_now(receiver).await;
    }
}

async fn dispose_receiver(link: Shared<ServiceBusReceiver>) {
    if let Some(receiver) = link.lock().await.take() {
        dispose_receiver_now(receiver).await;
    }
}

async fn dispose_receiver_now(receiver: ServiceBusReceiver) {
    if let Err(error) = receiver.dispose().await {
        tracing::debug!(%error, "closing a Service Bus receive link failed");
    }
}

/// Turns delivered messages into [`ReceivedMessage`]s; a message whose body cannot be read is
/// dead-lettered at once with [`UNREADABLE_BODY_REASON`], never handed over nor dropped.
async fn accept_deliveries<R: LinkReceiver + ?Sized>(
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
            if let Err(error) = receiver
                .settle(&delivered, Settle::DeadLetter(reason))
                .await
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
async fn settle_on<R: LinkReceiver + ?Sized>(
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

#[async_trait]
impl QueueProvider for AzureProvider {
    /// Sizes the SDK prefetch of the links opened from now on for `queue` (unless
    /// `prefetch_count` is configured): the hint spread over the queue's receive links, and as
    /// given for a session link.
    fn set_prefetch_hint(&self, queue: &QueueName, messages: usize) {
        self.inner
            .prefetch_hints
            .lock()
            .insert(queue.clone(), messages);
    }

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
        self.send_one(queue, &message).await
    }

    async fn send_batch(
        &self,
        queue: &QueueName,
        messages: Vec<queue_core::Message>,
    ) -> Result<Vec<Result<SendOutcome>>> {
        self.ensure_open("send_batch")?;
        self.validate_queue_name(queue)?;
        let sender = self.sender(queue).await?;
        let mut results: Vec<Option<Result<SendOutcome>>> = messages.iter().map(|_| None).collect();
        let mut immediate = Vec::new();
        let mut scheduled = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            match self
                .check_outgoing(queue, message)
                .and_then(|()| codec::encode(message))
            {
                Err(error) => results[index] = Some(Err(error)),
                Ok(outgoing) if outgoing.scheduled_at.is_some() => scheduled.push(index),
                Ok(outgoing) => immediate.push((index, outgoing.message)),
            }
        }
        if !immediate.is_empty() {
            // The link is held for every batch of the call: a batch failing with a connection
            // error cannot take it away from the next ones (those then fail on their own), so
            // once something was sent, every message gets its own result.
            let mut guard = sender.lock().await;
            let link = guard.as_mut().ok_or_else(|| closed("send_batch"))?;
            let mut batch = new_batch(link)?;
            // The messages in `batch`, by index.
            let mut in_batch: Vec<usize> = Vec::new();
            for (index, message) in immediate {
                let mut candidate = Some(message);
                while let Some(next) = candidate.take() {
                    let refused = if in_batch.len() >= MAX_BATCH_MESSAGES {
                        Some(next)
                    } else {
                        batch.try_add_message(next).err().map(recover_message)
                    };
                    match refused {
                        None => in_batch.push(index),
                        Some(_) if in_batch.is_empty() => {
                            results[index] = Some(Err(QueueError::message_too_large(
                                messages[index].approximate_size(),
                                usize::try_from(batch.max_size_in_bytes()).unwrap_or(usize::MAX),
                            )));
                        }
                        Some(refused) => {
                            let full = std::mem::replace(&mut batch, new_batch(link)?);
                            let sent = link.send_message_batch(full).await;
                            self.record_batch(queue, &messages, &mut results, &mut in_batch, sent);
                            candidate = Some(refused);
                        }
                    }
                }
            }
            if !in_batch.is_empty() {
                let sent = link.send_message_batch(batch).await;
                self.record_batch(queue, &messages, &mut results, &mut in_batch, sent);
            }
        }
        // Scheduling is its own broker call, with a sequence number per message.
        for index in scheduled {
            results[index] = Some(self.send_one(queue, &messages[index]).await);
        }
        Ok(results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(QueueError::new(
                        ErrorKind::Provider,
                        "the message was not sent (its batch was abandoned)",
                    ))
                })
            })
            .collect())
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
        self.receive_from(queue, options).await
    }

    async fn peek(&self, queue: &QueueName, options: PeekOptions) -> Result<Vec<PeekedMessage>> {
        self.ensure_open("peek")?;
        self.validate_queue_name(queue)?;
        if options.max_messages == 0 {
            return Err(QueueError::invalid_input("max_messages must be at least 1"));
        }
        let mut guard = self.checkout(queue, options.sub_queue).await?;
        let receiver = guard.as_mut().ok_or_else(|| closed("peek"))?;
        // Always from an explicit sequence number: the SDK's "next" cursor is per link, and
        // links are shared. Sequence numbers start at 1 (where the SDK's own cursor starts).
        let from = options
            .from_sequence_number
            .map_or(1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let peeked = receiver
            .peek_messages(
                u32::try_from(options.max_messages).unwrap_or(u32::MAX),
                Some(from),
            )
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

    async fn complete(&self, receipt: &Receipt) -> Result<()> {
        self.settle(receipt, Settle::Complete).await
    }

    async fn abandon(&self, receipt: &Receipt, delay: Option<Duration>) -> Result<()> {
        self.settle(receipt, Settle::abandon_at_once(delay)?).await
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: DeadLetterReason) -> Result<()> {
        self.settle(receipt, Settle::DeadLetter(reason)).await
    }

    async fn renew_lock(&self, receipt: &Receipt) -> Result<SystemTime> {
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
                receiver
                    .renew_message_lock(&mut message)
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

    async fn accept_session(
        &self,
        queue: &QueueName,
        options: AcceptSessionOptions,
    ) -> Result<Option<Box<dyn SessionReceiver>>> {
        self.ensure_open("accept_session")?;
        self.validate_queue_name(queue)?;
        match &options.session {
            SessionSelector::Next => self.accept_next(queue, options.wait).await,
            SessionSelector::Named(session) => {
                self.accept_named(queue, session, options.wait).await
            }
        }
    }

    async fn cancel_scheduled(&self, queue: &QueueName, sequence_number: u64) -> Result<()> {
        self.ensure_open("cancel_scheduled")?;
        self.validate_queue_name(queue)?;
        let sequence_number = i64::try_from(sequence_number).map_err(|_| {
            QueueError::new(
                ErrorKind::NotFound,
                format!("no scheduled message has sequence number {sequence_number}"),
            )
        })?;
        let sender = self.sender(queue).await?;
        let mut guard = sender.lock().await;
        let link = guard.as_mut().ok_or_else(|| closed("cancel_scheduled"))?;
        link.cancel_scheduled_message(sequence_number)
            .await
            .map_err(|error| map_sdk_error("cancel_scheduled", error))
    }

    async fn close(&self) -> Result<()> {
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

/// Empties a cache, handing back what it held (to close outside the lock).
fn drain_values<K, V>(map: &parking_lot::Mutex<HashMap<K, V>>) -> Vec<V> {
    map.lock().drain().map(|(_, value)| value).collect()
}

/// The message back from a refused `try_add_message` (too large for what is left, or not
/// encodable: either way it starts the next batch, where a real problem shows).
fn recover_message(error: azservicebus::amqp::error::TryAddMessageError) -> ServiceBusMessage {
    use azservicebus::amqp::error::TryAddMessageError;
    match error {
        TryAddMessageError::BatchFull(message) | TryAddMessageError::Codec { message, .. } => {
            message
        }
    }
}

/// An empty batch bounded by the send link's message size (the SDK refuses only explicit
/// sizes out of range, and none is asked for).
fn new_batch(link: &ServiceBusSender) -> Result<ServiceBusMessageBatch> {
    link.create_message_batch(CreateMessageBatchOptions::default())
        .map_err(|error| {
            QueueError::new(
                ErrorKind::Provider,
                format!("Service Bus batch could not be created: {error}"),
            )
        })
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

/// A session held through its own receive link.
struct SessionLink {
    queue: QueueName,
    session_id: SessionId,
    receiver: AsyncMutex<Option<ServiceBusSessionReceiver>>,
    locked_until: parking_lot::Mutex<SystemTime>,
    /// The provider the session came from: its closed flag and capabilities apply.
    provider: Arc<Inner>,
}

impl SessionLink {
    fn check_lock(&self, operation: &'static str) -> Result<()> {
        if self.provider.closed.load(Ordering::Acquire) {
            return Err(closed(operation));
        }
        if SystemTime::now() >= *self.locked_until.lock() {
            return Err(lock_lost(operation, "the session lock expired"));
        }
        Ok(())
    }

    async fn renew(&self) -> Result<SystemTime> {
        self.check_lock("renew_session_lock")?;
        let mut guard = self.receiver.lock().await;
        let receiver = guard.as_mut().ok_or_else(|| closed("renew_session_lock"))?;
        receiver
            .renew_session_lock()
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
        let max = check_max_messages(max_messages, &self.link.provider.capabilities)?;
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        let deadline = Instant::now() + wait;
        loop {
            self.link.check_lock("receive")?;
            let mut guard = self.link.receiver.lock().await;
            let receiver = guard.as_mut().ok_or_else(|| closed("receive"))?;
            let raw = poll(receiver, max, next_poll(deadline))
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
            if !messages.is_empty() || Instant::now() >= deadline {
                return Ok(messages);
            }
        }
    }

    async fn renew_session_lock(&self) -> Result<SystemTime> {
        self.link.renew().await
    }

    async fn state(&self) -> Result<Option<Bytes>> {
        self.link.check_lock("session_state")?;
        let mut guard = self.link.receiver.lock().await;
        let receiver = guard.as_mut().ok_or_else(|| closed("session_state"))?;
        let state = match receiver.session_state().await {
            Ok(state) => state,
            // Service Bus answers a session without state with `session-state: null`;
            // azservicebus 0.25 decodes the answer as a map of binaries only and fails on the
            // null. The answer holds nothing else, so a body that does not decode is that null.
            Err(error) if crate::error::is_undecodable_answer(&error) => return Ok(None),
            Err(error) => return Err(map_sdk_error("session_state", error)),
        };
        // Service Bus keeps no difference between an empty state and none.
        Ok((!state.is_empty()).then(|| Bytes::from(state)))
    }

    async fn set_state(&self, state: Option<Bytes>) -> Result<()> {
        self.link.check_lock("set_session_state")?;
        let mut guard = self.link.receiver.lock().await;
        let receiver = guard.as_mut().ok_or_else(|| closed("set_session_state"))?;
        receiver
            .set_session_state(state.map(|s| s.to_vec()).unwrap_or_default())
            .await
            .map_err(|error| map_sdk_error("set_session_state", error))
    }

    async fn close(&self) -> Result<()> {
        let receiver = self.link.receiver.lock().await.take();
        if let Some(receiver) = receiver {
            receiver
                .dispose()
                .await
                .map_err(|error| map_sdk_error("close_session", error))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
