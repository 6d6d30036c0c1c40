//! The conformance suite against the embedded broker, under tokio's paused clock.

#[path = "support/memory.rs"]
mod memory_fixture;

use memory_fixture::MemoryFixture;
use queue_conformance::TimeMode;

mod conformance {
    use super::*;

    queue_conformance::conformance_suite!(TimeMode::Paused, MemoryFixture::new());
}

/// The memory provider declares every capability: nothing may be skipped for it.
#[test]
fn memory_skips_nothing() {
    let skipped = queue_conformance::run_all(TimeMode::Paused, MemoryFixture::new);
    assert!(skipped.is_empty(), "skipped on memory: {skipped:?}");
}
