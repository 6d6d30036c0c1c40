//! The conformance suite through queue-runtime's resilience decorator (retries and circuit
//! breaker) around the embedded broker: a decorator that changed a behaviour would fail here,
//! as opendal runs its behaviour tests with its retry layer on.

#![allow(clippy::panic)]

#[path = "support/memory.rs"]
mod memory_fixture;

use std::sync::Arc;

use memory_fixture::MemoryFixture;
use queue_conformance::TimeMode;
use queue_core::QueueProvider;
use queue_runtime::resilience::{Resilience, ResilientProvider};

fn resilient() -> MemoryFixture {
    MemoryFixture::wrapped(|broker| {
        let decorated = ResilientProvider::new(broker, Resilience::default())
            .unwrap_or_else(|error| panic!("the default resilience is valid: {error}"));
        Arc::new(decorated) as Arc<dyn QueueProvider>
    })
}

mod conformance {
    use super::*;

    queue_conformance::conformance_suite!(TimeMode::Paused, resilient());
}

/// The decorator declares what the broker declares: nothing may be skipped through it.
#[test]
fn the_decorator_skips_nothing() {
    let skipped = queue_conformance::run_all(TimeMode::Paused, resilient);
    assert!(
        skipped.is_empty(),
        "skipped through the decorator: {skipped:?}"
    );
}
