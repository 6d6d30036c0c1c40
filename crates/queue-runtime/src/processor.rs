//! The processor: receive, open, call the application's handler, settle, with bounded
//! concurrency, per-session order, lock renewal, poison handling and graceful shutdown.
//!
//! The choices behind each behaviour: [docs/processor.md](../../../docs/processor.md).

use std::collections::HashMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::FutureExt;
use metrics::{Counter, Gauge, Histogram};
use parking_lot::Mutex;
use queue_core::{
    DeadLetterReason, ErrorKind, MessageId, QueueError, QueueName, ReceivedMessage, Result,
    SessionId,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
pub use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, warn};

use crate::client::{ClientSession, QueueClient};
use crate::resilience::RetryPolicy;
use crate::telemetry::{self, SessionIdPrivacy, propagation};

/// What the handler decided for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done: the message is completed (and, when sealed, remembered by the replay guard).
    Complete,
    /// Not now: the message is given back and delivered again, after `after` when given. Where
    /// the provider cannot delay a redelivery (Service Bus), the processor holds the message,
    /// renewing its lock, for the delay, then gives it back.
    Retry {
        /// How long to wait before the next delivery.
        after: Option<Duration>,
    },
    /// Never: the message is moved to the dead-letter queue with this reason.
    DeadLetter(DeadLetterReason),
}

impl Outcome {
    /// Give the message back for another delivery at once.
    pub fn retry() -> Self {
        Outcome::Retry { after: None }
    }

    /// Give the message back, to be delivered again after `delay`.
    pub fn retry_after(delay: Duration) -> Self {
        Outcome::Retry { after: Some(delay) }
    }

    /// Dead-letter the message. Keep `reason` short and stable: it labels a metric.
    pub fn dead_letter(reason: impl Into<String>, description: impl Into<String>) -> Self {
        Outcome::DeadLetter(DeadLetterReason::new(reason, description))
    }
}

/// What a handler gets besides the message.
#[derive(Debug, Clone)]
pub struct HandlerContext {
    queue: QueueName,
    cancellation: CancellationToken,
}

impl HandlerContext {
    /// The queue the message came from.
    pub fn queue(&self) -> &QueueName {
        &self.queue
    }

    /// Cancelled when the handler should stop: the shutdown deadline passed, or the message's
    /// (or session's) lock was lost. The processor then stops waiting for the handler at its
    /// next `.await` and does not settle the message; long handlers may watch it to stop at a
    /// point of their choosing.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancellation
    }
}

/// The application's code for one message. Implemented for every
/// `Fn(ReceivedMessage, HandlerContext) -> impl Future<Output = Outcome>`.
///
/// The message arrives opened and authenticated (when the queue is sealed); a panic is caught
/// and treated as [`Outcome::retry`].
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Handles one message.
    async fn handle(&self, message: ReceivedMessage, context: HandlerContext) -> Outcome;
}

#[async_trait]
impl<F, Fut> Handler for F
where
    F: Fn(ReceivedMessage, HandlerContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    async fn handle(&self, message: ReceivedMessage, context: HandlerContext) -> Outcome {
        self(message, context).await
    }
}

/// How the processor works a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessorOptions {
    /// Handlers running at once; on a session queue, sessions held at once (each handled one
    /// message at a time, in order).
    pub max_concurrency: usize,
    /// Whether the queue is a session queue: its messages are handled in order per session.
    /// Providers with sessions hold each session with one worker; providers whose plain receive
    /// keeps session order (SQS FIFO) get the same guarantee through it.
    pub sessions: bool,
    /// The most messages one receive asks for (queues without session receivers; a session
    /// receiver fetches one message at a time, see docs/processor.md).
    pub receive_batch: usize,
    /// How long one receive (or session accept) waits; also the longest a shutdown waits for a
    /// receive in progress.
    pub receive_wait: Duration,
    /// A session with no message for this long is released, so another one can be taken.
    pub session_idle: Duration,
    /// A message delivered more times than this is dead-lettered with
    /// `MaxDeliveryCountExceeded` before its handler sees it.
    pub max_delivery_count: u32,
    /// The longest a lock is renewed while one handler runs; after that, it is left to expire.
    pub max_lock_renewal: Duration,
    /// After shutdown is asked for, how long running handlers may take before they are stopped
    /// and their messages given back.
    pub shutdown_deadline: Duration,
}

