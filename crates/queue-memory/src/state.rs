//! The state of one queue and every transition on it, synchronous and clock-free: each call
//! takes `now`, so the rules are tested without a runtime and the async layer only locks, waits
//! and wraps.
//!
//! Complexity: send, receive, settle and renew are O(1) amortised (O(log n) only for the
//! redelivery set, which holds messages that came back, and for scheduled messages). Lock expiry
//! is found through queues kept in deadline order (a lane's lock duration is constant, so deadlines
//! are pushed in order; renewals push a new entry and the old one is skipped when reached).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use queue_core::{
    DeadLetterReason, DeliveryInfo, ErrorKind, Message, PeekedMessage, QueueError, SessionId,
    SubQueue,
};
use tokio::time::Instant;

use crate::QueueOptions;

/// Maps the broker's monotonic clock to wall-clock time, from a base taken at creation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base_instant: Instant,
    base_system: SystemTime,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            base_instant: Instant::now(),
            base_system: SystemTime::now(),
        }
    }

    pub(crate) fn system(&self, at: Instant) -> SystemTime {
        self.base_system + at.saturating_duration_since(self.base_instant)
    }

    /// The instant of a wall-clock time; times before the base map to the base.
    pub(crate) fn instant(&self, at: SystemTime) -> Instant {
        match at.duration_since(self.base_system) {
            Ok(since) => later(self.base_instant, since),
            Err(_) => self.base_instant,
        }
    }
}

/// `at + duration`, saturating far in the future instead of overflowing.
pub(crate) fn later(at: Instant, duration: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);
    at.checked_add(duration.min(FAR))
        .unwrap_or_else(|| at + Duration::from_secs(24 * 60 * 60))
}

/// Hashes lock tokens: the broker's own sequential counters, never chosen by a client (a forged
/// token is only ever looked up, and misses), so SipHash's resistance to chosen keys buys
/// nothing here, while a multiply-fold spreads consecutive tokens over the table in a few
/// instructions.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TokenHasher(u64);

impl Hasher for TokenHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, token: u64) {
        self.0 = token;
    }

    fn finish(&self) -> u64 {
        let product = u128::from(self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (product as u64) ^ ((product >> 64) as u64)
    }
}

/// Entries keyed by lock token.
type ByToken<V> = HashMap<u64, V, BuildHasherDefault<TokenHasher>>;

/// A message held by the broker.
#[derive(Debug)]
struct Stored {
    message: Message,
    sequence_number: u64,
    enqueued_at: SystemTime,
    expires_at: Option<Instant>,
    /// Deliveries so far; raised when the message is handed out.
    deliveries: u32,
    dead_letter: Option<DeadLetterReason>,
}

impl Stored {
    fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    fn delivery_info(&self, clock: &Clock) -> DeliveryInfo {
        DeliveryInfo {
            delivery_count: self.deliveries,
            enqueued_at: self.enqueued_at,
            sequence_number: Some(self.sequence_number),
            expires_at: self.expires_at.map(|at| clock.system(at)),
            dead_letter: self.dead_letter.clone(),
            seal: None,
        }
    }

    fn peeked(&self, clock: &Clock) -> PeekedMessage {
        PeekedMessage {
            message: self.message.clone(),
            delivery: self.delivery_info(clock),
        }
    }
}

/// A message handed to a receiver: what the async layer turns into a `ReceivedMessage`.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) message: Message,
    pub(crate) info: DeliveryInfo,
    pub(crate) locked_until: Instant,
    pub(crate) token: u64,
}

/// Which lane of a queue a lock token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LaneKind {
    Main,
    DeadLetter,
}

impl From<SubQueue> for LaneKind {
    fn from(sub_queue: SubQueue) -> Self {
        match sub_queue {
            SubQueue::Main => LaneKind::Main,
            SubQueue::DeadLetter => LaneKind::DeadLetter,
        }
    }
}

#[derive(Debug)]
struct Locked {
    stored: Box<Stored>,
    locked_until: Instant,
}

/// Messages of a queue without sessions (or of a dead-letter queue), received one by one.
#[derive(Debug, Default)]
struct Lane {
    /// New messages, in arrival order.
    ready: VecDeque<Box<Stored>>,
    /// Messages that came back (abandoned, lock expired): first in line, in sequence order.
    returned: BTreeMap<u64, Box<Stored>>,
    in_flight: ByToken<Locked>,
    /// `(deadline, token)` in deadline order; entries of settled or renewed locks are stale.
    lock_order: VecDeque<(Instant, u64)>,
}

impl Lane {
    fn pop_next(&mut self) -> Option<Box<Stored>> {
        match self.returned.pop_first() {
            Some((_, stored)) => Some(stored),
            None => self.ready.pop_front(),
        }
    }

    /// The next lock that expired, removed from the lane; stale entries are dropped on the way.
    fn pop_expired_lock(&mut self, now: Instant) -> Option<Box<Stored>> {
        while let Some(&(deadline, token)) = self.lock_order.front() {
            match self.in_flight.get(&token) {
                Some(locked) if locked.locked_until == deadline => {
                    if deadline > now {
                        return None;
                    }
                    self.lock_order.pop_front();
                    return self.in_flight.remove(&token).map(|locked| locked.stored);
                }
                _ => {
                    self.lock_order.pop_front();
                }
            }
        }
        None
    }

    fn len(&self) -> usize {
        self.ready.len() + self.returned.len()
    }
}

