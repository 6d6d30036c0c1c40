//! Coalescing calls from many tasks into batch requests (the `batching` feature).
//!
//! A [`Coalescer`] collects entries per key (a queue and an operation, say), sends them as one
//! batch when the batch is full (entries or bytes) or when its linger has passed since its
//! first entry, and hands each caller its own entry's result. A failed batch call fails every
//! entry of that call, marked as such ([`Failure::Call`]); a batch call that reports a failure
//! for some entries fails exactly those ([`Failure::Entry`]).
//!
//! Batches run in spawned tasks, so a caller that stops waiting does not cancel the entries of
//! the others; and no caller learns of success before the batch call returned it.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::{ErrorKind, QueueError, Result};

/// The most entries, bytes and requests in flight of one key's batches, and how long a batch
/// waits for more entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// The most entries one batch call carries (at least 1).
    pub max_entries: usize,
    /// The most bytes (as [`BatchEntry::bytes`] counts them) one batch call carries; an entry
    /// larger than this goes alone.
    pub max_bytes: usize,
    /// How long a batch waits, from its first entry, for more before it is sent.
    pub linger: Duration,
    /// The most batch calls of one key at once. `1` keeps batches of a key in order: the next
    /// is sent only once the previous one returned (and meanwhile fills up).
    pub max_in_flight: usize,
}

/// What the coalescer needs to know of an entry.
pub trait BatchEntry: Send + 'static {
    /// Its size, counted against [`BatchLimits::max_bytes`].
    fn bytes(&self) -> usize {
        0
    }

    /// Whether it must not share a batch with `other` (two settles of one receipt, say).
    fn conflicts_with(&self, other: &Self) -> bool {
        let _ = other;
        false
    }
}

/// Why an entry failed.
#[derive(Debug)]
pub enum Failure {
    /// The batch call reported a failure for this entry alone.
    Entry(QueueError),
    /// The whole batch call failed (or never ran): nothing of it was done.
    Call(QueueError),
}

impl Failure {
    /// The error, whichever way it failed.
    pub fn into_error(self) -> QueueError {
        match self {
            Failure::Entry(error) | Failure::Call(error) => error,
        }
    }
}

/// One batch call: the entries, in the order they came, and one result each back (in the same
/// order), or an error for the whole call.
pub type Flush<K, T, R> = Arc<
    dyn Fn(K, Vec<T>) -> Pin<Box<dyn Future<Output = Result<Vec<Result<R>>>> + Send>> + Send + Sync,
>;

type Reply<R> = oneshot::Sender<std::result::Result<R, Failure>>;

struct Batch<T, R> {
    entries: Vec<(T, Reply<R>)>,
    bytes: usize,
}

impl<T, R> Batch<T, R> {
    fn new() -> Self {
        Batch {
            entries: Vec::new(),
            bytes: 0,
        }
    }
}

/// One key's batches: the one filling up, the full ones waiting for a place in flight, and how
/// many are in flight.
struct Lane<T, R> {
    open: Batch<T, R>,
    /// Counts the open batches, so a linger timer knows whether its batch is still open.
    generation: u64,
    /// The open batch's linger has passed (it is sent as soon as there is room in flight).
    due: bool,
    closed: VecDeque<Batch<T, R>>,
    in_flight: usize,
}

impl<T, R> Lane<T, R> {
    fn new() -> Self {
        Lane {
            open: Batch::new(),
            generation: 0,
            due: false,
            closed: VecDeque::new(),
            in_flight: 0,
        }
    }

    fn close_open(&mut self) {
        let open = std::mem::replace(&mut self.open, Batch::new());
        self.generation += 1;
        self.due = false;
        if !open.entries.is_empty() {
            self.closed.push_back(open);
        }
    }
}

/// Coalesces entries per key into batch calls; see the [module](self) documentation.
pub struct Coalescer<K, T, R> {
    inner: Arc<Inner<K, T, R>>,
}

struct Inner<K, T, R> {
    limits: BatchLimits,
    flush: Flush<K, T, R>,
    lanes: Mutex<HashMap<K, Lane<T, R>>>,
}

