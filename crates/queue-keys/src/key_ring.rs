//! [`KeyRing`]: a key source behind a cache, a negative cache and single-flight refreshes.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use queue_crypto::public;
use queue_crypto::{Context, CryptoError, Keyset, Opened};
use tracing::{info, warn};

use crate::error::{KeyError, Result};
use crate::keys::Keys;
use crate::source::KeySource;

/// How a [`KeyRing`] caches.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyRingOptions {
    /// How long a fetched keyset is used before the source is asked again. Default 30 s: a
    /// rotated key file is picked up within this time.
    pub refresh_interval: Duration,
    /// How long an unknown key id is remembered as unknown. Default 60 s.
    pub unknown_id_ttl: Duration,
    /// How many unknown key ids are remembered. Default 10,000.
    pub unknown_id_capacity: u64,
    /// An unknown key id makes the ring ask the source again (the key may have just been
    /// added), at most once per this interval, whatever the number of distinct ids. Default 5 s.
    pub min_forced_refresh_interval: Duration,
    /// The ring serves a producer only: keys holding a recipient private key are refused (at
    /// startup an error; later, the last good keys stay in use and the failure is counted), so
    /// a producer's configuration can never hold what opens messages. Default false.
    pub producer_only: bool,
}

impl Default for KeyRingOptions {
    fn default() -> Self {
        KeyRingOptions {
            refresh_interval: Duration::from_secs(30),
            unknown_id_ttl: Duration::from_secs(60),
            unknown_id_capacity: 10_000,
            min_forced_refresh_interval: Duration::from_secs(5),
            producer_only: false,
        }
    }
}

impl KeyRingOptions {
    /// Sets [`refresh_interval`](Self::refresh_interval).
    #[must_use]
    pub fn with_refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// Sets [`unknown_id_ttl`](Self::unknown_id_ttl).
    #[must_use]
    pub fn with_unknown_id_ttl(mut self, ttl: Duration) -> Self {
        self.unknown_id_ttl = ttl;
        self
    }

    /// Sets [`unknown_id_capacity`](Self::unknown_id_capacity).
    #[must_use]
    pub fn with_unknown_id_capacity(mut self, capacity: u64) -> Self {
        self.unknown_id_capacity = capacity;
        self
    }

    /// Sets [`min_forced_refresh_interval`](Self::min_forced_refresh_interval).
    #[must_use]
    pub fn with_min_forced_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_forced_refresh_interval = interval;
        self
    }

    /// Sets [`producer_only`](Self::producer_only).
    #[must_use]
    pub fn with_producer_only(mut self, producer_only: bool) -> Self {
        self.producer_only = producer_only;
        self
    }
}

/// The keys a client seals and opens with: a [`KeySource`] behind
///
/// - the current keyset, used until the refresh interval has passed since it was fetched: held
///   as an `Arc` behind a read lock, so a message pays an uncontended read and a clock read,
///   not a cache lookup; concurrent callers that find it stale share one fetch;
/// - the last good keyset, used (with a warning) when a refresh fails, so an unreachable store
///   does not stop a running service;
/// - a bounded `moka` negative cache of unknown key ids, and a limit of one forced refresh per
///   [`min_forced_refresh_interval`](KeyRingOptions::min_forced_refresh_interval): a flood of
///   envelopes with forged key ids costs at most one fetch per interval, never one per message.
pub struct KeyRing {
    source: Arc<dyn KeySource>,
    options: KeyRingOptions,
    current: RwLock<Option<Current>>,
    /// Held while fetching, so that callers finding the keyset stale share one fetch.
    fetching: tokio::sync::Mutex<()>,
    last_good: RwLock<Option<Arc<Keys>>>,
    unknown_ids: moka::sync::Cache<String, ()>,
    last_forced_refresh: Mutex<Option<Instant>>,
    fetches: AtomicU64,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("source", &self.source.name())
            .field("options", &self.options)
            .field("fetches", &self.fetch_count())
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// A key ring over `source` with the default options.
    pub fn new(source: Arc<dyn KeySource>) -> Self {
        Self::with_options(source, KeyRingOptions::default())
    }

