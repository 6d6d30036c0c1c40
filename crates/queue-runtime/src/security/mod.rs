//! Transparent sealing and opening: what makes a [`QueueClient`](crate::QueueClient) refuse
//! everything an attacker on the queue could try.
//!
//! - **Send**: the body is sealed, bound to the queue name, message id, session id, correlation
//!   id, content type and application properties; a scheduled message also binds its not-before
//!   time. The queue's [`SealMode`] chooses the envelope: version 1 under the shared primary key,
//!   or version 2 (public key) to the primary recipient public key, signed with the primary
//!   signing key.
//! - **Receive**: the envelope version chooses how it is opened: version 1 with the shared keys
//!   (refused on a public-key queue: any holder of the shared key could have sealed it), version
//!   2 with the consumer's recipient key pairs and trust list of senders, on any queue.
//!   Either way the envelope is opened with the context rebuilt from what the transport shows,
//!   so metadata that differs from what was sealed fails authentication; then freshness (against
//!   the broker's enqueue time) and the replay guard (envelope ids of completed messages). The
//!   application gets the plaintext and authenticated metadata only; anything refused is
//!   dead-lettered with a generic reason, and the details are logged with the message id.
//!
//! The threat model and its limits are in `docs/security.md`.

mod policy;
mod replay;

use crate::telemetry::{MeterCache, metric};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use queue_core::{
    DeliveryInfo, ErrorKind, Message, QueueError, QueueName, ReceivedMessage, ReplayClaim,
    SealInfo, is_reserved_key,
};
use queue_crypto::{
    Clock, Context, CryptoError, Sealer, Suite, SystemClock, envelope_version, looks_sealed, public,
};
use queue_keys::{KeyError, KeyRing, KeySource};
use tracing::{debug, warn};

pub use policy::{QueuePolicy, ReplayFailure, SealMode, UnsealedPolicy};
pub use replay::{
    ClaimOutcome, DEFAULT_REPLAY_CAPACITY, InProcessReplayStore, ReplayKey, ReplayStore,
};
#[cfg(feature = "redis")]
pub use replay::{RedisReplayStore, RedisStoreOptions};

/// Keys and per-queue policy for a [`QueueClient`](crate::QueueClient).
///
/// ```
/// use std::sync::Arc;
/// use queue_runtime::security::{QueuePolicy, Security, UnsealedPolicy};
/// use queue_runtime::keys::{KeyRing, StaticKeys};
/// use queue_runtime::crypto::{Key, KeyId, KeyMaterial, KeyState, Keyset};
/// use queue_runtime::core::QueueName;
///
/// let keyset = Keyset::new([Key::new(KeyId::new("k1")?, KeyMaterial::generate()?, KeyState::Primary)])?;
/// let security = Security::new(KeyRing::new(Arc::new(StaticKeys::new(keyset))))
///     .with_queue_policy(
///         QueueName::new("legacy-events")?,
///         QueuePolicy::default().with_seal(false).with_unsealed(UnsealedPolicy::AllowWithAlert),
///     );
/// let client = queue_runtime::QueueClient::memory().with_security(security);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Security {
    keys: Arc<KeyRing>,
    /// Queues with keys of their own (their own recipient key and trust list, or shared key).
    queue_keys: HashMap<QueueName, Arc<KeyRing>>,
    sealer: Sealer,
    /// Seals the public-key envelopes of queues in [`SealMode::PublicKey`].
    public_sealer: public::Sealer,
    clock: Arc<dyn Clock>,
    default_policy: QueuePolicy,
    policies: HashMap<QueueName, QueuePolicy>,
    /// Claims of envelope ids being processed, and the ids of completed ones.
    replay: Arc<dyn ReplayStore>,
    /// The replay store failed and has not answered since.
    replay_store_down: std::sync::atomic::AtomicBool,
    /// Each delivery's replay claim: this instance's random prefix and a count.
    claims: ClaimSource,
    meters: MeterCache,
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Security")
            .field("keys", &self.keys)
            .field("queue_keys", &self.queue_keys)
            .field("suite", &self.sealer.suite())
            .field("default_policy", &self.default_policy)
            .field("policies", &self.policies)
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