/// The messages, lock and state of one session.
#[derive(Debug, Default)]
struct Session {
    ready: VecDeque<Box<Stored>>,
    returned: BTreeMap<u64, Box<Stored>>,
    /// Set by an abandon with a delay: the session's next message waits until then, and so do
    /// the ones behind it, which keeps the session in order.
    blocked_until: Option<Instant>,
    in_flight: ByToken<Box<Stored>>,
    state: Option<Bytes>,
    /// `(lock id, locked until)` of the receiver holding the session.
    holder: Option<(u64, Instant)>,
    /// Whether the session is in the queue's list of sessions to hand out.
    listed: bool,
}

impl Session {
    fn has_messages(&self) -> bool {
        !self.ready.is_empty() || !self.returned.is_empty()
    }

    fn is_blocked(&self, now: Instant) -> bool {
        self.blocked_until.is_some_and(|until| until > now)
    }

    fn is_deliverable(&self, now: Instant) -> bool {
        self.has_messages() && !self.is_blocked(now)
    }

    fn is_held(&self, now: Instant) -> bool {
        self.holder.is_some_and(|(_, until)| until > now)
    }

    fn is_idle(&self) -> bool {
        !self.has_messages()
            && self.in_flight.is_empty()
            && self.state.is_none()
            && self.holder.is_none()
    }

    fn check_lock(&self, lock: u64, now: Instant) -> Result<Instant, QueueError> {
        match self.holder {
            Some((held, until)) if held == lock && until > now => Ok(until),
            _ => Err(session_lock_lost()),
        }
    }
}

/// Where a pending (scheduled or delayed) message goes when its time comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A scheduled message arriving: to the end of its queue or session; can be cancelled.
    Arrival,
    /// An abandoned message after its delay: first in line again.
    Return(LaneKind),
}

#[derive(Debug)]
struct Pending {
    stored: Box<Stored>,
    target: Target,
}

/// Counts of a queue's messages by where they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct QueueStats {
    /// Messages waiting to be received (in sessions too).
    pub active: usize,
    /// Messages scheduled for later, or abandoned with a delay that has not passed.
    pub scheduled: usize,
    /// Messages received and not yet settled.
    pub in_flight: usize,
    /// Messages in the dead-letter queue (locked ones included).
    pub dead_letter: usize,
    /// When the oldest message of the queue (not its dead-letter queue) was enqueued.
    pub oldest_enqueued_at: Option<SystemTime>,
}

/// Everything about one queue.
#[derive(Debug)]
pub(crate) struct QueueState {
    options: QueueOptions,
    clock: Clock,
    max_message_bytes: usize,
    main: Lane,
    dead: Lane,
    sessions: HashMap<SessionId, Session>,
    /// Sessions that may have messages and no holder, in the order they became so.
    available_sessions: VecDeque<SessionId>,
    /// `(deadline, session, lock id)` in deadline order; stale entries are skipped.
    session_locks: VecDeque<(Instant, SessionId, u64)>,
    pending_order: BinaryHeap<Reverse<(Instant, u64)>>,
    pending: HashMap<u64, Pending>,
    /// Times at which a blocked session becomes deliverable again: wake-ups for waiters.
    unblocks: BinaryHeap<Reverse<Instant>>,
    /// Expiry times of messages with a time to live; reaching one sweeps expired messages.
    expiries: BinaryHeap<Reverse<Instant>>,
    /// Messages counted against the capacity: everything but the dead-letter queue.
    live: usize,
    next_sequence_number: u64,
    next_token: u64,
}

impl QueueState {
    pub(crate) fn new(options: QueueOptions, clock: Clock, max_message_bytes: usize) -> Self {
        QueueState {
            options,
            clock,
            max_message_bytes,
            main: Lane::default(),
            dead: Lane::default(),
            sessions: HashMap::new(),
            available_sessions: VecDeque::new(),
            session_locks: VecDeque::new(),
            pending_order: BinaryHeap::new(),
            pending: HashMap::new(),
            unblocks: BinaryHeap::new(),
            expiries: BinaryHeap::new(),
            live: 0,
            next_sequence_number: 1,
            next_token: 1,
        }
    }

    pub(crate) fn options(&self) -> &QueueOptions {
        &self.options
    }

