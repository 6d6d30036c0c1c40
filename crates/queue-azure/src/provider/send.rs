//! Sending: cached send links, single sends, batches split by count and bytes, scheduling and
//! cancelling scheduled messages.

use std::sync::Arc;

use azservicebus::{
    CreateMessageBatchOptions, ServiceBusMessage, ServiceBusMessageBatch, ServiceBusSender,
    ServiceBusSenderOptions,
};
use queue_core::raw::check_message_size;
use queue_core::{ErrorKind, QueueError, QueueName, QueueProvider, Result, SendOutcome};
use tokio::sync::Mutex as AsyncMutex;

use super::{AzureProvider, Shared};
use crate::codec;
use crate::error::{closed, map_sdk_error};
use crate::sdk::sdk_call;

/// Messages per `send_batch` request at most (requests are also split by bytes).
pub(super) const MAX_BATCH_MESSAGES: usize = 100;

impl AzureProvider {
    /// The cached send link of `queue`, created on first use.
    pub(super) async fn sender(&self, queue: &QueueName) -> Result<Shared<ServiceBusSender>> {
        if let Some(sender) = self.inner.senders.lock().get(queue) {
            return Ok(sender.clone());
        }
        let created = {
            let mut client = self.inner.client.lock().await;
            let client = client.as_mut().ok_or_else(|| closed("send"))?;
            sdk_call(client.create_sender(queue.as_str(), ServiceBusSenderOptions::default()))
                .await
                .map_err(|error| map_sdk_error("open sender", error))?
        };
        let mut senders = self.inner.senders.lock();
        // Another task may have raced us here; keep the first link, close ours.
        if let Some(existing) = senders.get(queue) {
            let existing = existing.clone();
            drop(senders);
            tokio::spawn(async move {
                let _ = sdk_call(created.dispose()).await;
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
                    let _ = sdk_call(sender.dispose()).await;
                }
            });
        }
    }

    pub(super) async fn send_one(
        &self,
        queue: &QueueName,
        message: &queue_core::Message,
    ) -> Result<SendOutcome> {
        let outgoing = codec::encode(message)?;
        let sender = self.sender(queue).await?;
        let mut guard = sender.lock().await;
        let sender_link = guard.as_mut().ok_or_else(|| closed("send"))?;
        let result = match outgoing.scheduled_at {
            Some(at) => {
                sdk_call(sender_link.schedule_messages(std::iter::once(outgoing.message), at))
                    .await
                    .map(|numbers| numbers.first().and_then(|n| u64::try_from(*n).ok()))
            }
            None => sdk_call(sender_link.send_message(outgoing.message))
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

    pub(super) fn check_outgoing(
        &self,
        queue: &QueueName,
        message: &queue_core::Message,
    ) -> Result<()> {
        check_message_size(message.approximate_size(), &self.inner.capabilities)?;
        self.check_session_presence(queue, message)
    }

    pub(super) async fn send_many(
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
                            let sent = sdk_call(link.send_message_batch(full)).await;
                            self.record_batch(queue, &messages, &mut results, &mut in_batch, sent);
                            candidate = Some(refused);
                        }
                    }
                }
            }
            if !in_batch.is_empty() {
                let sent = sdk_call(link.send_message_batch(batch)).await;
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

    pub(super) async fn cancel_one(&self, queue: &QueueName, sequence_number: u64) -> Result<()> {
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
        sdk_call(link.cancel_scheduled_message(sequence_number))
            .await
            .map_err(|error| map_sdk_error("cancel_scheduled", error))
    }
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