    /// A key ring over `source`.
    pub fn with_options(source: Arc<dyn KeySource>, options: KeyRingOptions) -> Self {
        KeyRing {
            current: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
            unknown_ids: moka::sync::Cache::builder()
                .max_capacity(options.unknown_id_capacity)
                .time_to_live(options.unknown_id_ttl)
                .build(),
            source,
            options,
            last_good: RwLock::new(None),
            last_forced_refresh: Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }

    /// The source's name, for logs.
    pub fn source_name(&self) -> String {
        self.source.name()
    }

    /// How many times the source has been asked: an operational counter, and the evidence that
    /// caching works.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The current keys (shared and public-key), from the cache when younger than the refresh
    /// interval.
    ///
    /// # Errors
    /// The source's error, when it fails and no keys were ever fetched.
    pub async fn keys(&self) -> Result<Arc<Keys>> {
        if let Some(keys) = self.fresh() {
            return Ok(keys);
        }
        let _fetching = self.fetching.lock().await;
        // Another caller may have fetched while this one waited.
        if let Some(keys) = self.fresh() {
            return Ok(keys);
        }
        let keys = self.fetch_or_last_good().await?;
        self.store(&keys);
        Ok(keys)
    }

    /// The current shared-key (version 1) keyset, from the cache when it is younger than the
    /// refresh interval.
    ///
    /// # Errors
    /// The source's error, when it fails and no keyset was ever fetched;
    /// [`KeyError::Invalid`] when the source holds no shared key (public-key entries only).
    pub async fn keyset(&self) -> Result<Arc<Keyset>> {
        let keys = self.keys().await?;
        self.shared_of(&keys)
    }

    fn shared_of(&self, keys: &Keys) -> Result<Arc<Keyset>> {
        keys.shared().cloned().ok_or_else(|| KeyError::Invalid {
            source_name: self.source.name(),
            reason: "it holds no shared (version 1) key".to_owned(),
        })
    }

    /// Asks the source now and caches the answer (for a rotation that must not wait for the
    /// refresh interval).
    pub async fn refresh(&self) -> Result<Arc<Keys>> {
        let keys = self.fetch_or_last_good().await?;
        self.store(&keys);
        Ok(keys)
    }

    /// The cached keys, unless the refresh interval has passed since they were fetched.
    fn fresh(&self) -> Option<Arc<Keys>> {
        let current = self.current.read();
        current
            .as_ref()
            .filter(|current| current.fetched_at.elapsed() < self.options.refresh_interval)
            .map(|current| Arc::clone(&current.keys))
    }

    fn store(&self, keys: &Arc<Keys>) {
        *self.current.write() = Some(Current {
            keys: Arc::clone(keys),
            fetched_at: Instant::now(),
        });
    }

    /// The current shared keyset, which holds a key with this id (in any state).
    ///
    /// An id the cached keyset lacks is answered from the negative cache when it was unknown
    /// moments ago; otherwise the source is asked again, at most once per
    /// [`min_forced_refresh_interval`](KeyRingOptions::min_forced_refresh_interval).
    ///
    /// # Errors
    /// a `CryptoError::UnknownKeyId` inside [`KeyError::Crypto`], or the source's error.
    pub async fn keyset_with(&self, key_id: &str) -> Result<Arc<Keyset>> {
        let keys = self
            .keys_with(key_id, |keys| {
                keys.shared()
                    .is_some_and(|keyset| keyset.get(key_id).is_some())
            })
            .await?;
        self.shared_of(&keys)
    }

    /// The current keys, for which `has` is true (they hold `key_id`), asking the source again
    /// when they do not: rate-limited, negative-cached.
    async fn keys_with(&self, key_id: &str, has: impl Fn(&Keys) -> bool) -> Result<Arc<Keys>> {
        let keys = self.keys().await?;
        if has(&keys) {
            return Ok(keys);
        }
        if self.unknown_ids.contains_key(key_id) {
            return Err(KeyError::unknown_key_id(key_id.to_owned()));
        }
        let may_refresh = {
            let mut last = self.last_forced_refresh.lock();
            let due =
                last.is_none_or(|at| at.elapsed() >= self.options.min_forced_refresh_interval);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        let keys = if may_refresh {
            self.refresh().await?
        } else {
            keys
        };
        if has(&keys) {
            return Ok(keys);
        }
        self.unknown_ids.insert(key_id.to_owned(), ());
        Err(KeyError::unknown_key_id(key_id.to_owned()))
    }

    /// Opens a version 1 envelope with the key its (authenticated) key id names.
    ///
    /// # Errors
    /// [`KeyError::Crypto`] for every envelope that does not open (format, version, suite,
    /// retired or expired key, authentication, `CryptoError::UnknownKeyId`), or the source's
    /// error (transient: the message should be retried, not refused).
    pub async fn open(&self, envelope: &[u8], context: &Context<'_>) -> Result<Opened> {
        let keyset = self.keyset().await?;
        match queue_crypto::open(&keyset, envelope, context) {
            // Refused before any cryptography: the id may name a key added since the last
            // refresh, so ask again (rate-limited, negative-cached) and open once more.
            Err(CryptoError::UnknownKeyId(key_id)) => {
                let keyset = self.keyset_with(&key_id).await?;
                Ok(queue_crypto::open(&keyset, envelope, context)?)
            }
            opened => Ok(opened?),
        }
    }

    /// Opens a public-key (version 2) envelope with the consumer keys: the recipient key pair
    /// its header names, checked against the trust list of senders.
    ///
    /// A recipient key or a sender the cached keys lack may have been added since the last
    /// refresh: the source is asked again (rate-limited, negative-cached) and the envelope
    /// opened once more. Keys without consumer entries open nothing: every envelope fails as an
    /// unknown recipient key.
    ///
    /// # Errors
    /// [`KeyError::Crypto`] for every envelope that does not open (as [`open`](Self::open),
    /// plus `UntrustedSender` and `RetiredSender`), or the source's error.
    pub async fn open_public(
        &self,
        envelope: &[u8],
        context: &Context<'_>,
    ) -> Result<public::Opened> {
        let keys = self.keys().await?;
        match open_with(&keys, envelope, context) {
            Err(CryptoError::UnknownKeyId(key_id)) => {
                let keys = self
                    .keys_with(&key_id, |keys| {
                        keys.consumer()
                            .is_some_and(|consumer| consumer.key_pair(&key_id).is_some())
                    })
                    .await?;
                Ok(open_with(&keys, envelope, context)?)
            }
            Err(CryptoError::UntrustedSender(key_id)) => {
                let keys = self
                    .keys_with(&key_id, |keys| {
                        keys.consumer()
                            .is_some_and(|consumer| consumer.trusted_sender(&key_id).is_some())
                    })
                    .await
                    // Still unknown: refused as untrusted, not as an unknown recipient key.
                    .map_err(|_| KeyError::Crypto(CryptoError::UntrustedSender(key_id)))?;
                Ok(open_with(&keys, envelope, context)?)
            }
            opened => Ok(opened?),
        }
    }

    async fn fetch_or_last_good(&self) -> Result<Arc<Keys>> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let fetched = self.source.fetch().await.and_then(|keys| {
            if self.options.producer_only && keys.has_recipient_private_key() {
                return Err(KeyError::Invalid {
                    source_name: self.source.name(),
                    reason: "it holds a recipient private key, and this configuration is a \
                             producer's: a producer must not be able to open messages (give \
                             it the public half)"
                        .to_owned(),
                });
            }
            Ok(keys)
        });
        match fetched {
            Ok(keys) => {
                let described = keys.describe();
                let changed = self
                    .last_good
                    .read()
                    .as_ref()
                    .is_none_or(|previous| previous.describe() != described);
                if changed {
                    info!(
                        key_source = %self.source.name(),
                        keys = %described,
                        "keyset loaded"
                    );
                }
                *self.last_good.write() = Some(Arc::clone(&keys));
                Ok(keys)
            }
            Err(error) => {
                let last_good = self.last_good.read().clone();
                metrics::counter!(
                    crate::KEY_SOURCE_FAILURES,
                    "key_source" => self.source.name(),
                    "fallback" => if last_good.is_some() { "last_good" } else { "none" },
                )
                .increment(1);
                match last_good {
                    Some(keys) => {
                        warn!(
                            key_source = %self.source.name(),
                            %error,
                            "key source failed; keeping the last good keyset"
                        );
                        Ok(keys)
                    }
                    None => Err(error),
                }
            }
        }
    }
}

/// The keys in use and when they were fetched.
#[derive(Debug)]
struct Current {
    keys: Arc<Keys>,
    fetched_at: Instant,
}

/// Opens a version 2 envelope with `keys`' consumer entries; without any, the envelope's
/// recipient key is unknown here.
fn open_with(
    keys: &Keys,
    envelope: &[u8],
    context: &Context<'_>,
) -> std::result::Result<public::Opened, CryptoError> {
    match keys.consumer() {
        Some(consumer) => public::open(consumer, envelope, context),
        None => {
            let header = public::peek_header(envelope)?;
            Err(CryptoError::UnknownKeyId(header.recipient_key_id))
        }
    }
}