impl<K, T, R> Clone for Coalescer<K, T, R> {
    fn clone(&self) -> Self {
        Coalescer {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, T, R> fmt::Debug for Coalescer<K, T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coalescer")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl<K, T, R> Coalescer<K, T, R>
where
    K: Clone + Eq + Hash + Send + 'static,
    T: BatchEntry,
    R: Send + 'static,
{
    /// A coalescer sending its batches with `flush`.
    pub fn new(limits: BatchLimits, flush: Flush<K, T, R>) -> Self {
        let limits = BatchLimits {
            max_entries: limits.max_entries.max(1),
            max_in_flight: limits.max_in_flight.max(1),
            ..limits
        };
        Coalescer {
            inner: Arc::new(Inner {
                limits,
                flush,
                lanes: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The limits it works with.
    pub fn limits(&self) -> BatchLimits {
        self.inner.limits
    }

    /// Adds `entry` to the open batch of `key` and waits for its result. Must run inside a
    /// tokio runtime (the batch calls and linger timers are spawned tasks).
    pub async fn submit(&self, key: K, entry: T) -> std::result::Result<R, Failure> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Failure::Call(QueueError::new(
                ErrorKind::Config,
                "batching needs a tokio runtime",
            ))
        })?;
        let (reply, result) = oneshot::channel();
        self.inner.add(&runtime, key, entry, reply);
        result.await.unwrap_or_else(|_| {
            Err(Failure::Call(QueueError::new(
                ErrorKind::Provider,
                "the batch carrying this entry ended without a result",
            )))
        })
    }
}

impl<K, T, R> Inner<K, T, R>
where
    K: Clone + Eq + Hash + Send + 'static,
    T: BatchEntry,
    R: Send + 'static,
{
    fn add(self: &Arc<Self>, runtime: &tokio::runtime::Handle, key: K, entry: T, reply: Reply<R>) {
        let limits = self.limits;
        let bytes = entry.bytes();
        let mut lanes = self.lanes.lock();
        let lane = lanes.entry(key.clone()).or_insert_with(Lane::new);
        let fits = lane.open.entries.len() < limits.max_entries
            && (lane.open.entries.is_empty()
                || lane.open.bytes.saturating_add(bytes) <= limits.max_bytes)
            && !lane
                .open
                .entries
                .iter()
                .any(|(other, _)| entry.conflicts_with(other));
        if !fits {
            lane.close_open();
        }
        let first = lane.open.entries.is_empty();
        lane.open.entries.push((entry, reply));
        lane.open.bytes = lane.open.bytes.saturating_add(bytes);
        if lane.open.entries.len() >= limits.max_entries || limits.linger.is_zero() {
            lane.close_open();
        } else if first {
            self.start_linger(runtime, key.clone(), lane.generation);
        }
        let ready = self.take_ready(lane);
        drop(lanes);
        for batch in ready {
            self.send(runtime, key.clone(), batch);
        }
    }

    fn linger_passed(self: &Arc<Self>, runtime: &tokio::runtime::Handle, key: K, generation: u64) {
        let mut lanes = self.lanes.lock();
        let Some(lane) = lanes.get_mut(&key) else {
            return;
        };
        if lane.generation != generation {
            return;
        }
        lane.due = true;
        let ready = self.take_ready(lane);
        drop(lanes);
        for batch in ready {
            self.send(runtime, key.clone(), batch);
        }
    }

    /// The batches to send now: closed ones first (they are older), then the open one if its
    /// linger passed, while there is room in flight.
    fn take_ready(&self, lane: &mut Lane<T, R>) -> Vec<Batch<T, R>> {
        let mut ready = Vec::new();
        while lane.in_flight < self.limits.max_in_flight {
            if let Some(batch) = lane.closed.pop_front() {
                lane.in_flight += 1;
                ready.push(batch);
            } else if lane.due && !lane.open.entries.is_empty() {
                lane.close_open();
            } else {
                break;
            }
        }
        ready
    }

    fn send(self: &Arc<Self>, runtime: &tokio::runtime::Handle, key: K, batch: Batch<T, R>) {
        let inner = Arc::clone(self);
        let task_runtime = runtime.clone();
        runtime.spawn(async move {
            let (entries, replies): (Vec<T>, Vec<Reply<R>>) = batch.entries.into_iter().unzip();
            let count = entries.len();
            let outcome = (inner.flush)(key.clone(), entries).await;
            deliver(outcome, replies, count);
            inner.landed(&task_runtime, key);
        });
    }

    /// A batch call of `key` returned: room for the next one.
    fn landed(self: &Arc<Self>, runtime: &tokio::runtime::Handle, key: K) {
        let mut lanes = self.lanes.lock();
        let Some(lane) = lanes.get_mut(&key) else {
            return;
        };
        let was_full = lane.in_flight >= self.limits.max_in_flight;
        lane.in_flight = lane.in_flight.saturating_sub(1);
        let mut restart_linger = None;
        if was_full && lane.due && lane.closed.is_empty() {
            // The open batch waited for this call only: the callers this call just answered are
            // about to send again, so give them one more linger to join it instead of sending it
            // half full.
            lane.due = false;
            restart_linger = Some(lane.generation);
        }
        let ready = self.take_ready(lane);
        if lane.in_flight == 0 && lane.open.entries.is_empty() && lane.closed.is_empty() {
            // Nothing pending: forget the key (a linger timer of an old generation finds
            // nothing and does nothing).
            lanes.remove(&key);
        }
        drop(lanes);
        if let Some(generation) = restart_linger {
            self.start_linger(runtime, key.clone(), generation);
        }
        for batch in ready {
            self.send(runtime, key.clone(), batch);
        }
    }

    fn start_linger(self: &Arc<Self>, runtime: &tokio::runtime::Handle, key: K, generation: u64) {
        let inner = Arc::clone(self);
        let timer_runtime = runtime.clone();
        let linger = self.limits.linger;
        runtime.spawn(async move {
            tokio::time::sleep(linger).await;
            inner.linger_passed(&timer_runtime, key, generation);
        });
    }
}

/// Hands each caller its result. A reply whose caller stopped waiting is dropped.
fn deliver<R>(outcome: Result<Vec<Result<R>>>, replies: Vec<Reply<R>>, count: usize) {
    match outcome {
        Ok(results) if results.len() == count => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result.map_err(Failure::Entry));
            }
        }
        Ok(results) => {
            let error = QueueError::new(
                ErrorKind::Provider,
                format!(
                    "a batch call of {count} entries returned {} results",
                    results.len()
                ),
            );
            fail_all(error, replies);
        }
        Err(error) => fail_all(error, replies),
    }
}

/// Every entry fails with the call's error: its kind, message and retry-after, the call's error
/// (shared) as the source.
fn fail_all<R>(error: QueueError, replies: Vec<Reply<R>>) {
    let whole = Arc::new(error);
    for reply in replies {
        let _ = reply.send(Err(Failure::Call(copy_of(&whole))));
    }
}

/// A copy of a batch call's error for one of its entries: its kind, message, operation and
/// retry-after, with the call's error itself (shared) as the source.
pub fn copy_of(whole: &Arc<QueueError>) -> QueueError {
    let mut entry =
        QueueError::new(whole.kind(), whole.message().to_owned()).with_source(Arc::clone(whole));
    if let Some(after) = whole.retry_after() {
        entry = entry.with_retry_after(after);
    }
    if let Some(operation) = whole.operation() {
        entry = entry.with_operation(operation);
    }
    entry
}

/// The results of entries submitted together by one caller (a `complete_batch`), in order: an
/// outer error when every entry failed with its batch call (then nothing was done), the
/// per-entry results otherwise.
pub fn gather<R>(results: Vec<std::result::Result<R, Failure>>) -> Result<Vec<Result<R>>> {
    let all_calls_failed =
        !results.is_empty() && results.iter().all(|r| matches!(r, Err(Failure::Call(_))));
    if all_calls_failed {
        if let Some(Err(failure)) = results.into_iter().next() {
            return Err(failure.into_error());
        }
        return Ok(Vec::new());
    }
    Ok(results
        .into_iter()
        .map(|result| result.map_err(Failure::into_error))
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Debug)]
    struct Item {
        id: u32,
        bytes: usize,
    }