impl Default for ProcessorOptions {
    fn default() -> Self {
        ProcessorOptions {
            max_concurrency: 8,
            sessions: false,
            receive_batch: 10,
            receive_wait: Duration::from_secs(1),
            session_idle: Duration::from_secs(1),
            max_delivery_count: 10,
            max_lock_renewal: Duration::from_secs(300),
            shutdown_deadline: Duration::from_secs(30),
        }
    }
}

impl ProcessorOptions {
    /// Handlers (or sessions) at once.
    #[must_use]
    pub fn with_max_concurrency(mut self, max_concurrency: usize) -> Self {
        self.max_concurrency = max_concurrency;
        self
    }

    /// A session queue: order per session.
    #[must_use]
    pub fn with_sessions(mut self, sessions: bool) -> Self {
        self.sessions = sessions;
        self
    }

    /// The most messages per receive.
    #[must_use]
    pub fn with_receive_batch(mut self, receive_batch: usize) -> Self {
        self.receive_batch = receive_batch;
        self
    }

    /// How long one receive waits.
    #[must_use]
    pub fn with_receive_wait(mut self, wait: Duration) -> Self {
        self.receive_wait = wait;
        self
    }

    /// How long an idle session is held.
    #[must_use]
    pub fn with_session_idle(mut self, idle: Duration) -> Self {
        self.session_idle = idle;
        self
    }

    /// Deliveries before a message is poison.
    #[must_use]
    pub fn with_max_delivery_count(mut self, max_delivery_count: u32) -> Self {
        self.max_delivery_count = max_delivery_count;
        self
    }

    /// The longest a lock is renewed for one handler.
    #[must_use]
    pub fn with_max_lock_renewal(mut self, max: Duration) -> Self {
        self.max_lock_renewal = max;
        self
    }

    /// How long shutdown waits for running handlers.
    #[must_use]
    pub fn with_shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.shutdown_deadline = deadline;
        self
    }

    /// Fails with a [`Config`](ErrorKind::Config) error naming the first invalid field.
    pub fn validate(&self) -> Result<()> {
        let invalid = |what: &str| {
            Err(QueueError::new(
                ErrorKind::Config,
                format!("processor: {what}"),
            ))
        };
        if self.max_concurrency == 0 {
            return invalid("max_concurrency must be at least 1");
        }
        if self.receive_batch == 0 {
            return invalid("receive_batch must be at least 1");
        }
        if self.max_delivery_count == 0 {
            return invalid("max_delivery_count must be at least 1");
        }
        Ok(())
    }
}

/// What a processor did, counted from its start to its stop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessorReport {
    /// Messages completed.
    pub completed: u64,
    /// Messages given back for another delivery (handler asked, or it panicked).
    pub retried: u64,
    /// Messages the handler dead-lettered.
    pub dead_lettered: u64,
    /// Messages dead-lettered for too many deliveries, unseen by the handler.
    pub poison: u64,
    /// Handler calls that panicked (each also counted in `retried`).
    pub panicked: u64,
    /// Messages whose lock was lost before they were settled (redelivered by the broker).
    pub lock_lost: u64,
    /// Handlers stopped at the shutdown deadline, their messages given back.
    pub abandoned_at_shutdown: u64,
    /// Settles that failed for another reason (the broker redelivers the message).
    pub settle_failed: u64,
}

/// Runs a [`Handler`] over one queue until shut down.
///
/// ```rust
/// use std::time::Duration;
/// use queue_runtime::prelude::*;
/// use queue_runtime::processor::{CancellationToken, HandlerContext, Outcome, Processor, ProcessorOptions};
///
/// # tokio::runtime::Builder::new_multi_thread().enable_time().build().unwrap().block_on(async {
/// let client = QueueClient::memory();
/// let orders = QueueName::new("orders")?;
/// client.send(&orders, Message::new("order 1")).await?;
///
/// let shutdown = CancellationToken::new();
/// let processor = Processor::new(client.clone(), orders, |message: ReceivedMessage, _: HandlerContext| async move {
///     match std::str::from_utf8(message.body()) {
///         Ok(_order) => Outcome::Complete,
///         Err(_) => Outcome::dead_letter("not-utf8", "the order is not text"),
///     }
/// })
/// .with_options(ProcessorOptions::default().with_max_concurrency(16));
/// let running = tokio::spawn(processor.run(shutdown.clone()));
///
/// tokio::time::sleep(Duration::from_millis(200)).await;
/// shutdown.cancel();                       // stop receiving, let handlers finish
/// let report = running.await??;
/// assert_eq!(report.completed, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct Processor {
    client: QueueClient,
    queue: QueueName,
    handler: Arc<dyn Handler>,
    options: ProcessorOptions,
}