impl Security {
    /// Sealing and opening with the keys of `keys`, the default policy on every queue.
    pub fn new(keys: impl Into<Arc<KeyRing>>) -> Self {
        Security {
            keys: keys.into(),
            queue_keys: HashMap::new(),
            sealer: Sealer::new(),
            public_sealer: public::Sealer::new(),
            clock: Arc::new(SystemClock),
            replay: Arc::new(InProcessReplayStore::default()),
            replay_store_down: std::sync::atomic::AtomicBool::new(false),
            claims: ClaimSource::new(),
            default_policy: QueuePolicy::default(),
            policies: HashMap::new(),
            meters: MeterCache::default(),
        }
    }

    /// Keys from any [`KeySource`], behind a [`KeyRing`] with its default caching.
    pub fn from_source(source: Arc<dyn KeySource>) -> Self {
        Self::new(KeyRing::new(source))
    }

    /// The policy of queues without their own.
    #[must_use]
    pub fn with_default_policy(mut self, policy: QueuePolicy) -> Self {
        self.default_policy = policy;
        self
    }

    /// The policy of one queue.
    #[must_use]
    pub fn with_queue_policy(mut self, queue: QueueName, policy: QueuePolicy) -> Self {
        self.policies.insert(queue, policy);
        self
    }

    /// Keys for one queue instead of the client's: its own recipient key pair and trust list
    /// (public-key mode), its own producer keys, or its own shared key. A consumer of several
    /// public-key queues gives each its own trust list this way, so that a producer trusted on
    /// one queue cannot send to another.
    #[must_use]
    pub fn with_queue_keys(mut self, queue: QueueName, keys: impl Into<Arc<KeyRing>>) -> Self {
        self.queue_keys.insert(queue, keys.into());
        self
    }

    /// How many envelope ids the in-process replay guard remembers (default
    /// [`DEFAULT_REPLAY_CAPACITY`]). Size it above the number of messages completed per
    /// freshness window.
    #[must_use]
    pub fn with_replay_capacity(mut self, capacity: u64) -> Self {
        self.replay = Arc::new(InProcessReplayStore::with_capacity(capacity));
        self
    }

    /// Where the replay guard keeps its claims and completed ids (default: in this process).
    #[must_use]
    pub fn with_replay_store(mut self, store: Arc<dyn ReplayStore>) -> Self {
        self.replay = store;
        self
    }

    /// The AEAD suite new envelopes use, shared-key and public-key alike (default
    /// AES-256-GCM).
    #[must_use]
    pub fn with_suite(mut self, suite: Suite) -> Self {
        self.sealer = self.sealer.with_suite(suite);
        self.public_sealer = self.public_sealer.with_aead(suite);
        self
    }

