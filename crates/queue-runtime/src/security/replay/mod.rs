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

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use parking_lot::Mutex;
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

/// The replay guard of one process: a bounded table of claims and completed ids, behind one
/// short lock.
///
/// Each entry lives as long as it means something (a claim until a little past its end, a
/// completion for its queue's horizon, both in real time). When the table is full, the entry
/// written longest ago goes first: the oldest completion is the one least likely to see a copy
/// still judged fresh. Consumers in other processes do not see it: use a shared store when
/// several consumers compete on a queue.
pub struct InProcessReplayStore {
    capacity: usize,
    table: Mutex<Table>,
}

impl fmt::Debug for InProcessReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessReplayStore")
            .field("capacity", &self.capacity)
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
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        InProcessReplayStore {
            capacity,
            table: Mutex::new(Table::default()),
        }
    }

    /// Runs `f` on the live entry of `id` (an expired one counts as none), and writes, keeps or
    /// removes it as `f` says.
    fn update<T>(&self, id: &[u8; 32], f: impl FnOnce(Option<&Entry>) -> (Op, T)) -> T {
        let now = Instant::now();
        let mut table = self.table.lock();
        let live = table
            .entries
            .get(&EnvelopeId(*id))
            .filter(|slot| slot.expires_at > now)
            .map(|slot| &slot.entry);
        let (op, result) = f(live);
        match op {
            Op::Keep => {}
            Op::Write(entry) => table.write(*id, entry, now, self.capacity),
            Op::Remove => {
                table.entries.remove(&EnvelopeId(*id));
            }
        }
        result
    }
}

/// What to do with an entry after looking at it.
enum Op {
    Keep,
    Write(Entry),
    Remove,
}

/// An envelope id as a table key. Ids are 32 random bytes drawn by whoever sealed the message,
/// and only ids of authenticated envelopes are ever stored, so their first eight bytes are
/// already a good hash: no SipHash over all 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EnvelopeId([u8; 32]);

impl Hash for EnvelopeId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut first = [0_u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

/// Passes the `u64` it is given through (see [`EnvelopeId`]).
#[derive(Debug, Default, Clone, Copy)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Debug)]
struct Slot {
    entry: Entry,
    /// When the entry stops meaning anything (real time).
    expires_at: Instant,
    /// Which write of this id the slot holds, to tell current entries of `order` from stale ones.
    write: u64,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<EnvelopeId, Slot, BuildHasherDefault<PassThrough>>,
    /// `(id, write)` in the order they were written; entries rewritten or removed since are
    /// stale and skipped.
    order: VecDeque<(EnvelopeId, u64)>,
    writes: u64,
}

impl Table {
    fn write(&mut self, id: [u8; 32], entry: Entry, now: Instant, capacity: usize) {
        self.writes += 1;
        let write = self.writes;
        let expires_at = now.checked_add(entry.keep_for).unwrap_or(now + FAR);
        self.entries.insert(
            EnvelopeId(id),
            Slot {
                entry,
                expires_at,
                write,
            },
        );
        self.order.push_back((EnvelopeId(id), write));
        // Drop what is stale, expired or over capacity from the front, a few at a time.
        for _ in 0..4 {
            let Some(&(front, front_write)) = self.order.front() else {
                break;
            };
            match self.entries.get(&front) {
                Some(slot) if slot.write == front_write => {
                    if slot.expires_at > now && self.entries.len() <= capacity {
                        break;
                    }
                    self.entries.remove(&front);
                }
                _ => {}
            }
            self.order.pop_front();
        }
        while self.entries.len() > capacity {
            let Some((front, front_write)) = self.order.pop_front() else {
                break;
            };
            if self
                .entries
                .get(&front)
                .is_some_and(|slot| slot.write == front_write)
            {
                self.entries.remove(&front);
            }
        }
        // Stale entries behind a long-lived one: compact once they outnumber the live ones.
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order
                .retain(|(id, write)| entries.get(id).is_some_and(|slot| slot.write == *write));
        }
    }
}

/// Where "never" is for an entry kept longer than an `Instant` can count.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

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
    /// How long the store keeps the entry (real time): a claim a little past its end, a
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

