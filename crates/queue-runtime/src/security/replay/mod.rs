//! The replay guard: which envelope ids are being processed (claimed) and which were completed.
//!
//! An envelope id is **claimed** when a delivery of it passes every other check at receive, for
//! as long as that delivery's lock lasts (renewals extend the claim). Another copy that arrives
//! meanwhile (the broker delivering one message twice, or an attacker re-sending it) waits: it
//! is given back with a delay. Settling the delivery **releases** the claim (given back: the
//! next delivery may claim it) or makes it **final** (completed or dead-lettered: every later
//! copy is refused as a replay, for the queue's replay horizon). A consumer that dies holding a
//! claim blocks nobody for longer than its lock: the claim ends with it.
//!
//! [`ReplayStore`] is where this is kept: [`InProcessReplayStore`] (the default) serves one
//! process; a store shared by every consumer of a queue (`RedisReplayStore`, the `redis`
//! feature) makes the guard hold across processes. The semantics and their limits:
//! `docs/security.md`.

#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "redis")]
pub use self::redis::{RedisReplayStore, RedisStoreOptions};

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use moka::ops::compute::Op;
use queue_core::{QueueError, QueueName, ReplayClaim};

/// What a store knows of one envelope id when a delivery tries to claim it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The delivery now holds the claim.
    Claimed,
    /// Another delivery holds it until `until` (its lock's end, as last renewed).
    HeldElsewhere {
        /// When the other claim ends unless renewed.
        until: SystemTime,
    },
    /// A delivery of this envelope was completed: this one is a replay.
    Completed,
}

/// One envelope id of one queue: the key of everything a [`ReplayStore`] keeps.
#[derive(Debug, Clone, Copy)]
pub struct ReplayKey<'a> {
    /// The queue the envelope was sealed for.
    pub queue: &'a QueueName,
    /// The envelope's unique id (never its body or any key material).
    pub envelope_id: &'a [u8; 32],
}

/// Where the replay guard keeps claims and completed envelope ids.
///
/// Every call takes `now` from the secure client's clock, so tests that drive time drive the
/// guard too. A store error is never read as "not a replay": the client gives the message back
/// (it waits) unless the queue's policy says to fail open.
#[async_trait]
pub trait ReplayStore: Send + Sync + fmt::Debug {
    /// Claims `key` for one delivery until `until`, unless another unexpired claim or a
    /// completion is there.
    async fn claim(
        &self,
        key: ReplayKey<'_>,
        claim: ReplayClaim,
        until: SystemTime,
        now: SystemTime,
    ) -> Result<ClaimOutcome, QueueError>;

    /// Moves the end of `claim` to `until` (its lock was renewed). Returns false when the
    /// claim is no longer held (released, completed, or taken over after it ended).
    async fn extend(
        &self,
        key: ReplayKey<'_>,
        claim: ReplayClaim,
        until: SystemTime,
        now: SystemTime,
    ) -> Result<bool, QueueError>;

    /// Releases `claim` (its delivery was given back); another claim is left alone.
    async fn release(&self, key: ReplayKey<'_>, claim: ReplayClaim) -> Result<(), QueueError>;

    /// Marks `key` completed for `horizon`: every later copy is a replay.
    async fn complete(
        &self,
        key: ReplayKey<'_>,
        horizon: Duration,
        now: SystemTime,
    ) -> Result<(), QueueError>;

    /// Whether the store answers now (after a failure, the client asks this before it receives
    /// again, so that an outage does not cost every waiting message a delivery).
    async fn health(&self) -> Result<(), QueueError>;
}

/// How many envelope ids (claimed or completed) the in-process store keeps by default.
pub const DEFAULT_REPLAY_CAPACITY: u64 = 100_000;

/// The replay guard of one process: a bounded cache (moka) of claims and completed ids.
///
/// Each entry lives as long as it means something (a claim until its end, a completion for
/// its queue's horizon) or until the cache is full and evicts it. Consumers in other processes
/// do not see it: use a shared store when several consumers compete on a queue.
pub struct InProcessReplayStore {
    entries: moka::sync::Cache<[u8; 32], Entry>,
}

impl fmt::Debug for InProcessReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessReplayStore")
            .field("capacity", &self.entries.policy().max_capacity())
            .finish_non_exhaustive()
    }
}

