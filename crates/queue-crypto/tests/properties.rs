//! Property tests: whatever the plaintext and context, sealing round-trips; whatever the bytes,
//! opening never panics and never accepts a change.

// Test helpers outside #[test] functions may unwrap too: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use queue_crypto::public::{self, Kem};
use queue_crypto::{Context, MAGIC, Sealer, open, peek_header};
use support::{SUITES, keyset, shared_parties};

fn context() -> impl Strategy<Value = Context<'static>> {
    (
        "[a-z0-9/._-]{1,40}",
        proptest::option::of(".{0,20}"),
        proptest::option::of(".{0,20}"),
        proptest::option::of("[a-z/+]{0,20}"),
        proptest::option::of("[0-9a-f-]{0,36}"),
        btree_map(".{0,10}", ".{0,20}", 0..6),
    )
        .prop_map(
            |(channel, session, correlation, content_type, message_id, properties)| {
                let mut context = Context::new(channel).with_properties(properties);
                if let Some(session) = session {
                    context = context.with_session_id(session);
                }
                if let Some(correlation) = correlation {
                    context = context.with_correlation_id(correlation);
                }
                if let Some(content_type) = content_type {
                    context = context.with_content_type(content_type);
                }
                if let Some(message_id) = message_id {
                    context = context.with_message_id(message_id);
                }
                context
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sealing_round_trips(plaintext in vec(any::<u8>(), 0..2048), context in context(), chacha in any::<bool>()) {
        let keyset = keyset();
        let sealer = Sealer::new().with_suite(SUITES[usize::from(chacha)]);
        let envelope = sealer.seal(&keyset, &plaintext, &context).unwrap();
        let opened = open(&keyset, &envelope, &context).unwrap();
        prop_assert_eq!(opened.plaintext(), &plaintext[..]);
    }

    #[test]
    fn any_byte_change_is_refused(
        plaintext in vec(any::<u8>(), 0..512),
        context in context(),
        position in any::<prop::sample::Index>(),
        delta in 1..=255_u8,
    ) {
        let keyset = keyset();
        let mut envelope = Sealer::new().seal(&keyset, &plaintext, &context).unwrap();
        let index = position.index(envelope.len());
        envelope[index] = envelope[index].wrapping_add(delta);
        prop_assert!(open(&keyset, &envelope, &context).is_err());
    }

    #[test]
    fn a_different_context_is_refused(plaintext in vec(any::<u8>(), 0..64), sealed_for in context(), opened_with in context()) {
        prop_assume!(sealed_for != opened_with);
        let keyset = keyset();
        let envelope = Sealer::new().seal(&keyset, &plaintext, &sealed_for).unwrap();
        prop_assert_eq!(open(&keyset, &envelope, &opened_with).unwrap_err(), queue_crypto::CryptoError::DecryptFailed);
    }

    #[test]
    fn arbitrary_bytes_never_open_and_never_panic(bytes in vec(any::<u8>(), 0..400), with_magic in any::<bool>()) {
        let mut input = bytes;
        if with_magic {
            // Also a valid version, suite and flags, to get past the first checks.
            let prefix = [&MAGIC[..], &[1, 1, 0, 9], b"k-primary"].concat();
            input.splice(0..0, prefix);
        }
        let _ = peek_header(&input);
        prop_assert!(open(&keyset(), &input, &Context::new("q")).is_err());
    }

}

proptest! {
    // Version 2 costs a KEM and a signature per case, slow in a debug build: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn public_sealing_round_trips(plaintext in vec(any::<u8>(), 0..2048), context in context(), suite in 1..=4_u8) {
        let suite = public::HpkeSuite::from_id(suite).unwrap();
        let parties = shared_parties(suite.kem());
        let sealer = public::Sealer::new().with_aead(suite.aead());
        let envelope = sealer.seal(&parties.producer, &plaintext, &context).unwrap();
        let opened = public::open(&parties.consumer, &envelope, &context).unwrap();
        prop_assert_eq!(opened.plaintext(), &plaintext[..]);
        prop_assert_eq!(opened.suite(), suite);
    }

    #[test]
    fn public_any_byte_change_is_refused(
        plaintext in vec(any::<u8>(), 0..512),
        context in context(),
        xwing in any::<bool>(),
        position in any::<prop::sample::Index>(),
        delta in 1..=255_u8,
    ) {
        let parties = shared_parties(if xwing { Kem::XWing } else { Kem::X25519HkdfSha256 });
        let mut envelope = public::seal(&parties.producer, &plaintext, &context).unwrap();
        let index = position.index(envelope.len());
        envelope[index] = envelope[index].wrapping_add(delta);
        prop_assert!(public::open(&parties.consumer, &envelope, &context).is_err());
    }

    #[test]
    fn public_a_different_context_is_refused(plaintext in vec(any::<u8>(), 0..64), sealed_for in context(), opened_with in context()) {
        prop_assume!(sealed_for != opened_with);
        let parties = shared_parties(Kem::X25519HkdfSha256);
        let envelope = public::seal(&parties.producer, &plaintext, &sealed_for).unwrap();
        prop_assert_eq!(public::open(&parties.consumer, &envelope, &opened_with).unwrap_err(), queue_crypto::CryptoError::DecryptFailed);
    }

    #[test]
    fn public_arbitrary_bytes_never_open_and_never_panic(bytes in vec(any::<u8>(), 0..1600), suite in 1..=4_u8, with_prefix in any::<bool>()) {
        let mut input = bytes;
        if with_prefix {
            // A valid version, suite, flags and key ids, to get past the first checks.
            let prefix = [&MAGIC[..], &[2, suite, 0, 9, 9], b"r-primarys-primary"].concat();
            input.splice(0..0, prefix);
        }
        let parties = shared_parties(Kem::X25519HkdfSha256);
        let _ = public::peek_header(&input);
        prop_assert!(public::open(&parties.consumer, &input, &Context::new("q")).is_err());
    }
}
