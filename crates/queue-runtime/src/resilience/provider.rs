//! The decorator: every provider call through the breaker, transient failures retried.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use queue_core::{
    AcceptSessionOptions, Capabilities, DeadLetterReason, Message, PeekOptions, PeekedMessage,
    QueueCounts, QueueName, QueueProvider, Receipt, ReceiveOptions, ReceivedMessage, Result,
    SendOutcome, SessionId, SessionReceiver,
};

use super::Resilience;
use super::circuit::CircuitBreaker;
use super::retry::{Repeat, RetryPolicy, retry};

/// A provider whose calls go through a [`CircuitBreaker`] and are retried per a [`RetryPolicy`].
///
/// Safe operations (receive, peek, settle, renew, session accept and state) are retried on every
/// transient error. Sends, and dead-lettering on providers that copy then delete, are retried
/// only when the broker certainly refused them (throttled, queue full): after a timeout they may
/// have happened, and repeating would duplicate. Sessions accepted through it are wrapped too.
#[derive(Debug, Clone)]
pub struct ResilientProvider {
    inner: Arc<dyn QueueProvider>,
    calls: Calls,
}

/// The retry policy and breaker that one provider and its sessions share.
#[derive(Debug, Clone)]
struct Calls {
    retry: RetryPolicy,
    breaker: Arc<CircuitBreaker>,
}

impl Calls {
    async fn run<T, F, Fut>(&self, operation: &'static str, repeat: Repeat, call: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        retry(&self.retry, repeat, operation, || self.breaker.call(call())).await
    }
}

impl ResilientProvider {
    /// Wraps `inner`. Fails when `resilience` is invalid.
    pub fn new(inner: Arc<dyn QueueProvider>, resilience: Resilience) -> Result<Self> {
        resilience.validate()?;
        let breaker = Arc::new(CircuitBreaker::new(inner.name(), resilience.circuit));
        Ok(ResilientProvider {
            inner,
            calls: Calls {
                retry: resilience.retry,
                breaker,
            },
        })
    }

    /// The breaker, to report its state.
    pub fn circuit(&self) -> &Arc<CircuitBreaker> {
        &self.calls.breaker
    }

    /// The provider underneath.
    pub fn inner(&self) -> &Arc<dyn QueueProvider> {
        &self.inner
    }