impl fmt::Debug for Processor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Processor")
            .field("queue", &self.queue)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Processor {
    /// A processor of `queue` through `client` (its security and resilience apply).
    pub fn new(client: QueueClient, queue: QueueName, handler: impl Handler) -> Self {
        Processor {
            client,
            queue,
            handler: Arc::new(handler),
            options: ProcessorOptions::default(),
        }
    }

    /// These options.
    #[must_use]
    pub fn with_options(mut self, options: ProcessorOptions) -> Self {
        self.options = options;
        self
    }

    /// Processes messages until `shutdown` is cancelled, then stops receiving, lets running
    /// handlers finish until the shutdown deadline, gives back what remains, and reports.
    ///
    /// Returns an error, after the same orderly stop, when the queue cannot be worked at all:
    /// it does not exist, access is refused, the client was closed, or the provider cannot keep
    /// session order. Transient receive failures are logged and retried with backoff.
    pub async fn run(self, shutdown: CancellationToken) -> Result<ProcessorReport> {
        self.options.validate()?;
        self.client.provider().validate_queue_name(&self.queue)?;
        let capabilities = self.client.capabilities();
        let with_session_receivers = match (
            self.options.sessions,
            capabilities.sessions,
            capabilities.session_order_on_receive,
        ) {
            (false, _, _) => false,
            (true, true, _) => true,
            (true, false, true) => false,
            (true, false, false) => {
                return Err(QueueError::unsupported(
                    self.client.provider().name(),
                    "ordered processing per session",
                ));
            }
        };
        let hard_stop = CancellationToken::new();
        let deadline_timer = tokio::spawn({
            let (shutdown, hard_stop) = (shutdown.clone(), hard_stop.clone());
            let deadline = self.options.shutdown_deadline;
            async move {
                shutdown.cancelled().await;
                tokio::time::sleep(deadline).await;
                hard_stop.cancel();
            }
        });
        let shared = Arc::new(Shared {
            meters: Meters::new(&self.queue),
            session_ids: self.client.session_id_privacy().clone(),
            handled_but_unsettled: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(15 * 60))
                .build(),
            client: self.client,
            queue: self.queue,
            handler: self.handler,
            options: self.options,
            shutdown,
            hard_stop,
        });
        info!(
            messaging.destination.name = %shared.queue,
            sessions = shared.options.sessions,
            max_concurrency = shared.options.max_concurrency,
            "processor started"
        );
        let result = if with_session_receivers {
            run_sessions(&shared).await
        } else {
            run_queue(&shared).await
        };
        deadline_timer.abort();
        let report = shared.meters.report();
        info!(messaging.destination.name = %shared.queue, ?report, "processor stopped");
        result.map(|()| report)
    }
}

/// What every worker of one processor shares.
struct Shared {
    client: QueueClient,
    queue: QueueName,
    handler: Arc<dyn Handler>,
    options: ProcessorOptions,
    /// Stop receiving.
    shutdown: CancellationToken,
    /// The shutdown deadline passed: stop handlers.
    hard_stop: CancellationToken,
    /// Messages whose handler completed but whose lock was lost before the complete: a
    /// redelivery is completed without calling the handler again.
    handled_but_unsettled: moka::sync::Cache<MessageId, ()>,
    session_ids: SessionIdPrivacy,
    meters: Meters,
}

/// One outcome's count: for the run's [`ProcessorReport`] and its metric at once.
struct Count {
    total: AtomicU64,
    meter: Counter,
}

impl Count {
    fn new(meter: Counter) -> Self {
        Count {
            total: AtomicU64::new(0),
            meter,
        }
    }

    fn add(&self) {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.meter.increment(1);
    }

    fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// The processor's counts and metrics, registered once per run (labels are built once, not per
/// message).
struct Meters {
    queue: String,
    completed: Count,
    retried: Count,
    dead_lettered: Count,
    poison: Count,
    panicked: Count,
    lock_lost: Count,
    abandoned_at_shutdown: Count,
    settle_failed: Count,
    handler_duration: Histogram,
    lock_renewed: Counter,
    lock_renewal_failed: Counter,
    in_flight: Gauge,
}

impl Meters {
    fn new(queue: &QueueName) -> Self {
        let queue = queue.to_string();
        let processed = |outcome: &'static str| {
            Count::new(metrics::counter!(
                "queue_processor_messages_total",
                "queue" => queue.clone(),
                "outcome" => outcome
            ))
        };
        let renewals = |result: &'static str| {
            metrics::counter!(
                "queue_processor_lock_renewals_total",
                "queue" => queue.clone(),
                "result" => result
            )
        };
        Meters {
            completed: processed("completed"),
            retried: processed("retried"),
            dead_lettered: processed("dead_lettered"),
            poison: processed("poison"),
            panicked: processed("panicked"),
            lock_lost: processed("lock_lost"),
            abandoned_at_shutdown: processed("abandoned_at_shutdown"),
            settle_failed: processed("settle_failed"),
            handler_duration: metrics::histogram!(
                "queue_processor_handler_duration_seconds",
                "queue" => queue.clone()
            ),
            lock_renewed: renewals("ok"),
            lock_renewal_failed: renewals("failed"),
            in_flight: metrics::gauge!("queue_processor_in_flight", "queue" => queue.clone()),
            queue,
        }
    }

    fn dead_lettered_by_reason(&self, reason: &str) {
        metrics::counter!(
            "queue_processor_dead_lettered_total",
            "queue" => self.queue.clone(),
            "reason" => reason.to_owned()
        )
        .increment(1);
    }

    fn report(&self) -> ProcessorReport {
        ProcessorReport {
            completed: self.completed.total(),
            retried: self.retried.total(),
            dead_lettered: self.dead_lettered.total(),
            poison: self.poison.total(),
            panicked: self.panicked.total(),
            lock_lost: self.lock_lost.total(),
            abandoned_at_shutdown: self.abandoned_at_shutdown.total(),
            settle_failed: self.settle_failed.total(),
        }
    }
}

/// Whether a receive error means the queue cannot be worked at all (stop), rather than for now
/// (back off and try again).
fn is_fatal(error: &QueueError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::NotFound
            | ErrorKind::Unauthorized
            | ErrorKind::Config
            | ErrorKind::Closed
            | ErrorKind::InvalidInput
            | ErrorKind::Unsupported
    )
}

/// How long the processor waits after failed receives: 250 ms doubling to 30 s (the client's own
/// retries already ran inside each receive).
const RECEIVE_BACKOFF: RetryPolicy = RetryPolicy {
    max_attempts: u32::MAX,
    initial_delay: Duration::from_millis(250),
    max_delay: Duration::from_secs(30),
    multiplier: 2,
    max_elapsed: Duration::MAX,
};

/// Waits before the next receive after `failures` failed ones in a row (or what the error
/// asked for); false when shutdown came first.
async fn back_off(shared: &Shared, error: &QueueError, failures: u32) -> bool {
    let exponential = RECEIVE_BACKOFF.backoff_ceiling(failures);
    let wait = error.retry_after().unwrap_or_default().max(exponential);
    warn!(
        messaging.destination.name = %shared.queue,
        %error,
        ?wait,
        "receive failed; trying again"
    );
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        () = shared.shutdown.cancelled() => false,
    }
}

// ---- Queues without session receivers -----------------------------------------------------------

