//! The replay guard shared by every consumer of a queue, on Redis (the `redis` feature).
//!
//! One key per envelope id: `<prefix>:<queue>:<id>`, where `<id>` is the first 16 bytes of the
//! SHA-256 of the envelope id, in hex. The value is the claim of the delivery holding it
//! (random, 128 bits, hex) with the claim's end as the key's expiry, or `done` with the queue's
//! replay horizon as expiry. Nothing of a body or a key is ever written. Each operation is one
//! round trip: a Lua script where it must read and write atomically.
//!
//! Built on the `redis` crate (tokio, a `ConnectionManager` that reconnects by itself, TLS
//! through rustls for `rediss://`), the most used Redis client in Rust, maintained by the
//! redis-rs organisation; `fred` was the alternative (also sound, larger, with its own pooling
//! and reconnection policy): one connection manager is all this store needs.

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use queue_core::{ErrorKind, QueueError, ReplayClaim};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use secrecy::{ExposeSecret, SecretString};

use super::{ClaimOutcome, ReplayKey, ReplayStore};

/// The value of a completed envelope id.
const DONE: &str = "done";

/// GET; `done` → 2; another unexpired claim → 1 and its remaining milliseconds; else SET the
/// claim with its expiry → 0.
const CLAIM: &str = r"
local held = redis.call('GET', KEYS[1])
if held == ARGV[3] then return {2, 0} end
if held and held ~= ARGV[1] then return {1, redis.call('PTTL', KEYS[1])} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {0, 0}
";

/// Moves the expiry of the key while it still holds this claim.
const EXTEND: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// Deletes the key while it still holds this claim.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
";

/// How a [`RedisReplayStore`] connects and how long it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStoreOptions {
    /// The first part of every key (default `queue-runtime:replay`): several applications can
    /// share a Redis.
    pub prefix: String,
    /// How long one call may take before it fails (and the client fails closed or open, per
    /// queue). Default 2 s.
    pub response_timeout: Duration,
    /// How long connecting may take. Default 2 s.
    pub connection_timeout: Duration,
}

impl Default for RedisStoreOptions {
    fn default() -> Self {
        RedisStoreOptions {
            prefix: "queue-runtime:replay".to_owned(),
            response_timeout: Duration::from_secs(2),
            connection_timeout: Duration::from_secs(2),
        }
    }
}

impl RedisStoreOptions {
    /// Sets [`prefix`](Self::prefix).
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets [`response_timeout`](Self::response_timeout).
    #[must_use]
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }
}

/// A [`ReplayStore`] on Redis, shared by every consumer that connects to the same Redis with the
/// same prefix.
///
/// ```no_run
/// use std::sync::Arc;
/// use queue_runtime::security::{RedisReplayStore, RedisStoreOptions};
///
/// # async fn run(security: queue_runtime::Security) -> Result<(), queue_runtime::core::QueueError> {
/// let url = std::env::var("REDIS_URL").unwrap_or_default().into();   // rediss://... for TLS
/// let store = RedisReplayStore::connect(&url, RedisStoreOptions::default()).await?;
/// let security = security.with_replay_store(Arc::new(store));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisReplayStore {
    connection: ConnectionManager,
    prefix: String,
    claim: Script,
    extend: Script,
    release: Script,
}

impl fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL (which may hold a password) is not kept; the prefix is not secret.
        f.debug_struct("RedisReplayStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisReplayStore {
    /// Connects to the Redis at `url` (`redis://`, or `rediss://` for TLS; a password in the
    /// URL is why it is a secret) and checks that it answers.
    pub async fn connect(
        url: &SecretString,
        options: RedisStoreOptions,
    ) -> Result<Self, QueueError> {
        let client = redis::Client::open(url.expose_secret())
            .map_err(|error| unavailable("connect", &error).with_operation("connect"))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(options.response_timeout))
            .set_connection_timeout(Some(options.connection_timeout))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|error| unavailable("connect", &error))?;
        let store = RedisReplayStore {
            connection,
            prefix: options.prefix,
            claim: Script::new(CLAIM),
            extend: Script::new(EXTEND),
            release: Script::new(RELEASE),
        };
        store.health().await?;
        Ok(store)
    }

    /// The Redis key of one envelope id: namespaced by prefix and queue, the id hashed.
    pub fn key_of(&self, key: ReplayKey<'_>) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, key.envelope_id);
        format!(
            "{}:{}:{}",
            self.prefix,
            key.queue,
            hex::encode(&digest.as_ref()[..16])
        )
    }
}

/// A Redis failure: the store is unavailable for now (transient), the Redis error kept.
fn unavailable(operation: &'static str, error: &redis::RedisError) -> QueueError {
    QueueError::new(
        ErrorKind::ServiceUnavailable,
        format!("the replay store (Redis) failed to {operation}: {error}"),
    )
    .with_operation(operation)
    .with_source(redis::RedisError::clone(error))
}

/// Milliseconds until `until` (at least 1: Redis refuses an expiry of 0).
fn millis_until(until: SystemTime, now: SystemTime) -> u64 {
    let left = until.duration_since(now).unwrap_or_default();
    u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn claim_value(claim: ReplayClaim) -> String {
    format!("{:032x}", claim.value())
}

#[async_trait]
impl ReplayStore for RedisReplayStore {
    async fn claim(
        &self,
        key: ReplayKey<'_>,
        claim: ReplayClaim,
        until: SystemTime,
        now: SystemTime,
    ) -> Result<ClaimOutcome, QueueError> {
        let mut connection = self.connection.clone();
        let (state, held_for): (u8, i64) = self
            .claim
            .key(self.key_of(key))
            .arg(claim_value(claim))
            .arg(millis_until(until, now))
            .arg(DONE)
            .invoke_async(&mut connection)
            .await
            .map_err(|error| unavailable("claim", &error))?;
        Ok(match state {
            0 => ClaimOutcome::Claimed,
            2 => ClaimOutcome::Completed,
            _ => ClaimOutcome::HeldElsewhere {
                until: now + Duration::from_millis(u64::try_from(held_for).unwrap_or(0)),
            },
        })
    }

    async fn extend(
        &self,
        key: ReplayKey<'_>,
        claim: ReplayClaim,
        until: SystemTime,
        now: SystemTime,
    ) -> Result<bool, QueueError> {
        let mut connection = self.connection.clone();
        let held: u8 = self
            .extend
            .key(self.key_of(key))
            .arg(claim_value(claim))
            .arg(millis_until(until, now))
            .invoke_async(&mut connection)
            .await
            .map_err(|error| unavailable("extend", &error))?;
        Ok(held == 1)
    }

    async fn release(&self, key: ReplayKey<'_>, claim: ReplayClaim) -> Result<(), QueueError> {
        let mut connection = self.connection.clone();
        let _: u8 = self
            .release
            .key(self.key_of(key))
            .arg(claim_value(claim))
            .invoke_async(&mut connection)
            .await
            .map_err(|error| unavailable("release", &error))?;
        Ok(())
    }

    async fn complete(
        &self,
        key: ReplayKey<'_>,
        horizon: Duration,
        now: SystemTime,
    ) -> Result<(), QueueError> {
        let mut connection = self.connection.clone();
        let horizon_ms = millis_until(now + horizon, now);
        let () = connection
            .pset_ex(self.key_of(key), DONE, horizon_ms)
            .await
            .map_err(|error| unavailable("complete", &error))?;
        Ok(())
    }

    async fn health(&self) -> Result<(), QueueError> {
        let mut connection = self.connection.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .map_err(|error| unavailable("answer a ping", &error))?;
        Ok(())
    }
}
