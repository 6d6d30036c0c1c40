//! Lock tokens as Service Bus issues them, and the table from token to the engine's receipt.
//!
//! One 128-bit token per lock, written three ways: the delivery tag carries it in .NET
//! `Guid.ToByteArray()` order (the first three fields little-endian: Python reads it with
//! `uuid.UUID(bytes_le=...)`, Go swaps the bytes back, .NET calls `new Guid(bytes)`), the
//! `x-opt-lock-token` delivery annotation and management bodies carry it as an AMQP uuid in RFC
//! order.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use queue_core::Receipt;
use uuid::Uuid;

/// The 16 bytes of a delivery tag for `token`: .NET GUID order.
pub(crate) fn delivery_tag(token: Uuid) -> [u8; 16] {
    token.to_bytes_le()
}

/// What a lock token stands for.
#[derive(Debug, Clone)]
pub(crate) struct Lock {
    pub(crate) receipt: Receipt,
    pub(crate) locked_until: SystemTime,
    /// The held session whose receiver got the message (its serial), for session messages.
    pub(crate) holder: Option<u64>,
}

/// How long a lock's entry outlives its deadline before a sweep may drop it: a settle that
/// arrives a little late still gets `message-lock-lost` from the engine rather than a 404.
const KEEP_AFTER_EXPIRY: Duration = Duration::from_secs(300);
/// Sweep the table for stale entries every this many new locks.
const SWEEP_EVERY: usize = 1024;

/// Every lock handed out and not yet settled, by token.
#[derive(Debug, Default)]
pub(crate) struct LockTable {
    inner: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    locks: HashMap<Uuid, Lock>,
    issued_since_sweep: usize,
}

impl LockTable {
    /// A fresh token for a delivery.
    pub(crate) fn issue(
        &self,
        receipt: Receipt,
        locked_until: SystemTime,
        holder: Option<u64>,
    ) -> Uuid {
        let token = Uuid::new_v4();
        let mut table = self.inner.lock();
        table.locks.insert(
            token,
            Lock {
                receipt,
                locked_until,
                holder,
            },
        );
        table.issued_since_sweep += 1;
        if table.issued_since_sweep >= SWEEP_EVERY {
            let now = SystemTime::now();
            table.locks.retain(|_, lock| {
                // Session messages are covered by their session's lock, which renewals extend
                // without touching this entry: keep those while the session may be held.
                lock.holder.is_some() || lock.locked_until + KEEP_AFTER_EXPIRY > now
            });
            table.issued_since_sweep = 0;
        }
        token
    }

    /// The lock a token stands for.
    pub(crate) fn get(&self, token: &Uuid) -> Option<Lock> {
        self.inner.lock().locks.get(token).cloned()
    }

    /// Records a renewal.
    pub(crate) fn renewed(&self, token: &Uuid, locked_until: SystemTime) {
        if let Some(lock) = self.inner.lock().locks.get_mut(token) {
            lock.locked_until = locked_until;
        }
    }

    /// Forgets a settled (or lost) lock.
    pub(crate) fn remove(&self, token: &Uuid) {
        self.inner.lock().locks.remove(token);
    }

    /// Forgets every lock handed out through a held session (when its receiver goes).
    pub(crate) fn remove_holder(&self, serial: u64) {
        self.inner
            .lock()
            .locks
            .retain(|_, lock| lock.holder != Some(serial));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_tags_use_dotnet_guid_order() {
        // .NET: new Guid("00112233-4455-6677-8899-aabbccddeeff").ToByteArray()
        let token = Uuid::parse_str("00112233-4455-6677-8899-aabbccddeeff").unwrap();
        assert_eq!(
            delivery_tag(token),
            [
                0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ]
        );
        // The uuid in management bodies and in x-opt-lock-token is the RFC order.
        assert_eq!(
            token.as_bytes(),
            &[
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ]
        );
        // What Python does with the tag: uuid.UUID(bytes_le=tag).
        assert_eq!(Uuid::from_bytes_le(delivery_tag(token)), token);
    }

    #[test]
    fn settled_and_stale_locks_are_forgotten() {
        let table = LockTable::default();
        let queue = queue_core::QueueName::new("q").unwrap();
        let receipt = Receipt::new("memory", queue, None, ());
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        let stale = table.issue(receipt.clone(), long_ago, None);
        let live = table.issue(
            receipt.clone(),
            SystemTime::now() + Duration::from_secs(60),
            None,
        );
        table.remove(&live);
        assert!(table.get(&live).is_none());
        for _ in 0..SWEEP_EVERY {
            let token = table.issue(
                receipt.clone(),
                SystemTime::now() + Duration::from_secs(60),
                None,
            );
            table.remove(&token);
        }
        table.issue(receipt, SystemTime::now(), Some(1));
        table.remove_holder(1);
        assert!(table.get(&stale).is_none(), "a long expired lock is swept");
    }
}
