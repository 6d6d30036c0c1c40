//! Calls into azservicebus, each future on the heap.
//!
//! The SDK's futures are large: a `complete_message` is 31,960 bytes, a receive 31,880, a
//! batch send about as much. Held inline, each makes every future of ours that may await it as
//! large, and each move of those (into `uninterrupted`, into the box `async_trait` makes of every
//! provider call) copies them whole. With the provider's entry points at 36 KiB each, that was
//! about 4 µs of client CPU per message in the Service Bus bench (docs/performance.md). Boxed,
//! the SDK's future is written once, and ours stay under a kilobyte.

use std::future::Future;
use std::pin::Pin;

/// `call` on the heap; see the module's doc for why every SDK call goes through here.
pub(crate) fn sdk_call<F: Future>(call: F) -> Pin<Box<F>> {
    Box::pin(call)
}