    fn token(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    // ---- Time passing ------------------------------------------------------------------------

    /// Applies everything that became due by `now`: lock expiries, session lock expiries,
    /// scheduled arrivals, delays, expiry of messages. Returns whether messages or sessions may
    /// have become available (so that waiters should look again).
    pub(crate) fn advance(&mut self, now: Instant) -> bool {
        let mut woke = false;
        while let Some(stored) = self.main.pop_expired_lock(now) {
            self.return_to_lane(LaneKind::Main, stored, now);
            woke = true;
        }
        while let Some(stored) = self.dead.pop_expired_lock(now) {
            self.return_to_lane(LaneKind::DeadLetter, stored, now);
            woke = true;
        }
        while let Some((deadline, session_id, lock)) = self.session_locks.front().cloned() {
            if deadline > now {
                break;
            }
            self.session_locks.pop_front();
            let current = self
                .sessions
                .get(&session_id)
                .and_then(|session| session.holder);
            if current == Some((lock, deadline)) {
                self.release_session(&session_id, now);
                woke = true;
            }
        }
        while let Some(&Reverse((at, sequence_number))) = self.pending_order.peek() {
            if at > now {
                break;
            }
            self.pending_order.pop();
            if let Some(pending) = self.pending.remove(&sequence_number) {
                self.arrive(pending, now);
                woke = true;
            }
        }
        while let Some(&Reverse(at)) = self.unblocks.peek() {
            if at > now {
                break;
            }
            self.unblocks.pop();
            self.list_deliverable_sessions(now);
            woke = true;
        }
        let mut sweep = false;
        while let Some(&Reverse(at)) = self.expiries.peek() {
            if at > now {
                break;
            }
            self.expiries.pop();
            sweep = true;
        }
        if sweep {
            self.sweep_expired(now);
        }
        woke
    }

    /// The next time something becomes due, for waiters to wake at.
    pub(crate) fn next_event(&self) -> Option<Instant> {
        [
            self.main.lock_order.front().map(|&(at, _)| at),
            self.dead.lock_order.front().map(|&(at, _)| at),
            self.session_locks.front().map(|(at, _, _)| *at),
            self.pending_order.peek().map(|Reverse((at, _))| *at),
            self.unblocks.peek().map(|Reverse(at)| *at),
            self.expiries.peek().map(|Reverse(at)| *at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn arrive(&mut self, pending: Pending, now: Instant) {
        let Pending { mut stored, target } = pending;
        match target {
            Target::Arrival => {
                stored.enqueued_at = self.clock.system(now);
                match stored.message.session_id().cloned() {
                    Some(session_id) if self.options.requires_session() => {
                        self.sessions
                            .entry(session_id.clone())
                            .or_default()
                            .ready
                            .push_back(stored);
                        self.list_session(&session_id, now);
                    }
                    _ => self.main.ready.push_back(stored),
                }
            }
            Target::Return(kind) => {
                self.lane(kind)
                    .returned
                    .insert(stored.sequence_number, stored);
            }
        }
    }

    fn sweep_expired(&mut self, now: Instant) {
        let mut expired = Vec::new();
        let mut keep = VecDeque::with_capacity(self.main.ready.len());
        for stored in self.main.ready.drain(..) {
            if stored.is_expired(now) {
                expired.push(stored);
            } else {
                keep.push_back(stored);
            }
        }
        self.main.ready = keep;
        let returned = std::mem::take(&mut self.main.returned);
        for (sequence_number, stored) in returned {
            if stored.is_expired(now) {
                expired.push(stored);
            } else {
                self.main.returned.insert(sequence_number, stored);
            }
        }
        for session in self.sessions.values_mut() {
            for stored in std::mem::take(&mut session.ready) {
                if stored.is_expired(now) {
                    expired.push(stored);
                } else {
                    session.ready.push_back(stored);
                }
            }
            for (sequence_number, stored) in std::mem::take(&mut session.returned) {
                if stored.is_expired(now) {
                    expired.push(stored);
                } else {
                    session.returned.insert(sequence_number, stored);
                }
            }
        }
        for stored in expired {
            self.expire(stored);
        }
        self.recount_live();
    }

    /// Recomputes the capacity count after a sweep that removed messages in bulk.
    fn recount_live(&mut self) {
        let sessions: usize = self
            .sessions
            .values()
            .map(|session| session.ready.len() + session.returned.len() + session.in_flight.len())
            .sum();
        self.live = self.main.len() + self.main.in_flight.len() + self.pending.len() + sessions;
    }

    /// An expired message leaves the queue: dead-lettered when the queue says so, else dropped.
    fn expire(&mut self, stored: Box<Stored>) {
        self.live = self.live.saturating_sub(1);
        if self.options.dead_letter_on_expiration() {
            let reason = DeadLetterReason::new(
                DeadLetterReason::TTL_EXPIRED,
                "the message expired before it was completed",
            );
            self.push_dead_letter(stored, reason);
        }
    }

    fn push_dead_letter(&mut self, mut stored: Box<Stored>, reason: DeadLetterReason) {
        // The same accounting as the brokers this one stands in for: a reason and description
        // fit the room every message keeps for them.
        let measure = |reason: &DeadLetterReason| reason.reason.len() + reason.description.len();
        let bounded = reason.bounded(queue_core::DEAD_LETTER_RESERVE, measure);
        stored.dead_letter = Some(bounded.unwrap_or(reason));
        // Dead-lettered messages do not expire (as on Service Bus).
        stored.expires_at = None;
        self.dead.ready.push_back(stored);
    }

    fn lane(&mut self, kind: LaneKind) -> &mut Lane {
        match kind {
            LaneKind::Main => &mut self.main,
            LaneKind::DeadLetter => &mut self.dead,
        }
    }

    /// A delivery came back unsettled: first in line again, unless it used its last delivery or
    /// expired meanwhile.
    fn return_to_lane(&mut self, kind: LaneKind, stored: Box<Stored>, now: Instant) {
        if kind == LaneKind::Main {
            if let Some(reason) = self.exhausted(&stored) {
                self.live = self.live.saturating_sub(1);
                self.push_dead_letter(stored, reason);
                return;
            }
            if stored.is_expired(now) {
                self.expire(stored);
                return;
            }
        }
        self.lane(kind)
            .returned
            .insert(stored.sequence_number, stored);
    }

    fn exhausted(&self, stored: &Stored) -> Option<DeadLetterReason> {
        let max = self.options.max_delivery_count();
        (stored.deliveries >= max).then(|| {
            DeadLetterReason::new(
                DeadLetterReason::MAX_DELIVERY_COUNT_EXCEEDED,
                format!(
                    "delivered {} times; the queue's maximum delivery count is {max}",
                    stored.deliveries
                ),
            )
        })
    }

    // ---- Sending -----------------------------------------------------------------------------

    /// Accepts a message: ready at once, or pending until its scheduled time.
    pub(crate) fn send(&mut self, message: Message, now: Instant) -> Result<u64, QueueError> {
        let size = message.approximate_size();
        if size > self.max_message_bytes {
            return Err(QueueError::message_too_large(size, self.max_message_bytes));
        }
        let session_id = message.session_id().cloned();
        match (&session_id, self.options.requires_session()) {
            (None, true) => {
                return Err(QueueError::invalid_input(
                    "this queue requires sessions: the message needs a session id",
                ));
            }
            (Some(_), false) => {
                return Err(QueueError::invalid_input(
                    "this queue has no sessions: send the message without a session id, or \
                     create the queue with sessions",
                ));
            }
            _ => {}
        }
        if self.live >= self.options.capacity() {
            return Err(QueueError::new(
                ErrorKind::QueueFull,
                format!(
                    "the queue holds its capacity of {} messages; receive some, or raise it",
                    self.options.capacity()
                ),
            ));
        }
        let time_to_live = match (message.time_to_live(), self.options.default_time_to_live()) {
            (Some(own), Some(default)) => Some(own.min(default)),
            (own, default) => own.or(default),
        };
        let visible_at = message
            .scheduled_enqueue_time()
            .map(|at| self.clock.instant(at))
            .filter(|&at| at > now);
        let expires_at = time_to_live.map(|ttl| later(visible_at.unwrap_or(now), ttl));
        if let Some(at) = expires_at {
            self.expiries.push(Reverse(at));
        }
        let sequence_number = self.next_sequence_number;
        self.next_sequence_number += 1;
        let stored = Box::new(Stored {
            message,
            sequence_number,
            enqueued_at: self.clock.system(now),
            expires_at,
            deliveries: 0,
            dead_letter: None,
        });
        self.live += 1;
        if let Some(at) = visible_at {
            self.pending_order.push(Reverse((at, sequence_number)));
            self.pending.insert(
                sequence_number,
                Pending {
                    stored,
                    target: Target::Arrival,
                },
            );
            return Ok(sequence_number);
        }
        match session_id {
            Some(session_id) => {
                self.sessions
                    .entry(session_id.clone())
                    .or_default()
                    .ready
                    .push_back(stored);
                self.list_session(&session_id, now);
            }
            None => self.main.ready.push_back(stored),
        }
        Ok(sequence_number)
    }

    pub(crate) fn cancel_scheduled(&mut self, sequence_number: u64) -> Result<(), QueueError> {
        match self.pending.get(&sequence_number) {
            Some(pending) if pending.target == Target::Arrival => {
                self.pending.remove(&sequence_number);
                self.live = self.live.saturating_sub(1);
                Ok(())
            }
            _ => Err(QueueError::new(
                ErrorKind::NotFound,
                format!("no scheduled message has sequence number {sequence_number}"),
            )),
        }
    }

    // ---- Receiving and settling (queues without sessions, and dead-letter queues) ----------------

    pub(crate) fn check_plain_receive(&self, kind: LaneKind) -> Result<(), QueueError> {
        if kind == LaneKind::Main && self.options.requires_session() {
            return Err(QueueError::invalid_input(
                "this is a session queue: accept a session to receive its messages",
            ));
        }
        Ok(())
    }

    /// Hands out up to `max` messages under a lock.
    #[cfg(test)]
    pub(crate) fn receive(&mut self, kind: LaneKind, max: usize, now: Instant) -> Vec<Delivery> {
        self.receive_with(kind, max, now, |delivery| delivery)
    }

    /// Hands out up to `max` messages under a lock, each turned by `wrap` into what the caller
    /// returns (so the deliveries are not collected twice).
    pub(crate) fn receive_with<T>(
        &mut self,
        kind: LaneKind,
        max: usize,
        now: Instant,
        mut wrap: impl FnMut(Delivery) -> T,
    ) -> Vec<T> {
        let available = self.lane(kind).len();
        if available == 0 {
            return Vec::new();
        }
        let mut deliveries = Vec::with_capacity(max.min(available));
        let locked_until = later(now, self.options.lock_duration());
        while deliveries.len() < max {
            let Some(mut stored) = self.lane(kind).pop_next() else {
                break;
            };
            if kind == LaneKind::Main && stored.is_expired(now) {
                self.expire(stored);
                continue;
            }
            stored.deliveries += 1;
            let token = self.token();
            deliveries.push(wrap(Delivery {
                message: stored.message.clone(),
                info: stored.delivery_info(&self.clock),
                locked_until,
                token,
            }));
            let lane = self.lane(kind);
            lane.in_flight.insert(
                token,
                Locked {
                    stored,
                    locked_until,
                },
            );
            lane.lock_order.push_back((locked_until, token));
        }
        deliveries
    }

    fn take_locked(&mut self, kind: LaneKind, token: u64) -> Result<Box<Stored>, QueueError> {
        self.lane(kind)
            .in_flight
            .remove(&token)
            .map(|locked| locked.stored)
            .ok_or_else(message_lock_lost)
    }

    pub(crate) fn complete(&mut self, kind: LaneKind, token: u64) -> Result<(), QueueError> {
        self.take_locked(kind, token)?;
        if kind == LaneKind::Main {
            self.live = self.live.saturating_sub(1);
        }
        Ok(())
    }

    pub(crate) fn abandon_locked(
        &mut self,
        kind: LaneKind,
        token: u64,
        delay: Option<Duration>,
        now: Instant,
    ) -> Result<(), QueueError> {
        let stored = self.take_locked(kind, token)?;
        match delay.filter(|delay| !delay.is_zero()) {
            Some(delay) if self.exhausted(&stored).is_none() || kind == LaneKind::DeadLetter => {
                let at = later(now, delay);
                self.pending_order
                    .push(Reverse((at, stored.sequence_number)));
                self.pending.insert(
                    stored.sequence_number,
                    Pending {
                        stored,
                        target: Target::Return(kind),
                    },
                );
            }
            _ => self.return_to_lane(kind, stored, now),
        }
        Ok(())
    }

    pub(crate) fn dead_letter(
        &mut self,
        kind: LaneKind,
        token: u64,
        reason: DeadLetterReason,
    ) -> Result<(), QueueError> {
        if kind == LaneKind::DeadLetter {
            return Err(QueueError::invalid_input(
                "the message is already in the dead-letter queue: complete or abandon it",
            ));
        }
        let stored = self.take_locked(kind, token)?;
        self.live = self.live.saturating_sub(1);
        self.push_dead_letter(stored, reason);
        Ok(())
    }

    pub(crate) fn renew(
        &mut self,
        kind: LaneKind,
        token: u64,
        now: Instant,
    ) -> Result<Instant, QueueError> {
        let until = later(now, self.options.lock_duration());
        let lane = self.lane(kind);
        let locked = lane
            .in_flight
            .get_mut(&token)
            .ok_or_else(message_lock_lost)?;
        locked.locked_until = until;
        lane.lock_order.push_back((until, token));
        Ok(until)
    }

    // ---- Sessions ----------------------------------------------------------------------------

    pub(crate) fn check_sessions(&self) -> Result<(), QueueError> {
        if !self.options.requires_session() {
            return Err(QueueError::invalid_input(
                "this queue has no sessions: receive from it directly",
            ));
        }
        Ok(())
    }

    fn list_session(&mut self, session_id: &SessionId, now: Instant) {
        if let Some(session) = self.sessions.get_mut(session_id)
            && !session.listed
            && !session.is_held(now)
            && session.has_messages()
        {
            session.listed = true;
            self.available_sessions.push_back(session_id.clone());
        }
    }

    fn list_deliverable_sessions(&mut self, now: Instant) {
        let ready: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, session)| {
                !session.listed && !session.is_held(now) && session.is_deliverable(now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for session_id in ready {
            self.list_session(&session_id, now);
        }
    }

    /// Takes a session for a receiver: the next one with deliverable messages, or a named one
    /// once free. `None` when there is none (yet).
    pub(crate) fn accept(
        &mut self,
        named: Option<&SessionId>,
        now: Instant,
    ) -> Option<(SessionId, u64, Instant)> {
        let session_id = match named {
            Some(session_id) => {
                let session = self.sessions.entry(session_id.clone()).or_default();
                if session.is_held(now) {
                    return None;
                }
                session_id.clone()
            }
            None => {
                let mut skipped = Vec::new();
                let mut found = None;
                while let Some(session_id) = self.available_sessions.pop_front() {
                    let Some(session) = self.sessions.get_mut(&session_id) else {
                        continue;
                    };
                    session.listed = false;
                    if session.is_held(now) || !session.has_messages() {
                        continue;
                    }
                    if session.is_blocked(now) {
                        skipped.push(session_id);
                        continue;
                    }
                    found = Some(session_id);
                    break;
                }
                for session_id in skipped {
                    self.list_session(&session_id, now);
                }
                found?
            }
        };
        let lock = self.token();
        let until = later(now, self.options.session_lock_duration());
        if let Some(session) = self.sessions.get_mut(&session_id) {
            session.holder = Some((lock, until));
        }
        self.session_locks
            .push_back((until, session_id.clone(), lock));
        Some((session_id, lock, until))
    }

    /// The session's lock is gone (expired or closed): its unsettled messages come back first in
    /// line, and the session can be accepted again.
    fn release_session(&mut self, session_id: &SessionId, now: Instant) {
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        session.holder = None;
        let unsettled: Vec<Box<Stored>> = session
            .in_flight
            .drain()
            .map(|(_, stored)| stored)
            .collect();
        for stored in unsettled {
            self.return_to_session(session_id, stored, now);
        }
        if self
            .sessions
            .get(session_id)
            .is_some_and(|session| session.is_idle())
        {
            self.sessions.remove(session_id);
            return;
        }
        self.list_session(session_id, now);
    }

    fn return_to_session(&mut self, session_id: &SessionId, stored: Box<Stored>, now: Instant) {
        if let Some(reason) = self.exhausted(&stored) {
            self.live = self.live.saturating_sub(1);
            self.push_dead_letter(stored, reason);
            return;
        }
        if stored.is_expired(now) {
            self.expire(stored);
            return;
        }
        if let Some(session) = self.sessions.get_mut(session_id) {
            session.returned.insert(stored.sequence_number, stored);
        }
    }

    fn held_session(
        &mut self,
        session_id: &SessionId,
        lock: u64,
        now: Instant,
    ) -> Result<(&mut Session, Instant), QueueError> {
        let session = self
            .sessions
            .get_mut(session_id)
            .ok_or_else(session_lock_lost)?;
        let until = session.check_lock(lock, now)?;
        Ok((session, until))
    }

    pub(crate) fn session_receive(
        &mut self,
        session_id: &SessionId,
        lock: u64,
        max: usize,
        now: Instant,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut deliveries = Vec::new();
        let mut expired = Vec::new();
        let first_token = self.next_token;
        let clock = self.clock;
        let (session, locked_until) = self.held_session(session_id, lock, now)?;
        let mut token = first_token;
        while deliveries.len() < max && !session.is_blocked(now) {
            let next = match session.returned.pop_first() {
                Some((_, stored)) => Some(stored),
                None => session.ready.pop_front(),
            };
            let Some(mut stored) = next else {
                break;
            };
            if stored.is_expired(now) {
                expired.push(stored);
                continue;
            }
            stored.deliveries += 1;
            deliveries.push(Delivery {
                message: stored.message.clone(),
                info: stored.delivery_info(&clock),
                locked_until,
                token,
            });
            session.in_flight.insert(token, stored);
            token += 1;
        }
        self.next_token = token;
        for stored in expired {
            self.expire(stored);
        }
        Ok(deliveries)
    }

    pub(crate) fn session_complete(
        &mut self,
        session_id: &SessionId,
        lock: u64,
        token: u64,
        now: Instant,
    ) -> Result<(), QueueError> {
        let (session, _) = self.held_session(session_id, lock, now)?;
        session
            .in_flight
            .remove(&token)
            .ok_or_else(message_lock_lost)?;
        self.live = self.live.saturating_sub(1);
        Ok(())
    }

    pub(crate) fn session_abandon(
        &mut self,
        session_id: &SessionId,
        lock: u64,
        token: u64,
        delay: Option<Duration>,
        now: Instant,
    ) -> Result<(), QueueError> {
        let (session, _) = self.held_session(session_id, lock, now)?;
        let stored = session
            .in_flight
            .remove(&token)
            .ok_or_else(message_lock_lost)?;
        if let Some(delay) = delay.filter(|delay| !delay.is_zero()) {
            let until = later(now, delay);
            session.blocked_until = Some(session.blocked_until.map_or(until, |at| at.max(until)));
            self.unblocks.push(Reverse(until));
        }
        self.return_to_session(session_id, stored, now);
        Ok(())
    }

    pub(crate) fn session_dead_letter(
        &mut self,
        session_id: &SessionId,
        lock: u64,
        token: u64,
        reason: DeadLetterReason,
        now: Instant,
    ) -> Result<(), QueueError> {
        let (session, _) = self.held_session(session_id, lock, now)?;
        let stored = session
            .in_flight
            .remove(&token)
            .ok_or_else(message_lock_lost)?;
        self.live = self.live.saturating_sub(1);
        self.push_dead_letter(stored, reason);
        Ok(())
    }

    pub(crate) fn session_renew(
        &mut self,
        session_id: &SessionId,
        lock: u64,
        now: Instant,
    ) -> Result<Instant, QueueError> {
        let until = later(now, self.options.session_lock_duration());
        let (session, _) = self.held_session(session_id, lock, now)?;
        session.holder = Some((lock, until));
        self.session_locks
            .push_back((until, session_id.clone(), lock));
        Ok(until)
    }

    pub(crate) fn session_state(
        &mut self,
        session_id: &SessionId,
        lock: u64,
        now: Instant,
    ) -> Result<Option<Bytes>, QueueError> {
        let (session, _) = self.held_session(session_id, lock, now)?;
        Ok(session.state.clone())
    }

    pub(crate) fn set_session_state(
        &mut self,
        session_id: &SessionId,
        lock: u64,
        state: Option<Bytes>,
        now: Instant,
    ) -> Result<(), QueueError> {
        let max = self.max_message_bytes;
        if let Some(size) = state.as_ref().map(Bytes::len).filter(|&size| size > max) {
            return Err(QueueError::message_too_large(size, max));
        }
        let (session, _) = self.held_session(session_id, lock, now)?;
        session.state = state;
        Ok(())
    }

    /// Releases a session on its receiver's request. Closing a session whose lock is already
    /// gone is not an error: there is nothing left to release.
    pub(crate) fn close_session(&mut self, session_id: &SessionId, lock: u64, now: Instant) {
        let holds = self
            .sessions
            .get(session_id)
            .is_some_and(|session| session.check_lock(lock, now).is_ok());
        if holds {
            self.release_session(session_id, now);
        }
    }

    // ---- Inspection --------------------------------------------------------------------------

    /// Messages in sequence order from `from`, without locking them: available and locked ones
    /// (as Service Bus peeks), not scheduled ones.
    pub(crate) fn peek(&self, kind: LaneKind, from: u64, max: usize) -> Vec<PeekedMessage> {
        let mut found: Vec<&Box<Stored>> = Vec::new();
        let lane = match kind {
            LaneKind::Main => &self.main,
            LaneKind::DeadLetter => &self.dead,
        };
        found.extend(lane.returned.range(from..).map(|(_, stored)| stored));
        found.extend(lane.ready.iter().filter(|s| s.sequence_number >= from));
        found.extend(
            lane.in_flight
                .values()
                .map(|locked| &locked.stored)
                .filter(|s| s.sequence_number >= from),
        );
        if kind == LaneKind::Main {
            for session in self.sessions.values() {
                found.extend(session.returned.range(from..).map(|(_, stored)| stored));
                found.extend(session.ready.iter().filter(|s| s.sequence_number >= from));
                found.extend(
                    session
                        .in_flight
                        .values()
                        .filter(|s| s.sequence_number >= from),
                );
            }
        }
        found.sort_unstable_by_key(|stored| stored.sequence_number);
        found
            .into_iter()
            .take(max)
            .map(|stored| stored.peeked(&self.clock))
            .collect()
    }

    pub(crate) fn stats(&self) -> QueueStats {
        let in_sessions: usize = self
            .sessions
            .values()
            .map(|session| session.ready.len() + session.returned.len())
            .sum();
        let in_flight_sessions: usize = self
            .sessions
            .values()
            .map(|session| session.in_flight.len())
            .sum();
        let main = self
            .main
            .ready
            .iter()
            .chain(self.main.returned.values())
            .chain(self.main.in_flight.values().map(|locked| &locked.stored));
        let sessions = self.sessions.values().flat_map(|session| {
            session
                .ready
                .iter()
                .chain(session.returned.values())
                .chain(session.in_flight.values())
        });
        QueueStats {
            active: self.main.len() + in_sessions,
            scheduled: self.pending.len(),
            in_flight: self.main.in_flight.len() + in_flight_sessions,
            dead_letter: self.dead.len() + self.dead.in_flight.len(),
            oldest_enqueued_at: main.chain(sessions).map(|stored| stored.enqueued_at).min(),
        }
    }
}

fn message_lock_lost() -> QueueError {
    QueueError::new(
        ErrorKind::LockLost,
        "the message lock was lost (expired, settled, or the message was delivered again): \
         receive the message again",
    )
}

fn session_lock_lost() -> QueueError {
    QueueError::new(
        ErrorKind::LockLost,
        "the session lock was lost (expired or released): accept the session again",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(options: QueueOptions) -> (QueueState, Instant) {
        let clock = Clock::new();
        (QueueState::new(options, clock, 1024), Instant::now())
    }

    fn message(text: &'static str) -> Message {
        Message::new(Bytes::from_static(text.as_bytes()))
    }

    fn session_message(session: &str, text: &'static str) -> Message {
        Message::builder(Bytes::from_static(text.as_bytes()))
            .session_id(session)
            .build()
            .unwrap()
    }

    fn body(delivery: &Delivery) -> &[u8] {
        delivery.message.body()
    }

    #[test]
    fn lock_expiry_returns_the_message_first_in_line() {
        let (mut state, now) =
            state(QueueOptions::default().with_lock_duration(Duration::from_secs(5)));
        state.send(message("a"), now).unwrap();
        state.send(message("b"), now).unwrap();
        let first = state.receive(LaneKind::Main, 1, now);
        assert_eq!(body(&first[0]), b"a");
        let later_now = now + Duration::from_secs(6);
        assert!(state.advance(later_now));
        let again = state.receive(LaneKind::Main, 2, later_now);
        assert_eq!(
            body(&again[0]),
            b"a",
            "a redelivered message keeps its place"
        );
        assert_eq!(again[0].info.delivery_count, 2);
        assert_eq!(body(&again[1]), b"b");
        let lost = state.complete(LaneKind::Main, first[0].token).unwrap_err();
        assert_eq!(lost.kind(), ErrorKind::LockLost);
    }

    #[test]
    fn renewed_locks_are_not_expired_by_their_old_deadline() {
        let (mut state, now) =
            state(QueueOptions::default().with_lock_duration(Duration::from_secs(5)));
        state.send(message("a"), now).unwrap();
        let token = state.receive(LaneKind::Main, 1, now)[0].token;
        let at_four = now + Duration::from_secs(4);
        state.renew(LaneKind::Main, token, at_four).unwrap();
        state.advance(now + Duration::from_secs(6));
        assert!(
            state
                .receive(LaneKind::Main, 1, now + Duration::from_secs(6))
                .is_empty()
        );
        state.complete(LaneKind::Main, token).unwrap();
        assert_eq!(state.stats(), QueueStats::default());
    }

    #[test]
    fn completed_lock_entries_do_not_pile_up() {
        let (mut state, now) = state(QueueOptions::default());
        for _ in 0..1000 {
            state.send(message("x"), now).unwrap();
            let token = state.receive(LaneKind::Main, 1, now)[0].token;
            state.complete(LaneKind::Main, token).unwrap();
            state.advance(now);
        }
        assert!(
            state.main.lock_order.len() <= 1,
            "stale lock entries are dropped as met"
        );
    }

    #[test]
    fn the_last_delivery_dead_letters() {
        let (mut state, now) = state(QueueOptions::default().with_max_delivery_count(2));
        state.send(message("poison"), now).unwrap();
        for _ in 0..2 {
            let token = state.receive(LaneKind::Main, 1, now)[0].token;
            state
                .abandon_locked(LaneKind::Main, token, None, now)
                .unwrap();
        }
        assert!(state.receive(LaneKind::Main, 1, now).is_empty());
        let dead = state.receive(LaneKind::DeadLetter, 1, now);
        let reason = dead[0].info.dead_letter.clone().unwrap();
        assert_eq!(reason.reason, DeadLetterReason::MAX_DELIVERY_COUNT_EXCEEDED);
        assert_eq!(state.stats().dead_letter, 1);
        assert_eq!(state.live, 0);
    }

    #[test]
    fn scheduled_messages_arrive_on_time_and_can_be_cancelled() {
        let (mut state, now) = state(QueueOptions::default());
        let at = state.clock.system(now + Duration::from_secs(10));
        let first = Message::builder("later")
            .scheduled_enqueue_time(at)
            .build()
            .unwrap();
        let second = Message::builder("never")
            .scheduled_enqueue_time(at)
            .build()
            .unwrap();
        state.send(first, now).unwrap();
        let cancelled = state.send(second, now).unwrap();
        state.cancel_scheduled(cancelled).unwrap();
        assert_eq!(
            state.cancel_scheduled(cancelled).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(state.next_event(), Some(now + Duration::from_secs(10)));
        state.advance(now + Duration::from_secs(9));
        assert!(state.receive(LaneKind::Main, 1, now).is_empty());
        state.advance(now + Duration::from_secs(10));
        let got = state.receive(LaneKind::Main, 5, now + Duration::from_secs(10));
        assert_eq!(got.len(), 1);
        assert_eq!(body(&got[0]), b"later");
    }

    #[test]
    fn expired_messages_are_swept_to_the_dead_letter_queue() {
        let options = QueueOptions::default()
            .with_default_time_to_live(Some(Duration::from_secs(1)))
            .with_dead_letter_on_expiration(true);
        let (mut state, now) = state(options);
        state.send(message("stale"), now).unwrap();
        state.advance(now + Duration::from_secs(2));
        assert_eq!(state.stats().active, 0);
        assert_eq!(state.stats().dead_letter, 1);
        let dead = state.receive(LaneKind::DeadLetter, 1, now);
        assert_eq!(
            dead[0].info.dead_letter.as_ref().unwrap().reason,
            DeadLetterReason::TTL_EXPIRED
        );
    }

    #[test]
    fn sessions_are_exclusive_and_ordered_and_come_back_when_the_lock_expires() {
        let options = QueueOptions::default()
            .with_sessions(true)
            .with_session_lock_duration(Duration::from_secs(5));
        let (mut state, now) = state(options);
        for text in ["1", "2", "3"] {
            state.send(session_message("s", text), now).unwrap();
        }
        let (id, lock, _) = state.accept(None, now).unwrap();
        assert!(
            state.accept(None, now).is_none(),
            "a held session is not handed out twice"
        );
        assert!(state.accept(Some(&id), now).is_none());
        let got = state.session_receive(&id, lock, 2, now).unwrap();
        assert_eq!([body(&got[0]), body(&got[1])], [b"1", b"2"]);
        state
            .session_complete(&id, lock, got[0].token, now)
            .unwrap();
        let expiry = now + Duration::from_secs(6);
        state.advance(expiry);
        let lost = state.session_receive(&id, lock, 1, expiry).unwrap_err();
        assert_eq!(lost.kind(), ErrorKind::LockLost);
        let (again, lock2, _) = state.accept(None, expiry).unwrap();
        let got = state.session_receive(&again, lock2, 5, expiry).unwrap();
        assert_eq!([body(&got[0]), body(&got[1])], [b"2", b"3"]);
        assert_eq!(got[0].info.delivery_count, 2);
        assert_eq!(got[1].info.delivery_count, 1);
    }

    #[test]
    fn a_delayed_abandon_holds_the_session_in_order() {
        let (mut state, now) = state(QueueOptions::default().with_sessions(true));
        state.send(session_message("s", "1"), now).unwrap();
        state.send(session_message("s", "2"), now).unwrap();
        let (id, lock, _) = state.accept(None, now).unwrap();
        let first = state.session_receive(&id, lock, 1, now).unwrap();
        state
            .session_abandon(&id, lock, first[0].token, Some(Duration::from_secs(3)), now)
            .unwrap();
        assert!(state.session_receive(&id, lock, 5, now).unwrap().is_empty());
        let after = now + Duration::from_secs(3);
        state.advance(after);
        let got = state.session_receive(&id, lock, 5, after).unwrap();
        assert_eq!([body(&got[0]), body(&got[1])], [b"1", b"2"]);
    }

    #[test]
    fn capacity_is_enforced_and_freed_by_settling() {
        let (mut state, now) = state(QueueOptions::default().with_capacity(2));
        state.send(message("a"), now).unwrap();
        state.send(message("b"), now).unwrap();
        assert_eq!(
            state.send(message("c"), now).unwrap_err().kind(),
            ErrorKind::QueueFull
        );
        let token = state.receive(LaneKind::Main, 1, now)[0].token;
        state.complete(LaneKind::Main, token).unwrap();
        state.send(message("c"), now).unwrap();
    }

    #[test]
    fn session_rules_are_checked_on_send() {
        let (mut plain, now) = state(QueueOptions::default());
        let error = plain.send(session_message("s", "x"), now).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        let (mut sessions, now) = state(QueueOptions::default().with_sessions(true));
        let error = sessions.send(message("x"), now).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        assert!(sessions.check_plain_receive(LaneKind::Main).is_err());
        assert!(plain.check_sessions().is_err());
    }
}
