// The check the fuzzer runs on every input, shared word for word by the fuzz target
// (fuzz/fuzz_targets/open.rs) and by `cargo test` (crates/queue-crypto/tests/fuzz_corpus.rs),
// which runs the whole corpus through it so CI keeps the corpus honest.
//
// The seeds in fuzz/corpus/open were sealed under `keyset()` for `context()`.

use queue_crypto::{Context, Key, KeyId, KeyMaterial, KeyState, Keyset, open, peek_header};

/// The keys the seeds were sealed with: a primary, an active and a retired key.
pub(crate) fn keyset() -> Keyset {
    let key = |id: &str, byte: u8, state: KeyState| {
        Key::new(
            KeyId::new(id).unwrap_or_else(|_| unreachable!("a valid key id")),
            KeyMaterial::from_array([byte; 32]),
            state,
        )
    };
    Keyset::new([
        key("fuzz-primary", 0x42, KeyState::Primary),
        key("fuzz-active", 0x43, KeyState::Active),
        key("fuzz-retired", 0x44, KeyState::Retired),
    ])
    .unwrap_or_else(|_| unreachable!("a valid keyset"))
}

/// The context the seeds were sealed for.
pub(crate) fn context() -> Context<'static> {
    Context::new("fuzz-queue")
        .with_session_id("session-1")
        .with_property("kind", "seed")
}

/// Opens `data` and peeks at its header; both must return, never panic, and agree: whatever
/// opens has a header that peeks to the same key id, times and length. Returns the plaintext
/// when `data` opens.
pub(crate) fn check(keyset: &Keyset, context: &Context<'_>, data: &[u8]) -> Option<Vec<u8>> {
    let header = peek_header(data);
    let opened = open(keyset, data, context).ok()?;
    let Ok(header) = header else {
        panic!("an envelope opened but its header did not parse");
    };
    assert_eq!(header.key_id, opened.key_id().as_str());
    assert_eq!(header.sealed_at, opened.sealed_at());
    assert_eq!(header.not_before, opened.not_before());
    assert_eq!(&header.envelope_id, opened.envelope_id());
    assert_eq!(header.ciphertext_len, opened.plaintext().len());
    Some(opened.into_plaintext())
}