/// One receive loop; each received message (or run of one session's messages, in order) is
/// handled in its own task, at most `max_concurrency` at once.
async fn run_queue(shared: &Arc<Shared>) -> Result<()> {
    let slots = Arc::new(Semaphore::new(shared.options.max_concurrency));
    let batch_limit = shared
        .options
        .receive_batch
        .min(shared.client.capabilities().max_receive_messages.max(1));
    let mut tasks = JoinSet::new();
    let mut failures = 0_u32;
    let mut outcome = Ok(());
    loop {
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shared.shutdown.cancelled() => break,
        };
        let mut permits = vec![first];
        while permits.len() < batch_limit {
            match slots.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        while tasks.try_join_next().is_some() {}
        // Not raced against shutdown: a receive dropped half-way could leave messages locked
        // until their lock expires. It returns within `receive_wait`.
        match shared
            .client
            .receive(&shared.queue, permits.len(), shared.options.receive_wait)
            .await
        {
            Ok(messages) => {
                failures = 0;
                for group in in_session_runs(messages) {
                    // One slot per run; a provider returning more than asked for still has every
                    // message handled (never left locked and unseen), just past the bound.
                    let permit = permits.pop();
                    let shared = shared.clone();
                    tasks.spawn(async move { handle_queue_run(&shared, group, permit).await });
                }
            }
            Err(error) if is_fatal(&error) => {
                error!(messaging.destination.name = %shared.queue, %error, "processor stopping");
                outcome = Err(error);
                break;
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                if !back_off(shared, &error, failures).await {
                    break;
                }
            }
        }
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(join_error) = joined {
            error!(%join_error, "a processor task failed");
        }
    }
    outcome
}

/// Splits a received batch into runs to handle one after the other: each message alone, except
/// messages of one session, which stay together in the order received.
fn in_session_runs(messages: Vec<ReceivedMessage>) -> Vec<Vec<ReceivedMessage>> {
    let mut runs: Vec<Vec<ReceivedMessage>> = Vec::new();
    let mut run_of_session: HashMap<SessionId, usize> = HashMap::new();
    for message in messages {
        match message.session_id().cloned() {
            Some(session) => match run_of_session.get(&session) {
                Some(&index) => runs[index].push(message),
                None => {
                    run_of_session.insert(session, runs.len());
                    runs.push(vec![message]);
                }
            },
            None => runs.push(vec![message]),
        }
    }
    runs
}

async fn handle_queue_run(
    shared: &Shared,
    run: Vec<ReceivedMessage>,
    _slot: Option<OwnedSemaphorePermit>,
) {
    let source = Source::Queue(&shared.client);
    handle_in_order(shared, source, run).await;
}

/// Handles messages one after the other; when one is given back, the rest are given back too,
/// so none overtakes it.
async fn handle_in_order(shared: &Shared, source: Source<'_>, run: Vec<ReceivedMessage>) {
    let mut messages = run.into_iter();
    while let Some(message) = messages.next() {
        if handle_one(shared, source, message).await == Next::GiveBackTheRest {
            for message in messages.by_ref() {
                source.give_back(shared, &message, None).await;
            }
        }
    }
}

// ---- Session queues -----------------------------------------------------------------------------

/// `max_concurrency` workers, each holding one session at a time.
async fn run_sessions(shared: &Arc<Shared>) -> Result<()> {
    let mut workers = JoinSet::new();
    for _ in 0..shared.options.max_concurrency {
        let shared = shared.clone();
        workers.spawn(async move { session_worker(&shared).await });
    }
    let mut outcome = Ok(());
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                if outcome.is_ok() {
                    // One worker met a fatal error: stop the others the orderly way.
                    shared.shutdown.cancel();
                    outcome = Err(error);
                }
            }
            Err(join_error) => error!(%join_error, "a session worker failed"),
        }
    }
    outcome
}