    fn dead_letter_repeat(&self) -> Repeat {
        if self.inner.capabilities().native_dead_letter {
            Repeat::Safe
        } else {
            Repeat::OnlyIfRefused
        }
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl QueueProvider for ResilientProvider {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn messaging_system(&self) -> &'static str {
        self.inner.messaging_system()
    }

    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    fn validate_queue_name(&self, queue: &QueueName) -> Result<()> {
        self.inner.validate_queue_name(queue)
    }

    fn set_prefetch_hint(&self, queue: &QueueName, messages: usize) {
        self.inner.set_prefetch_hint(queue, messages);
    }

    fn batch_entry_bytes(&self, message: &Message) -> usize {
        self.inner.batch_entry_bytes(message)
    }

    async fn send(&self, queue: &QueueName, message: Message) -> Result<SendOutcome> {
        self.calls
            .run("send", Repeat::OnlyIfRefused, || {
                self.inner.send(queue, message.clone())
            })
            .await
    }

    async fn send_batch(
        &self,
        queue: &QueueName,
        messages: Vec<Message>,
    ) -> Result<Vec<Result<SendOutcome>>> {
        self.calls
            .run("send_batch", Repeat::OnlyIfRefused, || {
                self.inner.send_batch(queue, messages.clone())
            })
            .await
    }

    async fn receive(
        &self,
        queue: &QueueName,
        options: ReceiveOptions,
    ) -> Result<Vec<ReceivedMessage>> {
        self.calls
            .run("receive", Repeat::Safe, || {
                self.inner.receive(queue, options)
            })
            .await
    }

    async fn peek(&self, queue: &QueueName, options: PeekOptions) -> Result<Vec<PeekedMessage>> {
        self.calls
            .run("peek", Repeat::Safe, || self.inner.peek(queue, options))
            .await
    }

    async fn complete(&self, receipt: &Receipt) -> Result<()> {
        self.calls
            .run("complete", Repeat::Safe, || self.inner.complete(receipt))
            .await
    }

    async fn complete_batch(&self, receipts: &[Receipt]) -> Result<Vec<Result<()>>> {
        self.calls
            .run("complete_batch", Repeat::Safe, || {
                self.inner.complete_batch(receipts)
            })
            .await
    }

    async fn abandon(&self, receipt: &Receipt, delay: Option<Duration>) -> Result<()> {
        self.calls
            .run("abandon", Repeat::Safe, || {
                self.inner.abandon(receipt, delay)
            })
            .await
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: DeadLetterReason) -> Result<()> {
        self.calls
            .run("dead_letter", self.dead_letter_repeat(), || {
                self.inner.dead_letter(receipt, reason.clone())
            })
            .await
    }

    async fn renew_lock(&self, receipt: &Receipt) -> Result<SystemTime> {
        self.calls
            .run("renew_lock", Repeat::Safe, || {
                self.inner.renew_lock(receipt)
            })
            .await
    }

    async fn renew_lock_batch(&self, receipts: &[Receipt]) -> Result<Vec<Result<SystemTime>>> {
        self.calls
            .run("renew_lock_batch", Repeat::Safe, || {
                self.inner.renew_lock_batch(receipts)
            })
            .await
    }

    async fn accept_session(
        &self,
        queue: &QueueName,
        options: AcceptSessionOptions,
    ) -> Result<Option<Box<dyn SessionReceiver>>> {
        let accepted = self
            .calls
            .run("accept_session", Repeat::Safe, || {
                self.inner.accept_session(queue, options.clone())
            })
            .await?;
        Ok(accepted.map(|inner| {
            Box::new(ResilientSession {
                inner,
                calls: self.calls.clone(),
            }) as Box<dyn SessionReceiver>
        }))
    }

    async fn counts(&self, queue: &QueueName) -> Result<QueueCounts> {
        self.calls
            .run("counts", Repeat::Safe, || self.inner.counts(queue))
            .await
    }

    async fn cancel_scheduled(&self, queue: &QueueName, sequence_number: u64) -> Result<()> {
        self.calls
            .run("cancel_scheduled", Repeat::Safe, || {
                self.inner.cancel_scheduled(queue, sequence_number)
            })
            .await
    }

    async fn close(&self) -> Result<()> {
        // Closing is local and must happen even while the breaker is open.
        self.inner.close().await
    }
}

/// A session accepted through a [`ResilientProvider`]: the same retries and breaker.
#[derive(Debug)]
struct ResilientSession {
    inner: Box<dyn SessionReceiver>,
    calls: Calls,
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl SessionReceiver for ResilientSession {
    fn queue(&self) -> &QueueName {
        self.inner.queue()
    }

    fn session_id(&self) -> &SessionId {
        self.inner.session_id()
    }

    fn locked_until(&self) -> SystemTime {
        self.inner.locked_until()
    }

    async fn receive(&self, max_messages: usize, wait: Duration) -> Result<Vec<ReceivedMessage>> {
        self.calls
            .run("session_receive", Repeat::Safe, || {
                self.inner.receive(max_messages, wait)
            })
            .await
    }

    async fn renew_session_lock(&self) -> Result<SystemTime> {
        self.calls
            .run("renew_session_lock", Repeat::Safe, || {
                self.inner.renew_session_lock()
            })
            .await
    }

    async fn state(&self) -> Result<Option<Bytes>> {
        self.calls
            .run("session_state", Repeat::Safe, || self.inner.state())
            .await
    }

    async fn set_state(&self, state: Option<Bytes>) -> Result<()> {
        self.calls
            .run("set_session_state", Repeat::Safe, || {
                self.inner.set_state(state.clone())
            })
            .await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}