impl Default for InProcessReplayStore {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_REPLAY_CAPACITY)
    }
}

impl InProcessReplayStore {
    /// A store remembering at most `capacity` envelope ids. Size it above the number of
    /// messages completed per freshness window.
    pub fn with_capacity(capacity: u64) -> Self {
        InProcessReplayStore {
            entries: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(EntryLifetime)
                .build(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Held {
        claim: ReplayClaim,
        until: SystemTime,
    },
    Completed,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    state: State,
    /// How long the cache keeps the entry (real time): a claim a little past its end, a
    /// completion for its horizon. Whether a claim still holds is judged by `until` against
    /// the caller's clock, not by this.
    keep_for: Duration,
}

/// A claim's entry is kept this much past the claim's end, so that a late settle still finds it.
const CLAIM_GRACE: Duration = Duration::from_secs(60);

impl Entry {
    fn held(claim: ReplayClaim, until: SystemTime, now: SystemTime) -> Self {
        Entry {
            state: State::Held { claim, until },
            keep_for: until.duration_since(now).unwrap_or_default() + CLAIM_GRACE,
        }
    }
}

struct EntryLifetime;

impl moka::Expiry<[u8; 32], Entry> for EntryLifetime {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        entry: &Entry,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(entry.keep_for)
    }

    fn expire_after_update(
        &self,
        _key: &[u8; 32],
        entry: &Entry,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.keep_for)
    }
}

#[async_trait]
impl ReplayStore for InProcessReplayStore {
    async fn claim(
        &self,
        key: ReplayKey<'_>,
        claim: ReplayClaim,
        until: SystemTime,
        now: SystemTime,
    ) -> Result<ClaimOutcome, QueueError> {
        let mut outcome = ClaimOutcome::Claimed;
        self.entries
            .entry(*key.envelope_id)
            .and_compute_with(|existing| match existing.map(|entry| entry.into_value()) {
                Some(Entry {
                    state: State::Completed,
                    ..
                }) => {
                    outcome = ClaimOutcome::Completed;
                    Op::Nop
                }
                Some(Entry {
                    state:
                        State::Held {
                            claim: other,
                            until: held_until,
                        },
                    ..
                }) if other != claim && held_until > now => {
                    outcome = ClaimOutcome::HeldElsewhere { until: held_until };
                    Op::Nop
                }
                _ => Op::Put(Entry::held(claim, until, now)),
            });
        Ok(outcome)
    }

    async fn extend(
        &self,
        key: ReplayKey<'_>,
        claim: ReplayClaim,
        until: SystemTime,
        now: SystemTime,
    ) -> Result<bool, QueueError> {
        let mut held = false;
        self.entries
            .entry(*key.envelope_id)
            .and_compute_with(|existing| match existing.map(|entry| entry.into_value()) {
                Some(Entry {
                    state: State::Held { claim: holder, .. },
                    ..
                }) if holder == claim => {
                    held = true;
                    Op::Put(Entry::held(claim, until, now))
                }
                _ => Op::Nop,
            });
        Ok(held)
    }

    async fn release(&self, key: ReplayKey<'_>, claim: ReplayClaim) -> Result<(), QueueError> {
        self.entries
            .entry(*key.envelope_id)
            .and_compute_with(|existing| match existing.map(|entry| entry.into_value()) {
                Some(Entry {
                    state: State::Held { claim: holder, .. },
                    ..
                }) if holder == claim => Op::Remove,
                _ => Op::Nop,
            });
        Ok(())
    }

