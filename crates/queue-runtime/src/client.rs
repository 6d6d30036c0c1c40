//! `QueueClient`: one API over every provider, chosen at run time.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use queue_core::{
    AcceptSessionOptions, Capabilities, DeadLetterReason, Message, PeekOptions, PeekedMessage,
    QueueCounts, QueueError, QueueName, QueueProvider, Receipt, ReceiveOptions, ReceivedMessage,
    Result, SendOutcome, SessionId, SessionReceiver, SessionSelector,
};
use tracing::{Instrument, Span, debug, warn};

use crate::config::ClientConfig;
use crate::resilience::{CircuitBreaker, CircuitState, Resilience, ResilientProvider};
use crate::security::{Security, Verdict};
use crate::telemetry::{self, MeterCache, SessionIdPrivacy, propagation};

/// Sends, receives and settles messages through the provider chosen by configuration.
///
/// Cheap to clone: clones share the provider. Every operation first checks the queue name
/// against the provider's own rules. Logs carry queue names, message ids and key ids, never
/// bodies or key material.
///
/// With [`Security`] ([`with_security`](Self::with_security)), sending seals and receiving
/// opens, per queue policy: the application sends and gets plaintext, and every message that
/// fails authentication, freshness or the replay guard is dead-lettered with a generic reason
/// (`rejected: authentication`, `rejected: replay`, ...) instead of being handed over.
#[derive(Debug, Clone)]
pub struct QueueClient {
    provider: Arc<dyn QueueProvider>,
    security: Option<Arc<Security>>,
    circuit: Option<Arc<CircuitBreaker>>,
    session_ids: SessionIdPrivacy,
    /// The per-queue metric handles of unsealed traffic (sealing has its own in `Security`).
    meters: Arc<MeterCache>,
}

impl QueueClient {
    /// A client over any provider.
    pub fn new(provider: Arc<dyn QueueProvider>) -> Self {
        QueueClient {
            provider,
            security: None,
            circuit: None,
            session_ids: SessionIdPrivacy::plain(),
            meters: Arc::default(),
        }
    }

    /// Retries transient provider errors and puts a circuit breaker around the provider
    /// ([`ResilientProvider`]). Clients built from configuration have it already (with
    /// [`ClientConfig::resilience`]); a client from [`new`](Self::new) calls the provider bare.
    /// Fails when `resilience` is invalid.
    pub fn with_resilience(mut self, resilience: Resilience) -> Result<Self> {
        let resilient = ResilientProvider::new(self.provider, resilience)?;
        self.circuit = Some(resilient.circuit().clone());
        self.provider = Arc::new(resilient);
        Ok(self)
    }

    /// How session ids appear in this client's (and its processors') logs and spans: as they
    /// are, or hashed ([`SessionIdPrivacy`]).
    #[must_use]
    pub fn with_session_id_privacy(mut self, privacy: SessionIdPrivacy) -> Self {
        self.session_ids = privacy;
        self
    }

    /// How session ids appear in logs.
    pub fn session_id_privacy(&self) -> &SessionIdPrivacy {
        &self.session_ids
    }

    /// The state of the circuit breaker, when the client has one.
    pub fn circuit_state(&self) -> Option<CircuitState> {
        self.circuit.as_ref().map(|breaker| breaker.state())
    }

    /// Seals on send and opens on receive with these keys and policies.
    #[must_use]
    pub fn with_security(mut self, security: impl Into<Arc<Security>>) -> Self {
        self.security = Some(security.into());
        self
    }

    /// The keys and policies, when configured.
    pub fn security(&self) -> Option<&Arc<Security>> {
        self.security.as_ref()
    }

    /// A client over the embedded broker with its defaults.
    #[cfg(feature = "memory")]
    pub fn memory() -> Self {
        QueueClient::new(Arc::new(queue_memory::MemoryProvider::default()))
    }

    /// A client built from a validated configuration, for every provider: the provider is
    /// built (SQS and Service Bus connect and check their credentials and queues, unless told
    /// not to; the embedded broker creates its declared queues), with retries and the circuit
    /// breaker around it, and security when configured (the key source is read once now, so a
    /// missing or invalid keyset fails here).
    pub async fn connect(config: &ClientConfig) -> Result<Self> {
        let security = match &config.security {
            Some(security) => Some(security.build().await?),
            None => None,
        };
        let provider = config.provider.connect().await?;
        let client = QueueClient::new(provider).with_resilience(config.resilience)?;
        Ok(match security {
            Some(security) => client.with_security(security),
            None => client,
        })
    }