    /// The clock that stamps envelopes and judges not-before times (default: the system
    /// clock). Tests that drive time inject one that follows it.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.sealer = self.sealer.with_clock(Arc::clone(&clock));
        self.public_sealer = self.public_sealer.with_clock(Arc::clone(&clock));
        self.clock = clock;
        self
    }

    /// The key ring.
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    /// The key ring that serves `queue`: its own, or the client's.
    pub fn keys_for(&self, queue: &QueueName) -> &Arc<KeyRing> {
        self.queue_keys.get(queue).unwrap_or(&self.keys)
    }

    /// The policy that applies to `queue`.
    pub fn policy(&self, queue: &QueueName) -> &QueuePolicy {
        self.policies.get(queue).unwrap_or(&self.default_policy)
    }

    /// Seals `message` for `queue` if the queue's policy says so.
    pub(crate) async fn seal(
        &self,
        queue: &QueueName,
        mut message: Message,
    ) -> Result<Message, QueueError> {
        let policy = self.policy(queue);
        let meters = self.meters.queue(queue);
        meters
            .crypto_enabled
            .set(if policy.seal { 1.0 } else { 0.0 });
        if !policy.seal {
            meters.count_sent(false);
            return Ok(message);
        }
        let context = context_of(queue, &message);
        let not_before = message.scheduled_enqueue_time();
        let started = Instant::now();
        let (sealed, key_id, sender_key_id) = match policy.mode {
            SealMode::SharedKey => {
                let keyset = self
                    .keys_for(queue)
                    .keyset()
                    .await
                    .map_err(|error| key_error(&error))?;
                let sealed = match not_before {
                    Some(not_before) => {
                        self.sealer
                            .seal_not_before(&keyset, message.body(), &context, not_before)
                    }
                    None => self.sealer.seal(&keyset, message.body(), &context),
                }
                .map_err(|error| crypto_error(&error))?;
                let key_id = keyset.primary().map(|key| key.id().to_string());
                (sealed, key_id, None)
            }
            SealMode::PublicKey => {
                let keys = self
                    .keys_for(queue)
                    .keys()
                    .await
                    .map_err(|error| key_error(&error))?;
                let producer = keys.producer().ok_or_else(|| {
                    QueueError::new(
                        ErrorKind::Config,
                        format!(
                            "queue {queue} seals with public keys, but the keys of {} hold no \
                             recipient public key and signing key",
                            self.keys_for(queue).source_name()
                        ),
                    )
                })?;
                let sealed = match not_before {
                    Some(not_before) => self.public_sealer.seal_not_before(
                        producer,
                        message.body(),
                        &context,
                        not_before,
                    ),
                    None => self.public_sealer.seal(producer, message.body(), &context),
                }
                .map_err(|error| crypto_error(&error))?;
                let key_id = producer.primary_recipient().map(|key| key.id().to_string());
                let sender = producer.primary_signer().map(|key| key.id().to_string());
                (sealed, key_id, sender)
            }
        };
        meters.seal_duration.record(started.elapsed().as_secs_f64());
        debug!(
            messaging.destination.name = %queue,
            messaging.message.id = %message.message_id(),
            key_id = key_id.as_deref().unwrap_or(""),
            sender_key_id = sender_key_id.as_deref().unwrap_or(""),
            "sealed"
        );
        message.set_body(sealed);
        meters.count_sent(true);
        Ok(message)
    }

    /// Judges one received message: opened and authenticated, refused, or to be retried (the
    /// key source is unavailable).
    pub(crate) async fn verify(&self, queue: &QueueName, mut received: ReceivedMessage) -> Verdict {
        let policy = *self.policy(queue);
        let meters = self.meters.queue(queue);
        let message_id = received.message_id().clone();
        if !looks_sealed(received.body()) {
            return match policy.unsealed {
                UnsealedPolicy::Reject => Verdict::Reject(
                    received,
                    Refusal::new(
                        Rejection::Unsealed,
                        "unsealed",
                        "the body is not an envelope",
                    ),
                ),
                UnsealedPolicy::Allow => {
                    meters.count_received(false);
                    Verdict::Accept(received)
                }
                UnsealedPolicy::AllowWithAlert => {
                    warn!(
                        messaging.destination.name = %queue,
                        messaging.message.id = %message_id,
                        "unsealed message accepted by policy (allow_with_alert)"
                    );
                    count_crypto_error(queue, "unsealed");
                    meters.count_received(false);
                    Verdict::Accept(received)
                }
            };
        }
        if policy.mode == SealMode::PublicKey && envelope_version(received.body()) == Some(1) {
            return Verdict::Reject(
                received,
                Refusal::new(
                    Rejection::Authentication,
                    "shared_key_envelope",
                    "a shared-key envelope on a public-key queue: any holder of the shared key \
                     could have sealed it",
                ),
            );
        }
        let context = context_of(queue, &received.message);
        let started = Instant::now();
        let opened = match self.open(queue, received.body(), &context).await {
            Ok(opened) => opened,
            Err(error) => {
                return match refusal_of(&error) {
                    Some(refusal) => Verdict::Reject(received, refusal),
                    None => Verdict::Retry(received, key_error(&error)),
                };
            }
        };
        meters.open_duration.record(started.elapsed().as_secs_f64());

        // Freshness, against the broker's clock: when did the broker take this copy?
        let enqueued_at = received.enqueued_at();
        let sealed_at = opened.sealed_at;
        let valid_from = opened.not_before.map_or(sealed_at, |at| at.max(sealed_at));
        let stale = |detail: &'static str, error_type: &'static str| {
            Refusal::new(Rejection::Stale, error_type, detail)
        };
        let refusal = if enqueued_at + policy.clock_skew < sealed_at {
            Some(stale(
                "the broker enqueued it before it was sealed",
                "sealed_in_future",
            ))
        } else if enqueued_at > valid_from + policy.freshness_window + policy.clock_skew {
            Some(stale(
                "the broker enqueued it after the freshness window",
                "stale",
            ))
        } else if opened
            .not_before
            .is_some_and(|not_before| self.clock.now() + policy.clock_skew < not_before)
        {
            Some(stale(
                "delivered before its authenticated not-before time",
                "early",
            ))
        } else {
            None
        };
        if let Some(mut refusal) = refusal {
            refusal.key_id = Some(opened.key_id.clone());
            return Verdict::Reject(received, refusal);
        }

        // Last, the replay guard: a completed copy is refused; one in flight elsewhere waits.
        let claim = match self.new_claim() {
            Ok(claim) => claim,
            Err(error) => return Verdict::Retry(received, error),
        };
        let key = ReplayKey {
            queue,
            envelope_id: &opened.envelope_id,
        };
        let now = self.clock.now();
        match self
            .replay
            .claim(key, claim, received.locked_until, now)
            .await
        {
            Ok(ClaimOutcome::Claimed) => {}
            Ok(ClaimOutcome::Completed) => {
                let mut refusal =
                    Refusal::new(Rejection::Replay, "replay", "a copy of a completed message");
                refusal.key_id = Some(opened.key_id.clone());
                return Verdict::Reject(received, refusal);
            }
            Ok(ClaimOutcome::HeldElsewhere { until }) => {
                debug!(
                    messaging.destination.name = %queue,
                    messaging.message.id = %message_id,
                    "a copy of this message is being processed; this one waits"
                );
                metrics::counter!(metric::REPLAY_IN_FLIGHT_DUPLICATES, "queue" => queue.to_string()).increment(1);
                return Verdict::Wait(received, until.duration_since(now).unwrap_or_default());
            }
            Err(error) => match policy.replay_failure {
                ReplayFailure::FailClosed => {
                    warn!(
                        messaging.destination.name = %queue,
                        messaging.message.id = %message_id,
                        %error,
                        "the replay store is unavailable; giving the message back (fail closed)"
                    );
                    self.replay_store_failed(queue, "claim");
                    return Verdict::Retry(received, error);
                }
                ReplayFailure::FailOpen => {
                    warn!(
                        messaging.destination.name = %queue,
                        messaging.message.id = %message_id,
                        %error,
                        "the replay store is unavailable; handing the message over without the \
                         replay check (fail open, by this queue's policy)"
                    );
                    metrics::counter!(metric::REPLAY_STORE_FAILED_OPEN, "queue" => queue.to_string())
                        .increment(1);
                    hand_over(opened, &mut received.message, &mut received.delivery);
                    meters.count_received(true);
                    return Verdict::Accept(received);
                }
            },
        }

        debug!(
            messaging.destination.name = %queue,
            messaging.message.id = %message_id,
            key_id = %opened.key_id,
            sender_key_id = opened.sender_key_id.as_deref().unwrap_or(""),
            delivery_count = received.delivery_count(),
            "opened"
        );
        hand_over(opened, &mut received.message, &mut received.delivery);
        if let Some(seal) = &mut received.delivery.seal {
            seal.claim = Some(claim);
        }
        meters.count_received(true);
        Verdict::Accept(received)
    }

    /// Opens an envelope of either version, chosen by its version byte (unauthenticated, but an
    /// envelope opened by the wrong version's `open` is refused all the same).
    async fn open(
        &self,
        queue: &QueueName,
        envelope: &[u8],
        context: &Context<'_>,
    ) -> Result<Authenticated, KeyError> {
        let keys = self.keys_for(queue);
        if envelope_version(envelope) == Some(public::VERSION) {
            let opened = keys.open_public(envelope, context).await?;
            Ok(Authenticated {
                key_id: opened.recipient_key_id().to_string(),
                sender_key_id: Some(opened.sender_key_id().to_string()),
                envelope_id: *opened.envelope_id(),
                sealed_at: opened.sealed_at(),
                not_before: opened.not_before(),
                plaintext: opened.into_plaintext(),
            })
        } else {
            let opened = keys.open(envelope, context).await?;
            Ok(Authenticated {
                key_id: opened.key_id().to_string(),
                sender_key_id: None,
                envelope_id: *opened.envelope_id(),
                sealed_at: opened.sealed_at(),
                not_before: opened.not_before(),
                plaintext: opened.into_plaintext(),
            })
        }
    }

    /// Notes a failure of the replay store: counted, and receives from fail-closed queues wait
    /// until the store answers again ([`replay_store_ready`](Self::replay_store_ready)).
    fn replay_store_failed(&self, queue: &QueueName, operation: &'static str) {
        metrics::counter!(
            metric::REPLAY_STORE_ERRORS,
            "queue" => queue.to_string(),
            "operation" => operation
        )
        .increment(1);
        self.replay_store_down
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Before a receive from `queue`: fails (without touching the broker, so no message gains a
    /// delivery) while the replay store is down and the queue fails closed; asks the store
    /// whether it is back first.
    pub(crate) async fn replay_store_ready(&self, queue: &QueueName) -> Result<(), QueueError> {
        use std::sync::atomic::Ordering;
        if !self.replay_store_down.load(Ordering::Acquire)
            || self.policy(queue).replay_failure == ReplayFailure::FailOpen
        {
            return Ok(());
        }
        match self.replay.health().await {
            Ok(()) => {
                self.replay_store_down.store(false, Ordering::Release);
                debug!("the replay store answers again");
                Ok(())
            }
            Err(error) => {
                self.replay_store_failed(queue, "health");
                Err(error)
            }
        }
    }

    /// A fresh claim for one delivery, unique among every delivery any process claims.
    fn new_claim(&self) -> Result<ReplayClaim, QueueError> {
        self.claims.next()
    }

    /// Opens what opens, for reading dead letters and peeking: no freshness or replay check (the
    /// messages are being inspected, not processed), nothing refused. What does not open is
    /// returned as it sits in the queue, with `delivery.seal == None`.
    pub(crate) async fn inspect(
        &self,
        queue: &QueueName,
        message: &mut Message,
        delivery: &mut DeliveryInfo,
    ) {
        if !looks_sealed(message.body()) {
            return;
        }
        let context = context_of(queue, message);
        if let Ok(opened) = self.open(queue, message.body(), &context).await {
            hand_over(opened, message, delivery);
        }
    }

    /// The delivery was completed or dead-lettered: copies of it are replays from now on, for
    /// its queue's replay horizon.
    pub(crate) async fn settled_for_good(&self, received: &ReceivedMessage) {
        let Some(seal) = &received.delivery.seal else {
            return;
        };
        let queue = received.receipt.queue();
        let key = ReplayKey {
            queue,
            envelope_id: &seal.envelope_id,
        };
        let horizon = self.policy(queue).replay_horizon();
        if let Err(error) = self.replay.complete(key, horizon, self.clock.now()).await {
            // Settled all the same; only a copy sent later might now be taken for new.
            self.replay_store_failed(queue, "complete");
            warn!(
                messaging.destination.name = %queue,
                messaging.message.id = %received.message_id(),
                %error,
                "the replay guard could not record a settled message"
            );
        }
    }

    /// The delivery was given back: its claim ends, and the next delivery may take it.
    pub(crate) async fn given_back(&self, received: &ReceivedMessage) {
        let Some((key, claim)) = claim_of(received) else {
            return;
        };
        if let Err(error) = self.replay.release(key, claim).await {
            // The claim then ends with the lock it followed.
            debug!(messaging.message.id = %received.message_id(), %error, "releasing a replay claim failed");
        }
    }

    /// The delivery's lock was renewed until `until`: its claim follows. Returns false when the
    /// claim is no longer held.
    pub(crate) async fn lock_renewed(&self, received: &ReceivedMessage, until: SystemTime) -> bool {
        let Some((key, claim)) = claim_of(received) else {
            return true;
        };
        match self
            .replay
            .extend(key, claim, until, self.clock.now())
            .await
        {
            Ok(held) => held,
            Err(error) => {
                debug!(messaging.message.id = %received.message_id(), %error, "extending a replay claim failed");
                true
            }
        }
    }
}

/// The replay key and claim of a delivery the secure client received.
fn claim_of(received: &ReceivedMessage) -> Option<(ReplayKey<'_>, ReplayClaim)> {
    let seal = received.delivery.seal.as_ref()?;
    let claim = seal.claim?;
    Some((
        ReplayKey {
            queue: received.receipt.queue(),
            envelope_id: &seal.envelope_id,
        },
        claim,
    ))
}

/// What became of one received message.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Hand it to the application.
    Accept(ReceivedMessage),
    /// Dead-letter it.
    Reject(ReceivedMessage, Refusal),
    /// Give it back: the keys (or the replay guard) could not be had now.
    Retry(ReceivedMessage, QueueError),
    /// Give it back after this delay: a copy of it is being processed elsewhere.
    Wait(ReceivedMessage, Duration),
}

