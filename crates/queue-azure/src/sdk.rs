//! Calls into azservicebus, each future on the heap: every call a send, receive, settle,
//! renewal, peek or session operation makes. (Connecting and closing, made once per provider,
//! and the next-session accept, which runs in a task of its own, do without.)
//!
//! The SDK's futures are large: a `complete_message` is 31,960 bytes, a receive 31,880
//! (release build). Held inline, each makes every future of ours that may await it as
//! large, and each move of those (into `uninterrupted`, into the box `async_trait` makes of every
//! provider call) copies them whole. With the provider's entry points at 36 KiB each, that was
//! about 4 µs of client CPU per message in the Service Bus bench (docs/performance.md). Boxed,
//! the SDK's future is written once, and ours stay small (32 bytes for a `complete`, 2.4 KiB
//! for a `receive`).

use std::future::Future;
use std::pin::Pin;

/// `call` on the heap; the module's doc says why.
pub(crate) fn sdk_call<F: Future>(call: F) -> Pin<Box<F>> {
    Box::pin(call)
}
