//! [`SqsProvider`]: the provider contract over `aws-sdk-sqs`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::config::{BehaviorVersion, Region};
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use aws_smithy_http_client::tls::{Provider as TlsProvider, rustls_provider::CryptoMode};
use parking_lot::Mutex;
use queue_core::raw::batching::copy_of;
use queue_core::raw::check_max_messages;
use queue_core::{
    AcceptSessionOptions, Capabilities, DeadLetterReason, ErrorKind, Message, PeekOptions,
    PeekedMessage, QueueCounts, QueueError, QueueName, QueueProvider, Receipt, ReceiveOptions,
    ReceivedMessage, Result, SendOutcome, SessionReceiver, SubQueue,
};

use crate::codec::{self, Outgoing};
use crate::config::{SqsConfig, SqsCredentials, UnsessionedFifo};
use crate::error::{map_batch_entry_error, map_sdk_error};
use crate::queues::{QueueDirectory, QueueInfo};
use crate::settle::{SettleEntry, SettleKind, Settler};

/// The provider's name, in receipts and errors.
pub const NAME: &str = "sqs";
/// The most entries of one SQS batch call.
pub(crate) const MAX_BATCH_ENTRIES: usize = 10;
/// The most bytes of one `SendMessageBatch` call (all entries together).
const MAX_BATCH_BYTES: usize = 1_048_576;
/// The longest long poll of one `ReceiveMessage` call.
const MAX_LONG_POLL: Duration = Duration::from_secs(20);
/// How long opening a connection may take (the SDK's own default).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);
/// The longest visibility timeout SQS allows.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);

/// The Amazon SQS provider: standard and FIFO queues through `aws-sdk-sqs`.
///
/// Cloning is cheap and shares the client, its connections and the queue cache.
#[derive(Clone)]
pub struct SqsProvider {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    settler: Settler,
    /// How much longer than its long poll one receive attempt may take.
    attempt_timeout: Duration,
    queues: QueueDirectory,
    capabilities: Capabilities,
    unsessioned_fifo: UnsessionedFifo,
    closed: AtomicBool,
}

impl fmt::Debug for SqsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsProvider")
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// HTTPS through rustls on `ring` (one crypto library for the whole tree), certificates checked
/// against the system's roots.
fn https_client() -> aws_sdk_sqs::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(TlsProvider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The timeouts of the clients this provider builds: the SDK's connect timeout, and an attempt
/// timeout for every call (receives get their own, longer than their long poll:
/// [`receive_timeouts`]). Without one, a server that accepts a request and never answers hangs
/// the call for good.
fn timeouts(config: &SqsConfig) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(config.attempt_timeout)
        .build()
}

/// The timeouts of one receive: the client's, with every attempt (and read, and the whole
/// operation, where set) allowed its long poll plus `margin`.
fn receive_timeouts(
    base: Option<&TimeoutConfig>,
    long_poll: Duration,
    margin: Duration,
) -> TimeoutConfig {
    let attempt = long_poll + margin;
    let base = base
        .cloned()
        .unwrap_or_else(|| TimeoutConfig::builder().build());
    let mut builder = base.to_builder();
    builder
        .set_operation_attempt_timeout(Some(attempt))
        .set_read_timeout(base.read_timeout().map(|read| read.max(attempt)))
        .set_operation_timeout(base.operation_timeout().map(|whole| whole.max(attempt)));
    if base.connect_timeout().is_none() {
        builder.set_connect_timeout(Some(CONNECT_TIMEOUT));
    }
    builder.build()
}

/// What SQS can do, as the conformance suite checks it.
fn sqs_capabilities() -> Capabilities {
    let mut capabilities = Capabilities::default();
    capabilities.session_order_on_receive = true;
    capabilities.scheduling = true;
    capabilities.abandon_with_delay = true;
    capabilities.max_delivery_count = true;
    capabilities.time_to_live = true;
    capabilities.lock_renewal = true;
    capabilities.counts = true;
    // What a queue of the default size accepts: its limit less the dead-letter reserve (each
    // queue's own `MaximumMessageSize` is read at first use and applied the same way).
    capabilities.max_message_bytes =
        crate::queues::DEFAULT_MAX_MESSAGE_BYTES - queue_core::DEAD_LETTER_RESERVE;
    capabilities.max_batch_messages = MAX_BATCH_ENTRIES;
    capabilities.max_batch_bytes = MAX_BATCH_BYTES;
    capabilities.max_receive_messages = MAX_BATCH_ENTRIES;
    capabilities.max_properties = codec::MAX_PROPERTIES;
    capabilities
}

