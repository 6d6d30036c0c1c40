//! Fuzzes `open` and `peek_header` with arbitrary bytes:
//! `cargo +nightly fuzz run open fuzz/corpus/open` (from the workspace root).

#![no_main]

mod harness {
    include!("../harness.rs");
}

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static KEYSET: OnceLock<queue_crypto::Keyset> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let keyset = KEYSET.get_or_init(harness::keyset);
    let _ = harness::check(keyset, &harness::context(), data);
});
