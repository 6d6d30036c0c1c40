//! Fuzzes `open` and `peek_header` of both envelope versions with arbitrary bytes:
//! `cargo +nightly fuzz run open fuzz/corpus/open` (from the workspace root).

#![no_main]

mod harness {
    include!("../harness.rs");
}

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static KEYS: OnceLock<harness::Keys> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let keys = KEYS.get_or_init(harness::keys);
    let _ = harness::check(keys, &harness::context(), data);
});