    async fn complete(
        &self,
        key: ReplayKey<'_>,
        horizon: Duration,
        _now: SystemTime,
    ) -> Result<(), QueueError> {
        self.entries.insert(
            *key.envelope_id,
            Entry {
                state: State::Completed,
                keep_for: horizon,
            },
        );
        Ok(())
    }

    async fn health(&self) -> Result<(), QueueError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(queue: &'a QueueName, id: &'a [u8; 32]) -> ReplayKey<'a> {
        ReplayKey {
            queue,
            envelope_id: id,
        }
    }

    #[tokio::test]
    async fn one_claim_at_a_time_until_it_ends_or_is_released() {
        let store = InProcessReplayStore::default();
        let queue = QueueName::new("q").unwrap();
        let id = [7_u8; 32];
        let now = SystemTime::now();
        let (first, second) = (ReplayClaim::new(1), ReplayClaim::new(2));
        let lock_end = now + Duration::from_secs(30);
        let claimed = store.claim(key(&queue, &id), first, lock_end, now).await;
        assert_eq!(claimed.unwrap(), ClaimOutcome::Claimed);
        // The same delivery again (a receive retried) keeps its claim.
        let again = store.claim(key(&queue, &id), first, lock_end, now).await;
        assert_eq!(again.unwrap(), ClaimOutcome::Claimed);
        let other = store.claim(key(&queue, &id), second, lock_end, now).await;
        assert_eq!(
            other.unwrap(),
            ClaimOutcome::HeldElsewhere { until: lock_end }
        );
        // Renewed: still held past the old end.
        let renewed_end = lock_end + Duration::from_secs(30);
        assert!(
            store
                .extend(key(&queue, &id), first, renewed_end, now)
                .await
                .unwrap()
        );
        assert!(
            !store
                .extend(key(&queue, &id), second, renewed_end, now)
                .await
                .unwrap()
        );
        let later = lock_end + Duration::from_secs(1);
        let other = store.claim(key(&queue, &id), second, later, later).await;
        assert_eq!(
            other.unwrap(),
            ClaimOutcome::HeldElsewhere { until: renewed_end }
        );
        // Past its end, the claim is free for the redelivery.
        let after = renewed_end + Duration::from_secs(1);
        let other = store
            .claim(
                key(&queue, &id),
                second,
                after + Duration::from_secs(30),
                after,
            )
            .await;
        assert_eq!(other.unwrap(), ClaimOutcome::Claimed);
        // The first delivery's release does not free the second's claim.
        store.release(key(&queue, &id), first).await.unwrap();
        let third = store
            .claim(key(&queue, &id), ReplayClaim::new(3), after, after)
            .await;
        assert!(matches!(third.unwrap(), ClaimOutcome::HeldElsewhere { .. }));
        store.release(key(&queue, &id), second).await.unwrap();
        let third = store
            .claim(key(&queue, &id), ReplayClaim::new(3), after, after)
            .await;
        assert_eq!(third.unwrap(), ClaimOutcome::Claimed);
    }

    #[tokio::test]
    async fn a_completed_id_refuses_every_claim() {
        let store = InProcessReplayStore::default();
        let queue = QueueName::new("q").unwrap();
        let id = [9_u8; 32];
        let now = SystemTime::now();
        let until = now + Duration::from_secs(30);
        store
            .claim(key(&queue, &id), ReplayClaim::new(1), until, now)
            .await
            .unwrap();
        store
            .complete(key(&queue, &id), Duration::from_secs(600), now)
            .await
            .unwrap();
        for claim in [1, 2] {
            let outcome = store
                .claim(key(&queue, &id), ReplayClaim::new(claim), until, now)
                .await;
            assert_eq!(outcome.unwrap(), ClaimOutcome::Completed);
        }
        assert!(
            !store
                .extend(key(&queue, &id), ReplayClaim::new(1), until, now)
                .await
                .unwrap()
        );
    }
}