async fn session_worker(shared: &Shared) -> Result<()> {
    let mut failures = 0_u32;
    while !shared.shutdown.is_cancelled() {
        match shared
            .client
            .accept_next_session(&shared.queue, shared.options.receive_wait)
            .await
        {
            Ok(None) => failures = 0,
            Ok(Some(session)) => {
                failures = 0;
                hold_session(shared, session).await;
            }
            Err(error) if is_fatal(&error) => {
                error!(messaging.destination.name = %shared.queue, %error, "processor stopping");
                return Err(error);
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                if !back_off(shared, &error, failures).await {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Works one session until it is idle, shutdown comes, or its lock is lost; its lock is renewed
/// all along (except past `max_lock_renewal` into one handler).
async fn hold_session(shared: &Shared, session: ClientSession) {
    let session_id = shared.session_ids.display(session.session_id());
    let busy_since: Mutex<Option<Instant>> = Mutex::new(None);
    let lost = tokio::select! {
        () = drain_session(shared, &session, &busy_since) => None,
        error = keep_session_lock(shared, &session, &busy_since) => Some(error),
    };
    if let Some(error) = lost {
        if busy_since.lock().is_some() {
            shared.meters.lock_lost.add();
        }
        warn!(
            messaging.destination.name = %shared.queue,
            session = %session_id,
            %error,
            "session lock lost; its unsettled messages will be redelivered"
        );
    }
    if let Err(error) = session.close().await {
        debug!(session = %session_id, %error, "closing the session failed");
    }
}

async fn drain_session(
    shared: &Shared,
    session: &ClientSession,
    busy_since: &Mutex<Option<Instant>>,
) {
    while !shared.shutdown.is_cancelled() {
        // One at a time: a message given back comes first again, and messages fetched behind
        // it would have to be given back too, each gaining a delivery it never had (three
        // retries of one poison message would dead-letter the ones behind it as well).
        let message = match session.receive(1, shared.options.session_idle).await {
            Ok(batch) => match batch.into_iter().next() {
                Some(message) => message,
                None => return,
            },
            Err(error) => {
                warn!(
                    messaging.destination.name = %shared.queue,
                    session = %shared.session_ids.display(session.session_id()),
                    %error,
                    "session receive failed; releasing the session"
                );
                return;
            }
        };
        *busy_since.lock() = Some(Instant::now());
        handle_one(shared, Source::Session(session), message).await;
        *busy_since.lock() = None;
    }
}

/// Renews the session lock at half its remaining time; returns when the lock is lost.
async fn keep_session_lock(
    shared: &Shared,
    session: &ClientSession,
    busy_since: &Mutex<Option<Instant>>,
) -> QueueError {
    let stuck = || {
        busy_since
            .lock()
            .is_some_and(|since| since.elapsed() >= shared.options.max_lock_renewal)
    };
    keep_lock(
        shared,
        session.locked_until(),
        || !stuck(),
        || session.renew_lock(),
    )
    .await
}

/// Renews a lock at half its remaining time while `may_renew` allows; returns when the lock is
/// lost, or once it expired after `may_renew` stopped allowing.
async fn keep_lock<Renewal: Future<Output = Result<SystemTime>>>(
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

// ---- One message --------------------------------------------------------------------------------

/// Where a message is settled: the queue, or the session it came through.
#[derive(Clone, Copy)]
enum Source<'a> {
    Queue(&'a QueueClient),
    Session(&'a ClientSession),
}

impl Source<'_> {
    async fn complete(self, message: &ReceivedMessage) -> Result<()> {
        match self {
            Source::Queue(client) => client.complete(message).await,
            Source::Session(session) => session.complete(message).await,
        }
    }

    async fn abandon(self, message: &ReceivedMessage, delay: Option<Duration>) -> Result<()> {
        match self {
            Source::Queue(client) => client.abandon(message, delay).await,
            Source::Session(session) => session.abandon(message, delay).await,
        }
    }

    async fn dead_letter(self, message: &ReceivedMessage, reason: &DeadLetterReason) -> Result<()> {
        match self {
            Source::Queue(client) => {
                client
                    .dead_letter(message, &reason.reason, &reason.description)
                    .await
            }
            Source::Session(session) => {
                session
                    .dead_letter(message, &reason.reason, &reason.description)
                    .await
            }
        }
    }

    /// Gives a message back; a failure only delays its redelivery until its lock expires.
    async fn give_back(self, shared: &Shared, message: &ReceivedMessage, delay: Option<Duration>) {
        if let Err(error) = self.abandon(message, delay).await {
            debug!(
                messaging.destination.name = %shared.queue,
                messaging.message.id = %message.message_id(),
                %error,
                "could not give the message back; it returns when its lock expires"
            );
        }
    }

    /// Keeps the lock of a message while its handler runs; returns when the lock is lost.
    /// A session message's lock is the session's, kept by the session's worker.
    async fn keep_lock(self, shared: &Shared, message: &ReceivedMessage) -> QueueError {
        let Source::Queue(client) = self else {
            return std::future::pending().await;
        };
        if !client.capabilities().lock_renewal {
            return std::future::pending().await;
        }
        let renew_until = Instant::now() + shared.options.max_lock_renewal;
        keep_lock(
            shared,
            message.locked_until,
            || Instant::now() < renew_until,
            || client.renew_lock(message),
        )
        .await
    }
}

/// Time left until `deadline` (zero when past).
fn until(deadline: SystemTime) -> Duration {
    deadline
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

/// Renew at half the time left, never in a tight loop.
fn renewal_pause(locked_until: SystemTime) -> Duration {
    (until(locked_until) / 2).max(Duration::from_millis(10))
}

fn renewal_limit_reached(shared: &Shared) -> QueueError {
    QueueError::new(
        ErrorKind::LockLost,
        format!(
            "the handler ran past max_lock_renewal ({:?}); the lock was left to expire",
            shared.options.max_lock_renewal
        ),
    )
}

/// What to do with the messages after this one in the same ordered run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Continue,
    /// This message goes back (or its fate is unknown): the later ones must not overtake it.
    GiveBackTheRest,
}

/// How one handler call ended.
enum Ended {
    Handled(Outcome),
    Panicked,
    LockLost(QueueError),
    Deadline,
}

async fn handle_one(shared: &Shared, source: Source<'_>, message: ReceivedMessage) -> Next {
    let span = telemetry::operation_span(
        shared.client.provider().name(),
        "process",
        "process",
        &shared.queue,
    );
    span.record("messaging.message.id", message.message_id().as_str());
    span.record("messaging.message.delivery_count", message.delivery_count());
    if let Some(session) = message.session_id() {
        span.record("session", shared.session_ids.display(session));
    }
    propagation::link(&span, &message.message);
    handle_in_span(shared, source, message)
        .instrument(span)
        .await
}

async fn handle_in_span(shared: &Shared, source: Source<'_>, message: ReceivedMessage) -> Next {
    if shared.shutdown.is_cancelled() {
        // Received but not started: back to the queue for the next processor.
        source.give_back(shared, &message, None).await;
        return Next::GiveBackTheRest;
    }
    let max = shared.options.max_delivery_count;
    if message.delivery_count() > max {
        let reason = DeadLetterReason::new(
            DeadLetterReason::MAX_DELIVERY_COUNT_EXCEEDED,
            format!(
                "delivered {} times; the processor allows {max}",
                message.delivery_count()
            ),
        );
        warn!(
            delivery_count = message.delivery_count(),
            "poison message dead-lettered"
        );
        return match source.dead_letter(&message, &reason).await {
            Ok(()) => {
                shared.meters.poison.add();
                shared.meters.dead_lettered_by_reason(&reason.reason);
                Next::Continue
            }
            Err(error) => settle_failed(shared, &error),
        };
    }
    if shared
        .handled_but_unsettled
        .contains_key(message.message_id())
    {
        // Handled already; only its complete was lost with the lock.
        info!("redelivery of a message already handled; completing it without the handler");
        let next = settle(shared, source, &message, Outcome::Complete).await;
        if next == Next::Continue {
            shared
                .handled_but_unsettled
                .invalidate(message.message_id());
        }
        return next;
    }

    let cancellation = shared.hard_stop.child_token();
    let context = HandlerContext {
        queue: shared.queue.clone(),
        cancellation: cancellation.clone(),
    };
    let can_delay = shared.client.capabilities().abandon_with_delay;
    let handler = shared.handler.clone();
    let handed = message.clone();
    let work = async move {
        match AssertUnwindSafe(handler.handle(handed, context))
            .catch_unwind()
            .await
        {
            Ok(Outcome::Retry { after: Some(delay) }) if !can_delay => {
                // The provider cannot delay a redelivery: hold the message (its lock renewed
                // meanwhile) for the delay, then give it back.
                tokio::time::sleep(delay).await;
                Ended::Handled(Outcome::retry())
            }
            Ok(outcome) => Ended::Handled(outcome),
            Err(_) => Ended::Panicked,
        }
    };
    shared.meters.in_flight.increment(1.0);
    let started = Instant::now();
    let ended = tokio::select! {
        biased;
        ended = work => ended,
        error = source.keep_lock(shared, &message) => Ended::LockLost(error),
        () = shared.hard_stop.cancelled() => Ended::Deadline,
    };
    cancellation.cancel();
    shared.meters.in_flight.decrement(1.0);
    shared
        .meters
        .handler_duration
        .record(started.elapsed().as_secs_f64());

    match ended {
        Ended::Handled(outcome) => settle(shared, source, &message, outcome).await,
        Ended::Panicked => {
            error!("handler panicked; the message will be delivered again");
            shared.meters.panicked.add();
            settle(shared, source, &message, Outcome::retry()).await
        }
        Ended::LockLost(error) => {
            shared.meters.lock_lost.add();
            warn!(%error, "lock lost while the handler ran; not settled, the broker redelivers it");
            Next::GiveBackTheRest
        }
        Ended::Deadline => {
            shared.meters.abandoned_at_shutdown.add();
            warn!("shutdown deadline passed; handler stopped, message given back");
            source.give_back(shared, &message, None).await;
            Next::GiveBackTheRest
        }
    }
}

async fn settle(
    shared: &Shared,
    source: Source<'_>,
    message: &ReceivedMessage,
    outcome: Outcome,
) -> Next {
    match outcome {
        Outcome::Complete => match source.complete(message).await {
            Ok(()) => {
                shared.meters.completed.add();
                Next::Continue
            }
            Err(error) if error.is_lock_lost() => {
                shared
                    .handled_but_unsettled
                    .insert(message.message_id().clone(), ());
                shared.meters.lock_lost.add();
                warn!(%error, "handled, but the lock was lost before the complete; a redelivery here is completed without the handler");
                Next::GiveBackTheRest
            }
            Err(error) => settle_failed(shared, &error),
        },
        // A delay the provider cannot take was already waited out in `handle_in_span`.
        Outcome::Retry { after: delay } => match source.abandon(message, delay).await {
            Ok(()) => {
                shared.meters.retried.add();
                debug!(?delay, "given back for another delivery");
                Next::GiveBackTheRest
            }
            Err(error) => settle_failed(shared, &error),
        },
        Outcome::DeadLetter(reason) => match source.dead_letter(message, &reason).await {
            Ok(()) => {
                shared.meters.dead_lettered.add();
                shared.meters.dead_lettered_by_reason(&reason.reason);
                info!(reason = %reason.reason, "dead-lettered by the handler");
                Next::Continue
            }
            Err(error) => settle_failed(shared, &error),
        },
    }
}

/// A settle failed: the message stays locked until its lock expires, then comes back. Later
/// messages of its session must wait for it.
fn settle_failed(shared: &Shared, error: &QueueError) -> Next {
    if error.is_lock_lost() {
        shared.meters.lock_lost.add();
    } else {
        shared.meters.settle_failed.add();
    }
    warn!(%error, "settling failed; the message will be delivered again");
    Next::GiveBackTheRest
}

#[cfg(test)]
mod tests {
    use super::*;
    use queue_core::{Message, Receipt};

    fn received(session: Option<&str>, body: &str) -> ReceivedMessage {
        let mut builder = Message::builder(body.to_owned());
        if let Some(session) = session {
            builder = builder.session_id(session);
        }
        let message = builder.build().unwrap_or_else(|_| unreachable!());
        ReceivedMessage {
            receipt: Receipt::new(
                "test",
                QueueName::new("q").unwrap_or_else(|_| unreachable!()),
                None,
                (),
            ),
            delivery: queue_core::DeliveryInfo {
                delivery_count: 1,
                enqueued_at: SystemTime::now(),
                sequence_number: None,
                expires_at: None,
                dead_letter: None,
                seal: None,
            },
            locked_until: SystemTime::now(),
            message,
        }
    }

    #[test]
    fn a_batch_splits_into_runs_that_keep_each_session_in_order() {
        let batch = vec![
            received(Some("a"), "a1"),
            received(None, "x"),
            received(Some("b"), "b1"),
            received(Some("a"), "a2"),
            received(None, "y"),
            received(Some("a"), "a3"),
        ];
        let runs: Vec<Vec<String>> = in_session_runs(batch)
            .iter()
            .map(|run| {
                run.iter()
                    .map(|m| String::from_utf8_lossy(m.body()).into_owned())
                    .collect()
            })
            .collect();
        assert_eq!(
            runs,
            [vec!["a1", "a2", "a3"], vec!["x"], vec!["b1"], vec!["y"]]
        );
    }

    #[test]
    fn invalid_options_are_refused() {
        assert!(ProcessorOptions::default().validate().is_ok());
        assert!(
            ProcessorOptions::default()
                .with_max_concurrency(0)
                .validate()
                .is_err()
        );
        assert!(
            ProcessorOptions::default()
                .with_max_delivery_count(0)
                .validate()
                .is_err()
        );
    }
}