/// The generic classes of refusal: the dead-letter reason shows only these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// An unsealed message on a queue whose policy is `Reject`.
    Unsealed,
    /// The envelope did not authenticate: tampered, forged, malformed, moved to another queue or
    /// session, or its metadata changed.
    Authentication,
    /// The key it names is unknown, retired or expired.
    Key,
    /// A copy of a message already completed.
    Replay,
    /// Enqueued outside its freshness window, or delivered before its not-before time.
    Stale,
}

impl Rejection {
    /// The dead-letter reason: `rejected: authentication`, `rejected: replay`, ...
    pub const fn reason(self) -> &'static str {
        match self {
            Rejection::Unsealed => "rejected: unsealed",
            Rejection::Authentication => "rejected: authentication",
            Rejection::Key => "rejected: key",
            Rejection::Replay => "rejected: replay",
            Rejection::Stale => "rejected: stale",
        }
    }
}

/// One refusal: its class (public, in the dead-letter reason), and the details that go to the
/// log and the metric label only.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub(crate) rejection: Rejection,
    pub(crate) error_type: &'static str,
    pub(crate) detail: &'static str,
    pub(crate) key_id: Option<String>,
}

impl Refusal {
    fn new(rejection: Rejection, error_type: &'static str, detail: &'static str) -> Self {
        Refusal {
            rejection,
            error_type,
            detail,
            key_id: None,
        }
    }

