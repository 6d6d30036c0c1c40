//! The batching sender: `send` calls from many tasks coalesced into batch sends.
//!
//! ```rust
//! use std::time::Duration;
//! use queue_runtime::prelude::*;
//! use queue_runtime::batching::BatchingOptions;
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_time().build().unwrap().block_on(async {
//! let client = QueueClient::memory();
//! let orders = QueueName::new("orders")?;
//! let sender = client.batching_sender(&orders, BatchingOptions::default())?;
//! let sends: Vec<_> = (0..25)
//!     .map(|n| {
//!         let sender = sender.clone();
//!         tokio::spawn(async move { sender.send(Message::new(format!("order {n}"))).await })
//!     })
//!     .collect();
//! for send in sends {
//!     send.await??;                  // each task gets its own message's outcome
//! }
//! assert_eq!(client.receive(&orders, 10, Duration::ZERO).await?.len(), 10);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::sync::Arc;
use std::time::Duration;

use queue_core::raw::batching::{BatchEntry, BatchLimits, Coalescer, Failure, Flush};
use queue_core::{Message, QueueName, Result, SendOutcome};
use tracing::{Instrument, debug};

use crate::client::QueueClient;

/// How a [`BatchingSender`] batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchingOptions {
    /// How long a batch waits, from its first message, for more before it is sent (a full one
    /// goes at once).
    pub linger: Duration,
    /// The most messages per batch call (capped at the provider's `max_batch_messages`).
    pub max_messages: usize,
    /// The most batch calls of one sender at once. The default, 1, keeps the order of messages
    /// across batches (needed for FIFO message groups); while a call is out, the next batch
    /// fills up.
    pub max_in_flight: usize,
}

impl Default for BatchingOptions {
    fn default() -> Self {
        BatchingOptions {
            linger: Duration::from_millis(5),
            max_messages: usize::MAX,
            max_in_flight: 1,
        }
    }
}

impl BatchingOptions {
    /// How long a batch waits for more messages.
    #[must_use]
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// The most messages per batch call.
    #[must_use]
    pub fn with_max_messages(mut self, max_messages: usize) -> Self {
        self.max_messages = max_messages;
        self
    }

    /// The most batch calls at once (more than 1 gives up order across batches).
    #[must_use]
    pub fn with_max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = max_in_flight;
        self
    }
}

/// A message sealed (when the queue's policy says so) and measured as the provider counts it.
struct Sealed {
    message: Message,
    bytes: usize,
}

impl BatchEntry for Sealed {
    fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Sends to one queue, coalescing the `send` calls of every task that holds a clone into batch
/// sends (SQS: `SendMessageBatch`, ten messages and 1 MiB, counted after sealing and encoding).
///
/// Each `send` returns its own message's [`SendOutcome`] (or error) once the broker answered for
/// it: a message the broker refused fails alone; a batch call that failed fails each of its
/// messages. Messages are sealed, traced and counted as [`QueueClient::send`] does. Batches of
/// one sender go one after the other by default, so messages of one FIFO message group keep
/// the order in which their `send`s were called. Get one with
/// [`QueueClient::batching_sender`].
#[derive(Debug, Clone)]
pub struct BatchingSender {
    client: QueueClient,
    queue: QueueName,
    coalescer: Coalescer<(), Sealed, SendOutcome>,
}

impl BatchingSender {
    pub(crate) fn new(
        client: QueueClient,
        queue: QueueName,
        options: BatchingOptions,
    ) -> Result<Self> {
        client.provider().validate_queue_name(&queue)?;
        let capabilities = client.capabilities();
        let provider_max = match capabilities.max_batch_messages {
            0 => usize::MAX,
            max => max,
        };
        let limits = BatchLimits {
            max_entries: options.max_messages.min(provider_max).max(1),
            max_bytes: match capabilities.max_batch_bytes {
                0 => usize::MAX,
                max => max,
            },
            linger: options.linger,
            max_in_flight: options.max_in_flight.max(1),
        };
        let (flush_client, flush_queue) = (client.clone(), queue.clone());
        let flush: Flush<(), Sealed, SendOutcome> = Arc::new(move |(), batch: Vec<Sealed>| {
            let (client, queue) = (flush_client.clone(), flush_queue.clone());
            Box::pin(async move {
                let count = batch.len();
                let messages = batch.into_iter().map(|sealed| sealed.message).collect();
                let span = client.operation_span("send", "send_batch", &queue);
                span.record("messaging.batch.message_count", count);
                let sent = client
                    .provider()
                    .send_batch(&queue, messages)
                    .instrument(span)
                    .await;
                debug!(count, ok = sent.is_ok(), "batching sender: batch sent");
                sent
            })
        });
        Ok(BatchingSender {
            client,
            queue,
            coalescer: Coalescer::new(limits, flush),
        })
    }

    /// The queue it sends to.
    pub fn queue(&self) -> &QueueName {
        &self.queue
    }

    /// Sends one message in the next batch; returns when the broker answered for it.
    pub async fn send(&self, message: Message) -> Result<SendOutcome> {
        let span = self.client.operation_span("send", "send", &self.queue);
        span.record("messaging.message.id", message.message_id().as_str());
        async {
            let message = self.client.outgoing(&self.queue, message).await?;
            let bytes = self.client.provider().batch_entry_bytes(&message);
            self.coalescer
                .submit((), Sealed { message, bytes })
                .await
                .map_err(Failure::into_error)
        }
        .instrument(span)
        .await
    }
}