    impl BatchEntry for Item {
        fn bytes(&self) -> usize {
            self.bytes
        }
        fn conflicts_with(&self, other: &Self) -> bool {
            self.id == other.id
        }
    }

    /// The ids of each batch sent, in the order sent.
    type Sent = Arc<Mutex<Vec<Vec<u32>>>>;

    /// Records every batch (the ids in it); fails entries with odd ids over 100, and whole
    /// batches containing id 999.
    fn recording(limits: BatchLimits, delay: Duration) -> (Coalescer<u8, Item, u32>, Sent) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&batches);
        let flush: Flush<u8, Item, u32> = Arc::new(move |_key, items: Vec<Item>| {
            let seen = Arc::clone(&seen);
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                seen.lock().push(items.iter().map(|item| item.id).collect());
                if items.iter().any(|item| item.id == 999) {
                    return Err(QueueError::new(ErrorKind::Connection, "down"));
                }
                Ok(items
                    .iter()
                    .map(|item| {
                        if item.id > 100 && item.id % 2 == 1 {
                            Err(QueueError::new(ErrorKind::LockLost, "gone"))
                        } else {
                            Ok(item.id * 10)
                        }
                    })
                    .collect())
            })
        });
        (Coalescer::new(limits, flush), batches)
    }

    fn limits(linger_ms: u64, max_in_flight: usize) -> BatchLimits {
        BatchLimits {
            max_entries: 10,
            max_bytes: 1000,
            linger: Duration::from_millis(linger_ms),
            max_in_flight,
        }
    }

    async fn submit_all(
        coalescer: &Coalescer<u8, Item, u32>,
        ids: impl IntoIterator<Item = (u32, usize)>,
    ) -> Vec<std::result::Result<u32, Failure>> {
        let tasks: Vec<_> = ids
            .into_iter()
            .map(|(id, bytes)| {
                let coalescer = coalescer.clone();
                tokio::spawn(async move { coalescer.submit(0, Item { id, bytes }).await })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        results
    }

    #[tokio::test(start_paused = true)]
    async fn full_batches_go_at_once_and_each_caller_gets_its_own_result() {
        let (coalescer, batches) = recording(limits(60_000, usize::MAX), Duration::ZERO);
        let results = submit_all(&coalescer, (0..20).map(|id| (id, 1))).await;
        let values: Vec<u32> = results.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(values, (0..20).map(|id| id * 10).collect::<Vec<_>>());
        let batches = batches.lock();
        assert_eq!(batches.len(), 2, "{batches:?}");
        assert!(batches.iter().all(|batch| batch.len() == 10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_batch_goes_after_its_linger() {
        let (coalescer, batches) = recording(limits(5, usize::MAX), Duration::ZERO);
        let started = tokio::time::Instant::now();
        let results = submit_all(&coalescer, (0..3).map(|id| (id, 1))).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(started.elapsed(), Duration::from_millis(5));
        assert_eq!(*batches.lock(), vec![vec![0, 1, 2]]);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_linger_sends_each_entry_alone() {
        let (coalescer, batches) = recording(limits(0, usize::MAX), Duration::ZERO);
        submit_all(&coalescer, (0..3).map(|id| (id, 1))).await;
        assert_eq!(batches.lock().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_and_conflicts_close_a_batch() {
        let (coalescer, batches) = recording(limits(5, usize::MAX), Duration::ZERO);
        submit_all(&coalescer, [(1, 600), (2, 600), (3, 1), (3, 1)]).await;
        let mut sizes: Vec<usize> = batches.lock().iter().map(Vec::len).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, [1, 1, 2], "{:?}", batches.lock());
    }

    #[tokio::test(start_paused = true)]
    async fn partial_failures_fail_exactly_their_entries_and_call_failures_fail_all() {
        let (coalescer, _) = recording(limits(5, usize::MAX), Duration::ZERO);
        let results = submit_all(&coalescer, [(101, 1), (102, 1), (103, 1)]).await;
        assert!(matches!(&results[0], Err(Failure::Entry(e)) if e.kind() == ErrorKind::LockLost));
        assert_eq!(*results[1].as_ref().unwrap(), 1020);
        assert!(matches!(&results[2], Err(Failure::Entry(_))));
        let results = submit_all(&coalescer, [(1, 1), (999, 1)]).await;
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(Failure::Call(e)) if e.kind() == ErrorKind::Connection))
        );
        assert!(gather(results).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn one_in_flight_keeps_batches_in_order_and_fills_the_next_meanwhile() {
        let (coalescer, batches) = recording(limits(1, 1), Duration::from_millis(50));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for id in 0..25 {
            let coalescer = coalescer.clone();
            let calls = Arc::clone(&calls);
            tasks.push(tokio::spawn(async move {
                let result = coalescer.submit(0, Item { id, bytes: 1 }).await;
                calls.fetch_add(1, Ordering::SeqCst);
                result
            }));
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let batches = batches.lock();
        let flat: Vec<u32> = batches.iter().flatten().copied().collect();
        assert_eq!(flat, (0..25).collect::<Vec<_>>(), "order kept: {batches:?}");
        assert!(
            batches.len() < 25,
            "entries waited and were batched: {batches:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 25);
    }
}
