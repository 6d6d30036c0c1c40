//! [`KeyRing`]: a key source behind a cache, a negative cache and single-flight refreshes.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use queue_crypto::{Context, CryptoError, Keyset, Opened};
use tracing::{info, warn};

use crate::error::{KeyError, Result};
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
}

impl Default for KeyRingOptions {
    fn default() -> Self {
        KeyRingOptions {
            refresh_interval: Duration::from_secs(30),
            unknown_id_ttl: Duration::from_secs(60),
            unknown_id_capacity: 10_000,
            min_forced_refresh_interval: Duration::from_secs(5),
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
    last_good: RwLock<Option<Arc<Keyset>>>,
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

    /// The current keyset, from the cache when it is younger than the refresh interval.
    ///
    /// # Errors
    /// The source's error, when it fails and no keyset was ever fetched.
    pub async fn keyset(&self) -> Result<Arc<Keyset>> {
        if let Some(keyset) = self.fresh() {
            return Ok(keyset);
        }
        let _fetching = self.fetching.lock().await;
        // Another caller may have fetched while this one waited.
        if let Some(keyset) = self.fresh() {
            return Ok(keyset);
        }
        let keyset = self.fetch_or_last_good().await?;
        self.store(&keyset);
        Ok(keyset)
    }

    /// Asks the source now and caches the answer (for a rotation that must not wait for the
    /// refresh interval).
    pub async fn refresh(&self) -> Result<Arc<Keyset>> {
        let keyset = self.fetch_or_last_good().await?;
        self.store(&keyset);
        Ok(keyset)
    }

    /// The cached keyset, unless the refresh interval has passed since it was fetched.
    fn fresh(&self) -> Option<Arc<Keyset>> {
        let current = self.current.read();
        current
            .as_ref()
            .filter(|current| current.fetched_at.elapsed() < self.options.refresh_interval)
            .map(|current| Arc::clone(&current.keyset))
    }

    fn store(&self, keyset: &Arc<Keyset>) {
        *self.current.write() = Some(Current {
            keyset: Arc::clone(keyset),
            fetched_at: Instant::now(),
        });
    }

    /// The current keyset, which holds a key with this id (in any state).
    ///
    /// An id the cached keyset lacks is answered from the negative cache when it was unknown
    /// moments ago; otherwise the source is asked again, at most once per
    /// [`min_forced_refresh_interval`](KeyRingOptions::min_forced_refresh_interval).
    ///
    /// # Errors
    /// a `CryptoError::UnknownKeyId` inside [`KeyError::Crypto`], or the source's error.
    pub async fn keyset_with(&self, key_id: &str) -> Result<Arc<Keyset>> {
        let keyset = self.keyset().await?;
        if keyset.get(key_id).is_some() {
            return Ok(keyset);
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
        let keyset = if may_refresh {
            self.refresh().await?
        } else {
            keyset
        };
        if keyset.get(key_id).is_some() {
            return Ok(keyset);
        }
        self.unknown_ids.insert(key_id.to_owned(), ());
        Err(KeyError::unknown_key_id(key_id.to_owned()))
    }

    /// Opens an envelope with the key its (authenticated) key id names.
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

    async fn fetch_or_last_good(&self) -> Result<Arc<Keyset>> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match self.source.fetch().await {
            Ok(keyset) => {
                let changed = self
                    .last_good
                    .read()
                    .as_ref()
                    .is_none_or(|previous| !same_keys(previous, &keyset));
                if changed {
                    info!(
                        key_source = %self.source.name(),
                        keys = %describe(&keyset),
                        "keyset loaded"
                    );
                }
                *self.last_good.write() = Some(Arc::clone(&keyset));
                Ok(keyset)
            }
            Err(error) => {
                let last_good = self.last_good.read().clone();
                match last_good {
                    Some(keyset) => {
                        warn!(
                            key_source = %self.source.name(),
                            %error,
                            "key source failed; keeping the last good keyset"
                        );
                        Ok(keyset)
                    }
                    None => Err(error),
                }
            }
        }
    }
}

/// The keyset in use and when it was fetched.
#[derive(Debug)]
struct Current {
    keyset: Arc<Keyset>,
    fetched_at: Instant,
}

/// Ids and states, for logs: `orders-2026-11=primary, orders-2026-08=active`.
fn describe(keyset: &Keyset) -> String {
    keyset
        .keys()
        .map(|key| format!("{}={}", key.id(), key.state()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn same_keys(a: &Keyset, b: &Keyset) -> bool {
    a.keys().count() == b.keys().count()
        && a.keys().zip(b.keys()).all(|(x, y)| {
            x.id() == y.id() && x.state() == y.state() && x.not_after() == y.not_after()
        })
}