    /// Logs and counts the refusal of `received` from `queue`.
    pub(crate) fn record(&self, queue: &QueueName, received: &ReceivedMessage) {
        warn!(
            messaging.destination.name = %queue,
            messaging.message.id = %received.message_id(),
            delivery_count = received.delivery_count(),
            key_id = self.key_id.as_deref().unwrap_or(""),
            error_type = self.error_type,
            detail = self.detail,
            reason = self.rejection.reason(),
            "message refused; dead-lettering it"
        );
        count_crypto_error(queue, self.error_type);
    }
}

/// Draws replay claims: 64 random bits drawn once per [`Security`] (so two instances, in this
/// process or another sharing the replay store, never draw the same claims but with a 2^-64
/// chance) followed by a 64-bit count (so one instance never repeats itself). One system
/// random call per instance instead of one per message (a `getrandom` system call, 0.5 to 1 µs
/// here). A claim only has to be unique: it tells one delivery's hold on an envelope id from
/// another's; it authenticates nothing (whoever can reach the store can read every claim).
#[derive(Debug)]
struct ClaimSource {
    /// The random prefix, or `None` when the system random source failed (then each claim is
    /// drawn whole, and fails as before if the source still fails).
    prefix: Option<u64>,
    count: std::sync::atomic::AtomicU64,
    random: ring::rand::SystemRandom,
}

