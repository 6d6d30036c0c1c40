//! The processor: receive, open, call the application's handler, settle, with bounded
//! concurrency, per-session order, lock renewal, poison handling and graceful shutdown.
//!
//! By role: `handler` (what the application gives and answers), `options` (how it works a
//! queue, what it reports), `queue_loop` and `session_loop` (the two ways of receiving),
//! `message` (one message's life), `locks` (keeping locks while messages wait and run),
//! `meters` (its counts and metrics). The choices behind each behaviour:
//! [docs/processor.md](../../../docs/processor.md).

mod handler;
mod locks;
mod message;
mod meters;
mod options;
mod queue_loop;
mod session_loop;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use queue_core::{MessageId, QueueError, QueueName, Result};
pub use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use handler::{Handler, HandlerContext, Outcome};
use meters::Meters;
pub use options::{ProcessorOptions, ProcessorReport};

use crate::client::QueueClient;
use crate::resilience::RetryPolicy;
use crate::telemetry::SessionIdPrivacy;

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

    /// How to work the queue (concurrency, sessions, locks, shutdown).
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
        // Fetched ahead, a message waits locked; ask for no more than the handlers can take: all
        // of them at once on a queue, one at a time per session receiver.
        let prefetch = if with_session_receivers {
            1
        } else {
            self.options.max_concurrency
        };
        self.client
            .provider()
            .set_prefetch_hint(&self.queue, prefetch);
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
            session_loop::run_sessions(&shared).await
        } else {
            queue_loop::run_queue(&shared).await
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

/// Whether a receive error means the queue cannot be worked at all (stop), rather than for now
/// (back off and try again).
fn is_fatal(error: &QueueError) -> bool {
    error.kind().is_permanent()
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