#[async_trait]
impl ReplayStore for InProcessReplayStore {
    async fn claim(
        &self,
        key: ReplayKey<'_>,
        claim: ReplayClaim,
        until: SystemTime,
        now: SystemTime,
    ) -> Result<ClaimOutcome, QueueError> {
        Ok(self.update(key.envelope_id, |existing| match existing {
            Some(Entry {
                state: State::Completed,
                ..
            }) => (Op::Keep, ClaimOutcome::Completed),
            Some(Entry {
                state:
                    State::Held {
                        claim: other,
                        until: held_until,
                    },
                ..
            }) if *other != claim && *held_until > now => {
                (Op::Keep, ClaimOutcome::HeldElsewhere { until: *held_until })
            }
            _ => (
                Op::Write(Entry::held(claim, until, now)),
                ClaimOutcome::Claimed,
            ),
        }))
    }

    async fn extend(
        &self,
        key: ReplayKey<'_>,
        claim: ReplayClaim,
        until: SystemTime,
        now: SystemTime,
    ) -> Result<bool, QueueError> {
        Ok(self.update(key.envelope_id, |existing| match existing {
            Some(Entry {
                state: State::Held { claim: holder, .. },
                ..
            }) if *holder == claim => (Op::Write(Entry::held(claim, until, now)), true),
            _ => (Op::Keep, false),
        }))
    }

    async fn release(&self, key: ReplayKey<'_>, claim: ReplayClaim) -> Result<(), QueueError> {
        self.update(key.envelope_id, |existing| match existing {
            Some(Entry {
                state: State::Held { claim: holder, .. },
                ..
            }) if *holder == claim => (Op::Remove, ()),
            _ => (Op::Keep, ()),
        });
        Ok(())
    }

    async fn complete(
        &self,
        key: ReplayKey<'_>,
        horizon: Duration,
        _now: SystemTime,
    ) -> Result<(), QueueError> {
        let entry = Entry {
            state: State::Completed,
            keep_for: horizon,
        };
        self.update(key.envelope_id, |_| (Op::Write(entry), ()));
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
    #[tokio::test]
    async fn a_full_store_forgets_the_entry_written_longest_ago() {
        let store = InProcessReplayStore::with_capacity(3);
        let queue = QueueName::new("q").unwrap();
        let now = SystemTime::now();
        let horizon = Duration::from_secs(600);
        let ids: Vec<[u8; 32]> = (0..4_u8).map(|i| [i; 32]).collect();
        for id in &ids[..3] {
            store.complete(key(&queue, id), horizon, now).await.unwrap();
        }
        // Rewriting the oldest makes it the newest.
        store
            .complete(key(&queue, &ids[0]), horizon, now)
            .await
            .unwrap();
        store
            .complete(key(&queue, &ids[3]), horizon, now)
            .await
            .unwrap();
        let until = now + Duration::from_secs(30);
        let fresh = ReplayClaim::new(9);
        let forgotten = store.claim(key(&queue, &ids[1]), fresh, until, now).await;
        assert_eq!(forgotten.unwrap(), ClaimOutcome::Claimed);
        for id in [&ids[0], &ids[3]] {
            let outcome = store.claim(key(&queue, id), fresh, until, now).await;
            assert_eq!(outcome.unwrap(), ClaimOutcome::Completed);
        }
        assert!(store.table.lock().entries.len() <= 3);
    }

    #[tokio::test]
    async fn entries_end_after_they_are_kept_for_and_stale_order_entries_do_not_pile_up() {
        let store = InProcessReplayStore::with_capacity(1_000);
        let queue = QueueName::new("q").unwrap();
        let now = SystemTime::now();
        let id = [1_u8; 32];
        store
            .complete(key(&queue, &id), Duration::ZERO, now)
            .await
            .unwrap();
        let outcome = store
            .claim(key(&queue, &id), ReplayClaim::new(1), now, now)
            .await;
        assert_eq!(
            outcome.unwrap(),
            ClaimOutcome::Claimed,
            "kept for zero: gone"
        );
        // One long-lived entry in front, many claims released behind it.
        for i in 0..10_000_u32 {
            let mut id = [2_u8; 32];
            id[..4].copy_from_slice(&i.to_le_bytes());
            let claim = ReplayClaim::new(u128::from(i));
            let until = now + Duration::from_secs(30);
            store
                .claim(key(&queue, &id), claim, until, now)
                .await
                .unwrap();
            store.release(key(&queue, &id), claim).await.unwrap();
        }
        let table = store.table.lock();
        assert!(table.entries.len() <= 1, "{}", table.entries.len());
        assert!(table.order.len() <= 2 * table.entries.len() + 64 + 4);
    }
}