impl ClaimSource {
    fn new() -> Self {
        let random = ring::rand::SystemRandom::new();
        let prefix = ring::rand::generate::<[u8; 8]>(&random)
            .ok()
            .map(|bytes| u64::from_le_bytes(bytes.expose()));
        ClaimSource {
            prefix,
            count: std::sync::atomic::AtomicU64::new(0),
            random,
        }
    }

    fn next(&self) -> Result<ReplayClaim, QueueError> {
        match self.prefix {
            Some(prefix) => {
                let count = self
                    .count
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(ReplayClaim::new(
                    (u128::from(prefix) << 64) | u128::from(count),
                ))
            }
            None => {
                let bytes: [u8; 16] = ring::rand::generate(&self.random)
                    .map_err(|_| {
                        QueueError::new(ErrorKind::Crypto, "the system random source failed")
                    })?
                    .expose();
                Ok(ReplayClaim::new(u128::from_le_bytes(bytes)))
            }
        }
    }
}

/// The refusal an open error means, or `None` when it is not the message's fault (the key
/// source is unavailable or holds an invalid keyset): then the message is retried.
fn refusal_of(error: &KeyError) -> Option<Refusal> {
    let (rejection, error_type, detail) = match error {
        KeyError::Crypto(CryptoError::UnknownKeyId(_)) => {
            (Rejection::Key, "unknown_key", "no key has its key id")
        }
        KeyError::Crypto(CryptoError::RetiredKey(_)) => {
            (Rejection::Key, "retired_key", "sealed under a retired key")
        }
        KeyError::Crypto(CryptoError::KeyExpired(_)) => (
            Rejection::Key,
            "expired_key",
            "sealed after its key's not_after",
        ),
        KeyError::Crypto(CryptoError::UntrustedSender(_)) => (
            Rejection::Authentication,
            "untrusted_sender",
            "signed by a sender key that is not on the trust list",
        ),
        KeyError::Crypto(CryptoError::RetiredSender(_)) => (
            Rejection::Key,
            "retired_sender",
            "signed by a retired sender key",
        ),
        KeyError::Crypto(CryptoError::DecryptFailed) => (
            Rejection::Authentication,
            "authentication",
            "authentication failed: tampered, forged, moved, or metadata changed",
        ),
        KeyError::Crypto(_) => (
            Rejection::Authentication,
            "malformed",
            "not a valid envelope (format, version or suite)",
        ),
        _ => return None,
    };
    let mut refusal = Refusal::new(rejection, error_type, detail);
    if let KeyError::Crypto(
        CryptoError::UnknownKeyId(id)
        | CryptoError::RetiredKey(id)
        | CryptoError::KeyExpired(id)
        | CryptoError::UntrustedSender(id)
        | CryptoError::RetiredSender(id),
    ) = error
    {
        refusal.key_id = Some(id.clone());
    }
    Some(refusal)
}