    /// A client configured from the environment (`QUEUE_RUNTIME_CONFIG`,
    /// `QUEUE_RUNTIME_PROVIDER`, ...; see [`crate::config`]), for every provider.
    pub async fn from_env() -> Result<Self> {
        QueueClient::connect(&ClientConfig::from_env()?).await
    }

    /// The provider underneath.
    pub fn provider(&self) -> &Arc<dyn QueueProvider> {
        &self.provider
    }

    /// What the provider supports, and its limits.
    pub fn capabilities(&self) -> &Capabilities {
        self.provider.capabilities()
    }

    /// Sends one message (sealed, when the queue's policy says so). With the `opentelemetry`
    /// feature, the current trace context travels in the message's `traceparent` property
    /// (authenticated with the rest when sealed).
    pub async fn send(&self, queue: &QueueName, message: Message) -> Result<SendOutcome> {
        self.provider.validate_queue_name(queue)?;
        let span = self.operation_span("send", "send", queue);
        span.record("messaging.message.id", message.message_id().as_str());
        let work = async {
            let message = match &self.security {
                Some(_) => self.outgoing(queue, message).await?,
                None => self.outgoing_unsealed(queue, message),
            };
            let outcome = self.provider.send(queue, message).await;
            debug!(ok = outcome.is_ok(), "send");
            outcome
        };
        // Nothing listens: no wrapper to move, enter and exit on every poll.
        if span.is_disabled() {
            work.await
        } else {
            work.instrument(span).await
        }
    }

    /// Sends several messages; one result per message (some may fail while others succeed).
    pub async fn send_batch(
        &self,
        queue: &QueueName,
        messages: Vec<Message>,
    ) -> Result<Vec<Result<SendOutcome>>> {
        self.provider.validate_queue_name(queue)?;
        let count = messages.len();
        let span = self.operation_span("send", "send_batch", queue);
        span.record("messaging.batch.message_count", count);
        async {
            // A message that cannot be sealed fails alone, as a provider-refused entry would.
            let mut outcomes: Vec<Option<Result<SendOutcome>>> = Vec::with_capacity(count);
            let mut sealed = Vec::with_capacity(count);
            for message in messages {
                match self.outgoing(queue, message).await {
                    Ok(message) => {
                        outcomes.push(None);
                        sealed.push(message);
                    }
                    Err(error) => outcomes.push(Some(Err(error))),
                }
            }
            let mut sent = if sealed.is_empty() {
                Vec::new()
            } else {
                self.provider.send_batch(queue, sealed).await?
            }
            .into_iter();
            let outcomes = outcomes
                .into_iter()
                .map(|outcome| {
                    outcome.unwrap_or_else(|| {
                        sent.next().unwrap_or_else(|| {
                            Err(QueueError::new(
                                queue_core::ErrorKind::Provider,
                                "the provider returned fewer batch results than messages",
                            ))
                        })
                    })
                })
                .collect();
            debug!(count, "send_batch");
            Ok(outcomes)
        }
        .instrument(span)
        .await
    }

    /// A sender to `queue` that coalesces the `send`s of every task holding a clone into batch
    /// sends (SQS: `SendMessageBatch`), each `send` getting its own outcome; see
    /// [`BatchingSender`](crate::batching::BatchingSender). Opt-in: [`send`](Self::send) sends
    /// each message on its own.
    pub fn batching_sender(
        &self,
        queue: &QueueName,
        options: crate::batching::BatchingOptions,
    ) -> Result<crate::batching::BatchingSender> {
        crate::batching::BatchingSender::new(self.clone(), queue.clone(), options)
    }

    /// The span of one operation of this client on `queue`.
    pub(crate) fn operation_span(
        &self,
        operation_type: &'static str,
        operation: &'static str,
        queue: &QueueName,
    ) -> Span {
        telemetry::operation_span(
            self.provider.messaging_system(),
            operation_type,
            operation,
            queue,
        )
    }