impl SqsProvider {
    /// Builds the client (HTTPS through rustls on `ring`, certificates checked against the
    /// system's roots) and, unless turned off, checks the credentials and every configured
    /// queue with one cheap call each, so a wrong setting fails here and not at the first send.
    pub async fn connect(config: SqsConfig) -> Result<Self> {
        let endpoint = config.resolved_endpoint(|name| std::env::var(name).ok())?;
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).http_client(https_client());
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(credentials) = config.credentials.to_sdk() {
            loader = loader.credentials_provider(credentials);
        }
        if let Some(endpoint) = &endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        loader = loader.timeout_config(timeouts(&config));
        let sdk_config = loader.load().await;
        if sdk_config.region().is_none() {
            return Err(QueueError::new(
                ErrorKind::Config,
                "no AWS region: set one in SqsConfig::with_region, AWS_REGION or the profile",
            ));
        }
        let provider = Self::from_client(Client::new(&sdk_config), &config);
        if config.check_on_connect {
            provider.check(&config.queues).await?;
        }
        Ok(provider)
    }

    /// A provider for an SQS server on this machine (moto, LocalStack, ElasticMQ), built
    /// without any I/O: region `us-east-1`, the fixed credentials `test`/`test` (unless `config`
    /// sets others), no checks. `endpoint` must be a loopback address.
    pub fn for_local_server(endpoint: &str, config: &SqsConfig) -> Result<Self> {
        let config = config.clone().with_endpoint(endpoint)?;
        let url = endpoint.parse::<http::Uri>().ok();
        if !url
            .as_ref()
            .and_then(http::Uri::host)
            .is_some_and(queue_core::raw::endpoint::is_loopback_host)
        {
            return Err(QueueError::new(
                ErrorKind::Config,
                format!("{endpoint:?} is not a local server: use SqsProvider::connect"),
            ));
        }
        let credentials = match &config.credentials {
            SqsCredentials::Chain => SqsCredentials::fixed("test", "test"),
            other => other.clone(),
        }
        .to_sdk();
        let mut builder = aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(
                config
                    .region
                    .clone()
                    .unwrap_or_else(|| "us-east-1".to_owned()),
            ))
            .endpoint_url(endpoint)
            .timeout_config(timeouts(&config))
            .http_client(https_client());
        if let Some(credentials) = credentials {
            builder = builder.credentials_provider(credentials);
        }
        let sdk_config = builder.build();
        Ok(Self::from_client(Client::from_conf(sdk_config), &config))
    }

    /// Wraps a client built elsewhere (an SSO profile, custom retries or interceptors). The
    /// endpoint rules of [`SqsConfig::with_endpoint`] are then the caller's to keep; of `config`
    /// only the dead-letter queues and the [`UnsessionedFifo`] choice are used.
    pub fn from_client(client: Client, config: &SqsConfig) -> Self {
        SqsProvider {
            inner: Arc::new(Inner {
                settler: Settler::new(client.clone(), config.settle_linger),
                attempt_timeout: config.attempt_timeout,
                client,
                queues: QueueDirectory::new(config.dead_letter_queues.clone()),
                capabilities: sqs_capabilities(),
                unsessioned_fifo: config.unsessioned_fifo.clone(),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// How long settles wait to be coalesced into batch calls; `None` when each settle is its
    /// own call ([`SqsConfig::with_settle_linger`]).
    pub fn settle_linger(&self) -> Option<Duration> {
        self.inner.settler.linger()
    }

    /// The SDK client, for what this provider does not cover (creating queues, say).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Checks that the credentials work and that each queue exists (caching what it learns).
    /// Without queues, one `ListQueues` call of at most one result checks the credentials.
    pub async fn check(&self, queues: &[QueueName]) -> Result<()> {
        self.check_open()?;
        if queues.is_empty() {
            self.inner
                .client
                .list_queues()
                .max_results(1)
                .send()
                .await
                .map_err(|error| map_sdk_error("ListQueues", error))?;
        }
        for queue in queues {
            self.validate_queue_name(queue)?;
            self.queue(queue).await?;
        }
        Ok(())
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(QueueError::new(
                ErrorKind::Closed,
                "the SQS provider was closed",
            ));
        }
        Ok(())
    }

    async fn queue(&self, name: &QueueName) -> Result<Arc<QueueInfo>> {
        self.inner
            .queues
            .get(&self.inner.client, name)
            .await
            .map_err(|error| self.noted(name, error))
    }

    /// Forgets a cached queue that SQS says is gone, and passes the error on.
    fn noted(&self, queue: &QueueName, error: QueueError) -> QueueError {
        if error.kind() == ErrorKind::NotFound {
            self.inner.queues.forget(queue);
        }
        error
    }

    /// Sends one chunk; the entries are moved into the request, not copied.
    async fn send_batch_chunk(
        &self,
        info: &QueueInfo,
        chunk: Vec<(usize, Outgoing)>,
    ) -> Result<HashMap<usize, Result<()>>> {
        let entries = chunk
            .into_iter()
            .map(|(index, outgoing)| {
                SendMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .message_body(outgoing.body)
                    .set_message_attributes(Some(outgoing.attributes))
                    .set_message_group_id(outgoing.group_id)
                    .set_message_deduplication_id(outgoing.deduplication_id)
                    .set_delay_seconds(outgoing.delay_seconds)
                    .build()
                    .map_err(|error| QueueError::invalid_input(format!("batch entry: {error}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let output = self
            .inner
            .client
            .send_message_batch()
            .queue_url(&info.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|error| self.noted(&info.name, map_sdk_error("SendMessageBatch", error)))?;
        Ok(entry_results(
            "SendMessageBatch",
            output.successful().iter().map(|done| done.id()),
            output.failed(),
        ))
    }

    /// Settles several receipts of one kind: each one still held becomes an entry (its
    /// visibility from `visibility`), the others fail at once; `done` turns a success into its
    /// value (and records it on the receipt).
    async fn settle_many<T>(
        &self,
        receipts: &[Receipt],
        kind: SettleKind,
        visibility: impl Fn(&SqsReceipt) -> i32,
        done: impl Fn(&SqsReceipt) -> T,
    ) -> Result<Vec<Result<T>>> {
        self.check_open()?;
        let now = SystemTime::now();
        let mut results: Vec<Option<Result<T>>> = Vec::with_capacity(receipts.len());
        let mut held = Vec::with_capacity(receipts.len());
        let mut settles = Vec::with_capacity(receipts.len());
        for receipt in receipts {
            match receipt
                .data::<SqsReceipt>(NAME)
                .and_then(|data| data.check_held(now).map(|()| data))
            {
                Ok(data) => {
                    results.push(None);
                    held.push(data);
                    settles.push((
                        data.queue.url.clone(),
                        kind,
                        SettleEntry {
                            handle: data.handle.clone(),
                            visibility_seconds: visibility(data),
                        },
                    ));
                }
                Err(error) => results.push(Some(Err(error))),
            }
        }
        let mut settled = if settles.is_empty() {
            Vec::new()
        } else {
            self.inner.settler.many(settles).await?
        }
        .into_iter()
        .zip(held);
        Ok(results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| match settled.next() {
                    Some((Ok(()), data)) => Ok(done(data)),
                    Some((Err(error), _)) => Err(error),
                    None => Err(QueueError::new(
                        ErrorKind::Provider,
                        "receipt was not settled",
                    )),
                })
            })
            .collect())
    }

    /// Turns SQS messages into deliveries; expired ones are deleted instead (the emulated time
    /// to live: SQS itself only drops messages after the queue's retention period).
    async fn deliver(
        &self,
        queue: &QueueName,
        info: &Arc<QueueInfo>,
        messages: Vec<aws_sdk_sqs::types::Message>,
        from_dead_letter_queue: bool,
        responded_at: SystemTime,
    ) -> Vec<ReceivedMessage> {
        let now = SystemTime::now();
        let locked_until = visibility_deadline(responded_at, info.visibility_timeout);
        let mut delivered = Vec::with_capacity(messages.len());
        let mut expired = Vec::new();
        for raw in messages {
            let Some(handle) = raw.receipt_handle().map(str::to_owned) else {
                // Without a handle the message cannot be settled; it comes back after the
                // visibility timeout.
                tracing::warn!(queue = %queue, sqs_message_id = raw.message_id().unwrap_or_default(), "SQS returned a message without a receipt handle");
                continue;
            };
            let incoming = codec::decode(&raw, from_dead_letter_queue, now);
            if !from_dead_letter_queue && codec::is_expired(&incoming.delivery, now) {
                tracing::debug!(queue = %queue, message_id = %incoming.message.message_id(), "time to live passed; deleting instead of delivering");
                expired.push(handle);
                continue;
            }
            let receipt = SqsReceipt {
                queue: Arc::clone(info),
                handle,
                deadline: Mutex::new(locked_until),
                settled: AtomicBool::new(false),
                from_dead_letter_queue,
                raw: Arc::new(raw),
            };
            delivered.push(ReceivedMessage {
                message: incoming.message,
                delivery: incoming.delivery,
                locked_until,
                receipt: Receipt::new(NAME, queue.clone(), None, receipt),
            });
        }
        for handle in expired {
            // Best effort: a failed delete brings the message back, to be dropped again.
            let entry = SettleEntry {
                handle,
                visibility_seconds: 0,
            };
            let deleted = self
                .inner
                .settler
                .one(&info.url, SettleKind::Delete, entry)
                .await;
            if let Err(error) = deleted {
                tracing::debug!(queue = %queue, %error, "deleting an expired message failed");
            }
        }
        delivered
    }

    /// SQS's approximate counts of one queue: (visible, not visible, delayed).
    async fn approximate_counts(&self, url: &str) -> Result<(u64, u64, u64)> {
        use aws_sdk_sqs::types::QueueAttributeName as Attribute;
        let output = self
            .inner
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(Attribute::ApproximateNumberOfMessages)
            .attribute_names(Attribute::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(Attribute::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|error| map_sdk_error("GetQueueAttributes", error))?;
        let attributes = output.attributes();
        let count = |name: Attribute| {
            attributes
                .and_then(|all| all.get(&name))
                .and_then(|value| value.parse().ok())
                .unwrap_or(0)
        };
        Ok((
            count(Attribute::ApproximateNumberOfMessages),
            count(Attribute::ApproximateNumberOfMessagesNotVisible),
            count(Attribute::ApproximateNumberOfMessagesDelayed),
        ))
    }

    /// Deletes the message of `receipt` (coalesced with other settles when batching is on).
    async fn delete(&self, receipt: &SqsReceipt) -> Result<()> {
        let entry = SettleEntry {
            handle: receipt.handle.clone(),
            visibility_seconds: 0,
        };
        self.inner
            .settler
            .one(&receipt.queue.url, SettleKind::Delete, entry)
            .await
    }

    /// Hides the message of `receipt` for `timeout` from now (coalesced with other settles
    /// when batching is on).
    async fn change_visibility(&self, receipt: &SqsReceipt, timeout: Duration) -> Result<()> {
        let entry = SettleEntry {
            handle: receipt.handle.clone(),
            visibility_seconds: codec::whole_seconds_up(timeout),
        };
        self.inner
            .settler
            .one(&receipt.queue.url, SettleKind::Visibility, entry)
            .await
    }
}

/// The SQS receipt handle of a receipt of this provider (for [`crate::testing`]).
#[cfg(feature = "testing")]
pub(crate) fn receipt_handle(receipt: &Receipt) -> Result<&str> {
    Ok(&receipt.data::<SqsReceipt>(NAME)?.handle)
}

/// What a receipt of this provider holds: where the message is, its handle, until when it is
/// hidden, whether it was settled, and the message as SQS holds it (for dead-lettering).
struct SqsReceipt {
    queue: Arc<QueueInfo>,
    handle: String,
    /// The visibility deadline as this process knows it ([`visibility_deadline`]): kept early
    /// rather than late, and moved by each renewal.
    deadline: Mutex<SystemTime>,
    settled: AtomicBool,
    from_dead_letter_queue: bool,
    raw: Arc<aws_sdk_sqs::types::Message>,
}

impl SqsReceipt {
    /// SQS accepts a stale receipt handle and may then silently not delete the message (its
    /// documentation says so), so the lock is judged here: a receipt settled already, or past
    /// its visibility deadline, is `LockLost` without a call. The message then comes back (or
    /// already has): duplicates are possible, loss is not.
    fn check_held(&self, now: SystemTime) -> Result<()> {
        if self.settled.load(Ordering::Acquire) {
            return Err(QueueError::new(
                ErrorKind::LockLost,
                "the message was already settled with this receipt",
            ));
        }
        let deadline = *self.deadline.lock();
        if now >= deadline {
            return Err(QueueError::new(
                ErrorKind::LockLost,
                format!(
                    "the visibility timeout of the message passed at {} ms since the epoch; \
                     receive it again",
                    queue_core::raw::time::to_unix_millis(deadline)
                ),
            ));
        }
        Ok(())
    }

    fn mark_settled(&self) {
        self.settled.store(true, Ordering::Release);
    }

    /// Records a renewal SQS just acknowledged: hidden for the queue's visibility timeout from
    /// now. Returns the new deadline.
    fn renewed(&self) -> SystemTime {
        let deadline = visibility_deadline(SystemTime::now(), self.queue.visibility_timeout);
        *self.deadline.lock() = deadline;
        deadline
    }
}

/// When a message hidden for `timeout` becomes visible again, as this process can tell. SQS
/// starts the clock when it picks the message, somewhere in the request (for a long poll, near
/// its end), and does not say when; the response's arrival is later than that by the trip
/// back, so a margin (a tenth of the timeout, at most half a second) keeps the estimate early.
fn visibility_deadline(responded_at: SystemTime, timeout: Duration) -> SystemTime {
    let margin = (timeout / 10).min(Duration::from_millis(500));
    responded_at + timeout - margin
}

fn unsupported(what: &str) -> QueueError {
    QueueError::unsupported(NAME, what)
}

/// The per-entry outcome of a batch call, by entry index (the batch entry ids are indexes).
pub(crate) fn entry_results<'a>(
    operation: &'static str,
    successful: impl Iterator<Item = &'a str>,
    failed: &[BatchResultErrorEntry],
) -> HashMap<usize, Result<()>> {
    let mut results = HashMap::new();
    for id in successful {
        if let Ok(index) = id.parse::<usize>() {
            results.insert(index, Ok(()));
        }
    }
    for failure in failed {
        if let Ok(index) = failure.id().parse::<usize>() {
            let error = map_batch_entry_error(
                operation,
                failure.code(),
                failure.message(),
                failure.sender_fault(),
            );
            results.insert(index, Err(error));
        }
    }
    results
}

/// Splits indexed items into chunks of at most `MAX_BATCH_ENTRIES` and `max_bytes`.
fn chunks<T>(
    items: Vec<(usize, T)>,
    size: impl Fn(&T) -> usize,
    max_bytes: usize,
) -> Vec<Vec<(usize, T)>> {
    let mut chunks: Vec<Vec<(usize, T)>> = Vec::new();
    let mut bytes = 0;
    for (index, item) in items {
        let item_size = size(&item);
        let fits = chunks
            .last()
            .is_some_and(|chunk| chunk.len() < MAX_BATCH_ENTRIES && bytes + item_size <= max_bytes);
        if !fits {
            chunks.push(Vec::new());
            bytes = 0;
        }
        bytes += item_size;
        if let Some(chunk) = chunks.last_mut() {
            chunk.push((index, item));
        }
    }
    chunks
}

/// Files one chunk's outcome into per-entry results. A failed call fails the whole batch when
/// nothing was done yet (the caller learns it at once), and each of its entries otherwise.
fn file_chunk_results<T>(
    results: &mut [Option<Result<T>>],
    chunk: impl Iterator<Item = usize>,
    outcome: Result<HashMap<usize, Result<()>>>,
    anything_done: bool,
    done: impl Fn(usize) -> T,
) -> Result<()> {
    match outcome {
        Ok(mut reported) => {
            for index in chunk {
                results[index] = Some(match reported.remove(&index) {
                    Some(Ok(())) => Ok(done(index)),
                    Some(Err(error)) => Err(error),
                    None => Err(QueueError::new(
                        ErrorKind::Provider,
                        "SQS reported neither success nor failure for this batch entry",
                    )),
                });
            }
            Ok(())
        }
        Err(error) if !anything_done => Err(error),
        Err(error) => {
            let whole = Arc::new(error);
            for index in chunk {
                results[index] = Some(Err(copy_of(&whole)));
            }
            Ok(())
        }
    }
}

#[async_trait]
impl QueueProvider for SqsProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn messaging_system(&self) -> &'static str {
        "aws_sqs"
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    /// SQS names: 1 to 80 ASCII letters, digits, `-` and `_`, a FIFO queue's ending in `.fifo`
    /// (counted in the 80).
    fn validate_queue_name(&self, queue: &QueueName) -> Result<()> {
        let name = queue.as_str();
        let stem = name.strip_suffix(".fifo").unwrap_or(name);
        if name.len() > 80 {
            return Err(QueueError::invalid_input(format!(
                "SQS queue names are at most 80 characters; {name:?} has {}",
                name.len()
            )));
        }
        if stem.is_empty()
            || !stem
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        {
            return Err(QueueError::invalid_input(format!(
                "SQS queue name {name:?}: only ASCII letters, digits, '-' and '_' are allowed, \
                 with '.fifo' at the end of a FIFO queue's name"
            )));
        }
        Ok(())
    }

    /// The body and attributes as encoded, as SQS counts them against a batch's 1 MiB.
    fn batch_entry_bytes(&self, message: &Message) -> usize {
        codec::batch_bytes(message)
    }

    async fn send(&self, queue: &QueueName, message: Message) -> Result<SendOutcome> {
        self.check_open()?;
        self.validate_queue_name(queue)?;
        let info = self.queue(queue).await?;
        let outgoing = codec::encode(
            &message,
            &info,
            &self.inner.unsessioned_fifo,
            SystemTime::now(),
        )?;
        self.inner
            .client
            .send_message()
            .queue_url(&info.url)
            .message_body(outgoing.body)
            .set_message_attributes(Some(outgoing.attributes))
            .set_message_group_id(outgoing.group_id)
            .set_message_deduplication_id(outgoing.deduplication_id)
            .set_delay_seconds(outgoing.delay_seconds)
            .send()
            .await
            .map_err(|error| self.noted(queue, map_sdk_error("SendMessage", error)))?;
        Ok(SendOutcome {
            message_id: message.message_id().clone(),
            sequence_number: None,
        })
    }

    async fn send_batch(
        &self,
        queue: &QueueName,
        messages: Vec<Message>,
    ) -> Result<Vec<Result<SendOutcome>>> {
        self.check_open()?;
        self.validate_queue_name(queue)?;
        let info = self.queue(queue).await?;
        let now = SystemTime::now();
        let mut results: Vec<Option<Result<SendOutcome>>> = Vec::with_capacity(messages.len());
        let mut ready = Vec::with_capacity(messages.len());
        for (index, message) in messages.iter().enumerate() {
            match codec::encode(message, &info, &self.inner.unsessioned_fifo, now) {
                Ok(outgoing) => {
                    results.push(None);
                    ready.push((index, outgoing));
                }
                Err(error) => results.push(Some(Err(error))),
            }
        }
        let mut anything_sent = false;
        for chunk in chunks(ready, |outgoing| outgoing.size, MAX_BATCH_BYTES) {
            let indexes: Vec<usize> = chunk.iter().map(|(index, _)| *index).collect();
            let outcome = self.send_batch_chunk(&info, chunk).await;
            let sent = outcome.is_ok();
            file_chunk_results(
                &mut results,
                indexes.into_iter(),
                outcome,
                anything_sent,
                |index| SendOutcome {
                    message_id: messages[index].message_id().clone(),
                    sequence_number: None,
                },
            )?;
            anything_sent |= sent;
        }
        Ok(results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(QueueError::new(
                        ErrorKind::Provider,
                        "batch entry was not sent",
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
        self.check_open()?;
        self.validate_queue_name(queue)?;
        let max = check_max_messages(options.max_messages, &self.inner.capabilities)?;
        let from_dead_letter_queue = options.sub_queue == SubQueue::DeadLetter;
        let main = self.queue(queue).await?;
        let info = if from_dead_letter_queue {
            self.inner
                .queues
                .dead_letter_of(&self.inner.client, &main)
                .await?
        } else {
            main
        };
        let deadline = tokio::time::Instant::now() + options.wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let long_poll = Duration::from_secs(
                u64::try_from(codec::whole_seconds_up(left.min(MAX_LONG_POLL))).unwrap_or(20),
            );
            let mut request = self
                .inner
                .client
                .receive_message()
                .queue_url(&info.url)
                .max_number_of_messages(i32::try_from(max).unwrap_or(10))
                .wait_time_seconds(codec::whole_seconds_up(long_poll))
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
                .message_attribute_names("All");
            if info.fifo {
                // Lets the SDK's retry of a lost response get the same messages back instead
                // of leaving them hidden until their visibility timeout.
                request = request.receive_request_attempt_id(uuid::Uuid::new_v4().to_string());
            }
            let timeouts = receive_timeouts(
                self.inner.client.config().timeout_config(),
                long_poll,
                self.inner.attempt_timeout,
            );
            let output = request
                .customize()
                .config_override(aws_sdk_sqs::config::Builder::default().timeout_config(timeouts))
                .send()
                .await
                .map_err(|error| self.noted(&info.name, map_sdk_error("ReceiveMessage", error)))?;
            let responded_at = SystemTime::now();
            let messages = output.messages.unwrap_or_default();
            let delivered = self
                .deliver(queue, &info, messages, from_dead_letter_queue, responded_at)
                .await;
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !delivered.is_empty() || remaining < Duration::from_millis(50) {
                return Ok(delivered);
            }
        }
    }

    async fn peek(&self, _queue: &QueueName, _options: PeekOptions) -> Result<Vec<PeekedMessage>> {
        Err(unsupported(
            "peeking (SQS has no way to read a message without receiving it)",
        ))
    }

    async fn complete(&self, receipt: &Receipt) -> Result<()> {
        let data = receipt.data::<SqsReceipt>(NAME)?;
        self.check_open()?;
        data.check_held(SystemTime::now())?;
        self.delete(data).await?;
        data.mark_settled();
        Ok(())
    }

    /// `DeleteMessageBatch`, ten receipts a call, grouped by queue.
    async fn complete_batch(&self, receipts: &[Receipt]) -> Result<Vec<Result<()>>> {
        self.settle_many(
            receipts,
            SettleKind::Delete,
            |_| 0,
            SqsReceipt::mark_settled,
        )
        .await
    }

    /// `ChangeMessageVisibility` to zero, or to the delay (at most 12 hours).
    async fn abandon(&self, receipt: &Receipt, delay: Option<Duration>) -> Result<()> {
        let data = receipt.data::<SqsReceipt>(NAME)?;
        self.check_open()?;
        let delay = delay.unwrap_or_default();
        if delay > MAX_VISIBILITY {
            return Err(QueueError::invalid_input(format!(
                "SQS hides a message for at most 12 hours; abandon asked for {} s",
                delay.as_secs()
            )));
        }
        data.check_held(SystemTime::now())?;
        self.change_visibility(data, delay).await?;
        data.mark_settled();
        Ok(())
    }

    /// Copies the message to the dead-letter queue with the reason, **then** deletes it: a
    /// failure between the two leaves it in both queues (a duplicate), never in neither. On a
    /// FIFO dead-letter queue the copy's deduplication id is derived from SQS's message id, so a
    /// retried dead-letter call within five minutes does not even duplicate.
    async fn dead_letter(&self, receipt: &Receipt, reason: DeadLetterReason) -> Result<()> {
        let data = receipt.data::<SqsReceipt>(NAME)?;
        self.check_open()?;
        if data.from_dead_letter_queue {
            return Err(QueueError::invalid_input(
                "the message is in the dead-letter queue already",
            ));
        }
        data.check_held(SystemTime::now())?;
        let target = self
            .inner
            .queues
            .dead_letter_of(&self.inner.client, &data.queue)
            .await?;
        let raw = &data.raw;
        let sqs_id = raw.message_id().unwrap_or_default();
        let body = raw.body().unwrap_or(codec::EMPTY_BODY);
        let attributes = codec::dead_letter_attributes(
            raw.message_attributes(),
            body,
            &reason,
            sqs_id,
            target.max_message_bytes,
        )?;
        let group_id = raw
            .attributes()
            .and_then(|system| system.get(&MessageSystemAttributeName::MessageGroupId))
            .cloned();
        let (group_id, deduplication_id) = if target.fifo {
            (
                Some(group_id.unwrap_or_else(|| "dead-letter".to_owned())),
                Some(format!("dl-{sqs_id}").chars().take(128).collect::<String>()),
            )
        } else {
            (group_id, None)
        };
        self.inner
            .client
            .send_message()
            .queue_url(&target.url)
            .message_body(body)
            .set_message_attributes(Some(attributes))
            .set_message_group_id(group_id)
            .set_message_deduplication_id(deduplication_id)
            .send()
            .await
            .map_err(|error| map_sdk_error("SendMessage (dead-letter copy)", error))?;
        tracing::debug!(queue = %receipt.queue(), dead_letter_queue = %target.name, reason = %reason.reason, "copied to the dead-letter queue; deleting the original");
        // Its own call, never coalesced: dead letters are rare, and an error naming this step
        // tells an operator the copy exists.
        self.inner
            .client
            .delete_message()
            .queue_url(&data.queue.url)
            .receipt_handle(&data.handle)
            .send()
            .await
            .map_err(|error| map_sdk_error("DeleteMessage (after dead-letter copy)", error))?;
        data.mark_settled();
        Ok(())
    }

    /// `ChangeMessageVisibility` to the queue's visibility timeout, counted from now.
    async fn renew_lock(&self, receipt: &Receipt) -> Result<SystemTime> {
        let data = receipt.data::<SqsReceipt>(NAME)?;
        self.check_open()?;
        data.check_held(SystemTime::now())?;
        self.change_visibility(data, data.queue.visibility_timeout)
            .await?;
        Ok(data.renewed())
    }

    /// `ChangeMessageVisibilityBatch` to each queue's visibility timeout, ten receipts a call.
    async fn renew_lock_batch(&self, receipts: &[Receipt]) -> Result<Vec<Result<SystemTime>>> {
        self.settle_many(
            receipts,
            SettleKind::Visibility,
            |data| codec::whole_seconds_up(data.queue.visibility_timeout),
            SqsReceipt::renewed,
        )
        .await
    }

    async fn accept_session(
        &self,
        _queue: &QueueName,
        _options: AcceptSessionOptions,
    ) -> Result<Option<Box<dyn SessionReceiver>>> {
        Err(unsupported(
            "accepting sessions: SQS has no session lock; on a FIFO queue plain receive keeps \
             each session's order (Capabilities::session_order_on_receive)",
        ))
    }

    /// SQS's approximate counts (`GetQueueAttributes`) of the queue and of its dead-letter queue,
    /// when it has one. SQS does not tell the oldest message's age (only CloudWatch does).
    async fn counts(&self, queue: &QueueName) -> Result<QueueCounts> {
        self.check_open()?;
        self.validate_queue_name(queue)?;
        let main = self.queue(queue).await?;
        let (active, in_flight, scheduled) = self.approximate_counts(&main.url).await?;
        let dead_letter = match self
            .inner
            .queues
            .dead_letter_of(&self.inner.client, &main)
            .await
        {
            Ok(dead) => {
                let (visible, invisible, _) = self.approximate_counts(&dead.url).await?;
                Some(visible + invisible)
            }
            Err(error) if error.kind() == ErrorKind::NotFound => None,
            Err(error) => return Err(error),
        };
        let mut counts = QueueCounts::default();
        counts.active = Some(active);
        counts.in_flight = Some(in_flight);
        counts.scheduled = Some(scheduled);
        counts.dead_letter = dead_letter;
        Ok(counts)
    }

    async fn cancel_scheduled(&self, _queue: &QueueName, _sequence_number: u64) -> Result<()> {
        Err(unsupported(
            "cancelling a scheduled message (SQS has no sequence numbers to name one)",
        ))
    }

    async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> SqsProvider {
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .build();
        SqsProvider::from_client(Client::from_conf(config), &SqsConfig::new())
    }

    #[test]
    fn queue_names_follow_sqs_rules() {
        let provider = provider();
        for ok in ["orders", "orders-2024_v1", "events.fifo", &"q".repeat(80)] {
            provider
                .validate_queue_name(&QueueName::new(ok).expect("valid"))
                .unwrap_or_else(|error| panic!("{ok}: {error}"));
        }
        for bad in ["a/b", "orders.v1", ".fifo", &"q".repeat(81), "x.fifo.fifo"] {
            let error = provider
                .validate_queue_name(&QueueName::new(bad).expect("valid"))
                .expect_err(bad);
            assert_eq!(error.kind(), ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn chunks_respect_count_and_bytes() {
        let items: Vec<(usize, usize)> = (0..25).map(|index| (index, 100)).collect();
        let split = chunks(items, |size| *size, 1_000);
        assert_eq!(split.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
        let items: Vec<(usize, usize)> = (0..5).map(|index| (index, 400)).collect();
        let split = chunks(items, |size| *size, 1_000);
        assert_eq!(split.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    }

    #[tokio::test]
    async fn what_sqs_cannot_do_is_unsupported() {
        use queue_core::QueueProviderExt;

        let provider = provider();
        let queue = QueueName::new("q").expect("valid");
        let error = provider
            .peek(&queue, PeekOptions::new(1))
            .await
            .expect_err("no peek");
        assert_eq!(error.kind(), ErrorKind::Unsupported);
        let error = provider
            .cancel_scheduled(&queue, 1)
            .await
            .expect_err("no cancel");
        assert_eq!(error.kind(), ErrorKind::Unsupported);
        let error = provider
            .accept_next_session(&queue, Duration::ZERO)
            .await
            .expect_err("no session lock");
        assert_eq!(error.kind(), ErrorKind::Unsupported);
        provider.close().await.expect("close");
        let error = provider
            .send(&queue, Message::new("x"))
            .await
            .expect_err("closed");
        assert_eq!(error.kind(), ErrorKind::Closed);
    }
}