/// The context a message is sealed under and opened with: the queue and every metadata field
/// the application sets. Properties reserved for queue-runtime are transport details and left
/// out (the application cannot set them, and they are removed before it sees a message).
fn context_of<'m>(queue: &'m QueueName, message: &'m Message) -> Context<'m> {
    let mut context = Context::new(queue.as_str()).with_message_id(message.message_id().as_str());
    if let Some(session_id) = message.session_id() {
        context = context.with_session_id(session_id.as_str());
    }
    if let Some(correlation_id) = message.correlation_id() {
        context = context.with_correlation_id(correlation_id);
    }
    if let Some(content_type) = message.content_type() {
        context = context.with_content_type(content_type);
    }
    context.with_properties(
        message
            .properties()
            .iter()
            .filter(|(key, _)| !is_reserved_key(key)),
    )
}

fn strip_reserved(message: &mut Message) {
    let reserved: Vec<String> = message
        .properties()
        .iter()
        .filter(|(key, _)| is_reserved_key(key))
        .map(|(key, _)| key.to_owned())
        .collect();
    for key in reserved {
        message.properties_mut().remove(&key);
    }
}

/// What an opened envelope of either version proved.
struct Authenticated {
    /// The shared key (version 1) or the recipient key (version 2) it was sealed under.
    key_id: String,
    /// The sender key whose signature it carries (version 2 only).
    sender_key_id: Option<String>,
    envelope_id: [u8; 32],
    sealed_at: SystemTime,
    not_before: Option<SystemTime>,
    plaintext: Vec<u8>,
}

/// Only what was authenticated reaches the application: the plaintext, the metadata without
/// the transport's reserved properties, and what the seal proved.
fn hand_over(opened: Authenticated, message: &mut Message, delivery: &mut DeliveryInfo) {
    let mut seal = SealInfo::new(
        opened.key_id,
        opened.envelope_id,
        opened.sealed_at,
        opened.not_before,
    );
    if let Some(sender) = opened.sender_key_id {
        seal = seal.with_sender_key_id(sender);
    }
    delivery.seal = Some(seal);
    message.set_body(Bytes::from(opened.plaintext));
    strip_reserved(message);
}

/// A key-source problem as a queue error (the source error kept): transient when the source was
/// unreachable.
fn key_error(error: &KeyError) -> QueueError {
    match error {
        KeyError::Crypto(crypto) => crypto_error(crypto),
        KeyError::Unavailable { .. } => {
            QueueError::new(ErrorKind::ServiceUnavailable, error.to_string())
                .with_source(error.clone())
        }
        _ => QueueError::new(ErrorKind::Crypto, error.to_string()).with_source(error.clone()),
    }
}

/// A crypto failure as a queue error, the crypto error kept as its source.
fn crypto_error(error: &CryptoError) -> QueueError {
    match error {
        CryptoError::TooLarge { size, max, .. } => {
            QueueError::message_too_large(*size, *max).with_source(error.clone())
        }
        _ => QueueError::new(ErrorKind::Crypto, error.to_string()).with_source(error.clone()),
    }
}

fn count_crypto_error(queue: &QueueName, error_type: &'static str) {
    metrics::counter!(
        metric::CRYPTO_ERRORS,
        "queue" => queue.to_string(),
        "error_type" => error_type
    )
    .increment(1);
}