    /// A message as it goes on the wire: the trace context attached (it is then authenticated
    /// with the rest), sealed when the queue's policy says so.
    pub(crate) async fn outgoing(
        &self,
        queue: &QueueName,
        mut message: Message,
    ) -> Result<Message> {
        match &self.security {
            Some(security) => {
                propagation::inject(&mut message);
                security.seal(queue, message).await
            }
            None => Ok(self.outgoing_unsealed(queue, message)),
        }
    }

    /// [`outgoing`](Self::outgoing) without security: nothing to wait for.
    fn outgoing_unsealed(&self, queue: &QueueName, mut message: Message) -> Message {
        propagation::inject(&mut message);
        self.meters.queue(queue).count_sent(false);
        message
    }

    /// Receives up to `max_messages`, waiting up to `wait` for the first one.
    pub async fn receive(
        &self,
        queue: &QueueName,
        max_messages: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>> {
        self.provider.validate_queue_name(queue)?;
        let span = self.operation_span("receive", "receive", queue);
        let work = receive_verified(
            self.provider.as_ref(),
            self.security.as_deref(),
            &self.meters,
            Fetch::Queue,
            queue,
            max_messages,
            wait,
        );
        let received = if span.is_disabled() {
            work.await?
        } else {
            work.instrument(span.clone()).await?
        };
        span.record("messaging.batch.message_count", received.len());
        for message in &received {
            debug!(
                parent: &span,
                messaging.message.id = %message.message_id(),
                delivery_count = message.delivery_count(),
                "received"
            );
        }
        Ok(received)
    }

    /// Receives at most one message, waiting up to `wait`.
    pub async fn receive_one(
        &self,
        queue: &QueueName,
        wait: Duration,
    ) -> Result<Option<ReceivedMessage>> {
        Ok(self.receive(queue, 1, wait).await?.into_iter().next())
    }

    /// Receives from the queue's dead-letter queue.
    ///
    /// Dead letters are for inspection: sealed ones that open are returned opened (no freshness
    /// or replay check: they are old by nature), with `delivery.seal` set. Anything else,
    /// including the messages the client refused, comes back exactly as it sits in the queue with
    /// `delivery.seal == None`: unauthenticated, to be treated as such.
    pub async fn receive_dead_letters(
        &self,
        queue: &QueueName,
        max_messages: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>> {
        self.provider.validate_queue_name(queue)?;
        let mut received = self
            .provider
            .receive(queue, ReceiveOptions::new(max_messages, wait).dead_letter())
            .await?;
        if let Some(security) = &self.security {
            for m in &mut received {
                security
                    .inspect(queue, &mut m.message, &mut m.delivery)
                    .await;
            }
        }
        Ok(received)
    }

    /// Reads messages without locking them. Like dead letters, peeked messages are opened when
    /// they open (`delivery.seal` set) and returned as they sit in the queue otherwise.
    pub async fn peek(
        &self,
        queue: &QueueName,
        options: PeekOptions,
    ) -> Result<Vec<PeekedMessage>> {
        self.provider.validate_queue_name(queue)?;
        let mut peeked = self.provider.peek(queue, options).await?;
        if let Some(security) = &self.security {
            for m in &mut peeked {
                security
                    .inspect(queue, &mut m.message, &mut m.delivery)
                    .await;
            }
        }
        Ok(peeked)
    }

    /// Settles a delivery as done, whether it came from the queue or through a session. A
    /// sealed message's envelope id is then remembered by the replay guard: a copy of it is
    /// refused.
    pub async fn complete(&self, message: &ReceivedMessage) -> Result<()> {
        let outcome = self.provider.complete(&message.receipt).await;
        if let (Ok(()), Some(security)) = (&outcome, &self.security) {
            security.settled_for_good(message).await;
        }
        debug!(messaging.message.id = %message.message_id(), ok = outcome.is_ok(), "complete");
        outcome
    }

    /// Settles several deliveries as done in as few broker calls as the provider can make
    /// (SQS: one `DeleteMessageBatch` per ten). One result per message, in order; the sealed
    /// ones settled are remembered by the replay guard.
    pub async fn complete_batch(&self, messages: &[ReceivedMessage]) -> Result<Vec<Result<()>>> {
        let receipts: Vec<Receipt> = messages.iter().map(|m| m.receipt.clone()).collect();
        let results = self.provider.complete_batch(&receipts).await?;
        if let Some(security) = &self.security {
            for (message, result) in messages.iter().zip(&results) {
                if result.is_ok() {
                    security.settled_for_good(message).await;
                }
            }
        }
        debug!(count = messages.len(), "complete_batch");
        Ok(results)
    }

    /// Gives a delivery back, to be delivered again (after `delay`, where supported). A message
    /// of a session comes first in its session again.
    pub async fn abandon(&self, message: &ReceivedMessage, delay: Option<Duration>) -> Result<()> {
        let outcome = self.provider.abandon(&message.receipt, delay).await;
        if let (Ok(()), Some(security)) = (&outcome, &self.security) {
            security.given_back(message).await;
        }
        debug!(messaging.message.id = %message.message_id(), ok = outcome.is_ok(), "abandon");
        outcome
    }

    /// Moves a delivery to the dead-letter queue with a reason and a description. Like a
    /// completed one, a copy of it is then refused as a replay.
    pub async fn dead_letter(
        &self,
        message: &ReceivedMessage,
        reason: &str,
        description: &str,
    ) -> Result<()> {
        let outcome = self
            .provider
            .dead_letter(&message.receipt, DeadLetterReason::new(reason, description))
            .await;
        if let (Ok(()), Some(security)) = (&outcome, &self.security) {
            security.settled_for_good(message).await;
        }
        debug!(messaging.message.id = %message.message_id(), reason, ok = outcome.is_ok(), "dead_letter");
        outcome
    }

    /// Extends the lock of a delivery (for a session message: its session's lock); returns the
    /// new deadline.
    pub async fn renew_lock(&self, message: &ReceivedMessage) -> Result<SystemTime> {
        let until = self.provider.renew_lock(&message.receipt).await?;
        if let Some(security) = &self.security {
            security.lock_renewed(message, until).await;
        }
        Ok(until)
    }

    /// Extends the locks of several deliveries in as few broker calls as the provider can make
    /// (SQS: one `ChangeMessageVisibilityBatch` per ten). One result per message, in order.
    pub async fn renew_lock_batch(
        &self,
        messages: &[&ReceivedMessage],
    ) -> Result<Vec<Result<SystemTime>>> {
        let receipts: Vec<Receipt> = messages.iter().map(|m| m.receipt.clone()).collect();
        let results = self.provider.renew_lock_batch(&receipts).await?;
        if let Some(security) = &self.security {
            for (message, result) in messages.iter().zip(&results) {
                if let Ok(until) = result {
                    security.lock_renewed(message, *until).await;
                }
            }
        }
        Ok(results)
    }

    /// Accepts a session (the next available one, or a named one), waiting up to `wait`.
    pub async fn accept_session(
        &self,
        queue: &QueueName,
        session: SessionSelector,
        wait: Duration,
    ) -> Result<Option<ClientSession>> {
        self.provider.validate_queue_name(queue)?;
        let accepted = self
            .provider
            .accept_session(queue, AcceptSessionOptions { session, wait })
            .await?;
        if let Some(receiver) = &accepted {
            debug!(
                messaging.destination.name = %queue,
                session = %self.session_ids.display(receiver.session_id()),
                "session accepted"
            );
        }
        Ok(accepted.map(|receiver| ClientSession {
            receiver,
            provider: self.provider.clone(),
            security: self.security.clone(),
            meters: Arc::clone(&self.meters),
            held: Mutex::new(Vec::new()),
        }))
    }

    /// Accepts the next session with messages, waiting up to `wait`.
    pub async fn accept_next_session(
        &self,
        queue: &QueueName,
        wait: Duration,
    ) -> Result<Option<ClientSession>> {
        self.accept_session(queue, SessionSelector::Next, wait)
            .await
    }

    /// Accepts the named session, waiting up to `wait` for its holder to release it.
    pub async fn accept_named_session(
        &self,
        queue: &QueueName,
        session: &SessionId,
        wait: Duration,
    ) -> Result<Option<ClientSession>> {
        self.accept_session(queue, SessionSelector::Named(session.clone()), wait)
            .await
    }

    /// How many messages `queue` holds, where the provider can tell
    /// ([`Capabilities::counts`]; `Unsupported` otherwise).
    pub async fn counts(&self, queue: &QueueName) -> Result<QueueCounts> {
        self.provider.validate_queue_name(queue)?;
        self.provider.counts(queue).await
    }

    /// Cancels a scheduled message by the sequence number its send returned.
    pub async fn cancel_scheduled(&self, queue: &QueueName, sequence_number: u64) -> Result<()> {
        self.provider.validate_queue_name(queue)?;
        self.provider.cancel_scheduled(queue, sequence_number).await
    }

    /// Releases the provider's connections; later calls fail with `Closed`.
    ///
    /// Call it before the process ends: on Service Bus a settle returns once it is handed to
    /// the connection, and closing waits until what is queued there reached the broker
    /// (docs/providers.md, "Close before the process ends").
    pub async fn close(&self) -> Result<()> {
        self.provider.close().await
    }
}

/// An accepted session: its messages in order, its lock, its state.
///
/// It receives and holds the session; its messages are settled like any other, through the
/// client ([`QueueClient::complete`], [`abandon`](QueueClient::abandon),
/// [`dead_letter`](QueueClient::dead_letter)).
#[derive(Debug)]
pub struct ClientSession {
    receiver: Box<dyn SessionReceiver>,
    provider: Arc<dyn QueueProvider>,
    security: Option<Arc<Security>>,
    meters: Arc<MeterCache>,
    /// The sealed messages received here and not yet known settled: the session lock covers
    /// them, so renewing it extends their replay claims.
    held: Mutex<Vec<ReceivedMessage>>,
}

impl ClientSession {
    /// The session's id.
    pub fn session_id(&self) -> &SessionId {
        self.receiver.session_id()
    }

    /// The queue the session belongs to.
    pub fn queue(&self) -> &QueueName {
        self.receiver.queue()
    }

    /// Until when the session lock is held, as last known.
    pub fn locked_until(&self) -> SystemTime {
        self.receiver.locked_until()
    }

    /// Receives up to `max_messages` of the session's messages, in order, waiting up to `wait`.
    /// Refused messages are dead-lettered (they never block the session) and not returned.
    pub async fn receive(
        &self,
        max_messages: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>> {
        let received = receive_verified(
            self.provider.as_ref(),
            self.security.as_deref(),
            &self.meters,
            Fetch::Session(self.receiver.as_ref()),
            self.receiver.queue(),
            max_messages,
            wait,
        )
        .await?;
        if self.security.is_some() {
            self.held.lock().extend(
                received
                    .iter()
                    .filter(|message| message.delivery.seal.is_some())
                    .cloned(),
            );
        }
        Ok(received)
    }

    /// Extends the session lock (which covers its messages); returns the new deadline.
    pub async fn renew_lock(&self) -> Result<SystemTime> {
        let until = self.receiver.renew_session_lock().await?;
        if let Some(security) = &self.security {
            let held = std::mem::take(&mut *self.held.lock());
            let mut still_held = Vec::with_capacity(held.len());
            for message in held {
                if security.lock_renewed(&message, until).await {
                    still_held.push(message);
                }
            }
            self.held.lock().extend(still_held);
        }
        Ok(until)
    }

    /// The session state.
    pub async fn state(&self) -> Result<Option<Bytes>> {
        self.receiver.state().await
    }

    /// Replaces (or with `None`, clears) the session state.
    pub async fn set_state(&self, state: Option<Bytes>) -> Result<()> {
        self.receiver.set_state(state).await
    }

    /// Releases the session: unsettled messages become available again.
    pub async fn close(&self) -> Result<()> {
        self.receiver.close().await
    }
}

/// Where received messages come from: the queue, or an accepted session. Either way they are
/// settled through the provider.
#[derive(Clone, Copy)]
enum Fetch<'a> {
    Queue,
    Session(&'a dyn SessionReceiver),
}

impl Fetch<'_> {
    async fn fetch(
        self,
        provider: &dyn QueueProvider,
        queue: &QueueName,
        max_messages: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>> {
        match self {
            Fetch::Queue => {
                provider
                    .receive(queue, ReceiveOptions::new(max_messages, wait))
                    .await
            }
            Fetch::Session(receiver) => receiver.receive(max_messages, wait).await,
        }
    }
}

/// How long a copy of a message in flight elsewhere waits before it is delivered again: until
/// the other delivery's claim ends, within these bounds.
const IN_FLIGHT_WAIT: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// Receives, and with security judges every message: accepted ones are returned, refused ones
/// dead-lettered, ones whose keys are unavailable given back, copies of messages in flight
/// given back with a delay. When a whole batch was held back it receives again (even past the
/// wait, for a bounded number of rounds), so a flood of forgeries does not look like an empty
/// queue, nor keep the caller waiting forever.
async fn receive_verified(
    provider: &dyn QueueProvider,
    security: Option<&Security>,
    meters: &MeterCache,
    source: Fetch<'_>,
    queue: &QueueName,
    max_messages: usize,
    wait: Duration,
) -> Result<Vec<ReceivedMessage>> {
    /// Rounds of held-back-only batches after the wait has passed, before giving up for now.
    const ROUNDS_PAST_DEADLINE: u32 = 16;
    if let Some(security) = security {
        security.replay_store_ready(queue).await?;
    }
    // Only a secure receive can go round again (all held back): only then is the clock read.
    let deadline = security.map(|_| tokio::time::Instant::now() + wait);
    let mut rounds_past_deadline = 0;
    let mut first = true;
    loop {
        let remaining = if std::mem::take(&mut first) {
            wait
        } else {
            deadline.map_or(Duration::ZERO, |deadline| {
                deadline.saturating_duration_since(tokio::time::Instant::now())
            })
        };
        let received = source
            .fetch(provider, queue, max_messages, remaining)
            .await?;
        let Some(security) = security else {
            if !received.is_empty() {
                let meters = meters.queue(queue);
                for _ in &received {
                    meters.count_received(false);
                }
            }
            return Ok(received);
        };
        if received.is_empty() {
            return Ok(received);
        }
        let mut accepted = Vec::with_capacity(received.len());
        let mut unavailable = None;
        for message in received {
            match security.verify(queue, message).await {
                Verdict::Accept(message) => accepted.push(message),
                Verdict::Reject(message, refusal) => {
                    refusal.record(queue, &message);
                    let reason = DeadLetterReason::new(
                        refusal.rejection.reason(),
                        format!(
                            "queue-runtime refused message {}; the consumer's log has the details",
                            message.message_id()
                        ),
                    );
                    if let Err(error) = provider.dead_letter(&message.receipt, reason).await {
                        // Not lost: its lock expires, it is delivered and judged again.
                        warn!(
                            messaging.destination.name = %queue,
                            messaging.message.id = %message.message_id(),
                            %error,
                            "could not dead-letter a refused message; it will be redelivered"
                        );
                    }
                }
                Verdict::Retry(message, error) => {
                    warn!(
                        messaging.destination.name = %queue,
                        messaging.message.id = %message.message_id(),
                        %error,
                        "keys or replay guard unavailable; giving the message back"
                    );
                    give_back(provider, &message, None).await;
                    unavailable.get_or_insert(error);
                }
                Verdict::Wait(message, other_claim_left) => {
                    let (shortest, longest) = IN_FLIGHT_WAIT;
                    let delay = other_claim_left.clamp(shortest, longest);
                    give_back(provider, &message, Some(delay)).await;
                }
            }
        }
        if !accepted.is_empty() {
            return Ok(accepted);
        }
        if let Some(error) = unavailable {
            return Err(error);
        }
        if remaining.is_zero() {
            rounds_past_deadline += 1;
            if rounds_past_deadline >= ROUNDS_PAST_DEADLINE {
                return Ok(accepted);
            }
        }
    }
}

/// Gives a message back that the application never saw: after `delay` where the provider can
/// delay a redelivery, at once otherwise. A failure only means it returns when its lock expires.
async fn give_back(
    provider: &dyn QueueProvider,
    message: &ReceivedMessage,
    delay: Option<Duration>,
) {
    let delay = delay.filter(|_| provider.capabilities().abandon_with_delay);
    if let Err(error) = provider.abandon(&message.receipt, delay).await {
        warn!(
            messaging.message.id = %message.message_id(),
            %error,
            "could not give the message back; it will be redelivered when its lock expires"
        );
    }
}
