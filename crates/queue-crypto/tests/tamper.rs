//! Everything an attacker with read/write access to the queue can try, refused.

// Test helpers outside #[test] functions may unwrap too: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use queue_crypto::{
    Context, CryptoError, KeyState, Keyset, MAGIC, Sealer, open, peek_header, seal,
};
use support::{SUITES, full_context, key, keyset};

fn sealed_1kib(suite: queue_crypto::Suite) -> Vec<u8> {
    let plaintext: Vec<u8> = (0..1024_u32).map(|i| (i * 7 % 256) as u8).collect();
    Sealer::new()
        .with_suite(suite)
        .seal(&keyset(), &plaintext, &full_context())
        .unwrap()
}

#[test]
fn flipping_any_single_bit_of_a_1kib_envelope_is_refused() {
    let keyset = keyset();
    let context = full_context();
    for suite in SUITES {
        let envelope = sealed_1kib(suite);
        assert!(open(&keyset, &envelope, &context).is_ok());
        let mut refused = 0;
        for bit in 0..envelope.len() * 8 {
            let mut tampered = envelope.clone();
            tampered[bit / 8] ^= 1 << (bit % 8);
            match open(&keyset, &tampered, &context) {
                Ok(_) => panic!("{suite:?}: flipping bit {bit} still opens"),
                Err(_) => refused += 1,
            }
        }
        assert_eq!(refused, envelope.len() * 8);
    }
}

#[test]
fn every_context_field_is_bound() {
    let keyset = keyset();
    let context = full_context();
    let envelope = seal(&keyset, b"body", &context).unwrap();
    let altered = [
        (
            "channel",
            Context::new("other-queue")
                .with_session_id("repo/123")
                .with_correlation_id("delivery-9")
                .with_content_type("application/json")
                .with_message_id("6f1c9c3e-5a57-4c9b-9d43-3a8c3b1e2f10")
                .with_property("event", "pull_request")
                .with_property("action", "opened"),
        ),
        ("session id", context.clone().with_session_id("repo/124")),
        (
            "correlation id",
            context.clone().with_correlation_id("delivery-10"),
        ),
        (
            "content type",
            context.clone().with_content_type("text/plain"),
        ),
        ("message id", context.clone().with_message_id("another")),
        (
            "property value",
            context.clone().with_property("action", "closed"),
        ),
        (
            "added property",
            context.clone().with_property("extra", "1"),
        ),
        (
            "removed property",
            Context::new("pr-events")
                .with_session_id("repo/123")
                .with_correlation_id("delivery-9")
                .with_content_type("application/json")
                .with_message_id("6f1c9c3e-5a57-4c9b-9d43-3a8c3b1e2f10")
                .with_property("event", "pull_request"),
        ),
        (
            "session removed",
            Context::new("pr-events")
                .with_correlation_id("delivery-9")
                .with_content_type("application/json")
                .with_message_id("6f1c9c3e-5a57-4c9b-9d43-3a8c3b1e2f10")
                .with_property("event", "pull_request")
                .with_property("action", "opened"),
        ),
        (
            "empty instead of absent",
            Context::new("q").with_session_id(""),
        ),
    ];
    for (field, other) in altered {
        assert_ne!(other, context, "{field}: the test must change something");
        assert_eq!(
            open(&keyset, &envelope, &other).unwrap_err(),
            CryptoError::DecryptFailed,
            "{field}"
        );
    }
    // The property order the receiver uses does not matter.
    let reordered = Context::new("pr-events")
        .with_property("action", "opened")
        .with_property("event", "pull_request")
        .with_message_id("6f1c9c3e-5a57-4c9b-9d43-3a8c3b1e2f10")
        .with_content_type("application/json")
        .with_correlation_id("delivery-9")
        .with_session_id("repo/123");
    assert!(open(&keyset, &envelope, &reordered).is_ok());
}

#[test]
fn the_right_id_with_the_wrong_material_is_refused() {
    let context = Context::new("q");
    let envelope = seal(&keyset(), b"x", &context).unwrap();
    let impostor = Keyset::new([key("k-primary", 9, KeyState::Primary)]).unwrap();
    assert_eq!(
        open(&impostor, &envelope, &context).unwrap_err(),
        CryptoError::DecryptFailed
    );
}

#[test]
fn unknown_and_retired_keys_are_named() {
    let context = Context::new("q");
    let envelope = seal(&keyset(), b"x", &context).unwrap();
    let other = Keyset::new([key("someone-else", 1, KeyState::Primary)]).unwrap();
    assert_eq!(
        open(&other, &envelope, &context).unwrap_err(),
        CryptoError::UnknownKeyId("k-primary".into())
    );
    let retired = Keyset::new([key("k-primary", 1, KeyState::Retired)]).unwrap();
    assert_eq!(
        open(&retired, &envelope, &context).unwrap_err(),
        CryptoError::RetiredKey("k-primary".into())
    );
}

#[test]
fn relabelling_the_key_id_or_suite_is_refused() {
    // Same material under two ids: a relabelled envelope must still fail (the key id is bound
    // into the derivation and the header is authenticated).
    let keyset = Keyset::new([
        key("aaaa", 1, KeyState::Primary),
        key("bbbb", 1, KeyState::Active),
    ])
    .unwrap();
    let context = Context::new("q");
    let envelope = seal(&keyset, b"x", &context).unwrap();
    let relabelled: Vec<u8> = {
        let mut bytes = envelope.clone();
        bytes[8..12].copy_from_slice(b"bbbb");
        bytes
    };
    assert_eq!(
        open(&keyset, &relabelled, &context).unwrap_err(),
        CryptoError::DecryptFailed
    );
    // Switching the suite byte to the other known suite.
    let mut switched = envelope.clone();
    switched[5] = 2;
    assert_eq!(
        open(&keyset, &switched, &context).unwrap_err(),
        CryptoError::DecryptFailed
    );
}

#[test]
fn header_errors_are_distinct_for_operators() {
    let keyset = keyset();
    let context = Context::new("q");
    let envelope = seal(&keyset, b"x", &context).unwrap();
    let with = |index: usize, value: u8| {
        let mut bytes = envelope.clone();
        bytes[index] = value;
        open(&keyset, &bytes, &context).unwrap_err()
    };
    assert_eq!(with(4, 2), CryptoError::UnsupportedVersion(2));
    assert_eq!(with(5, 9), CryptoError::UnsupportedSuite(9));
    assert!(matches!(with(6, 0b10), CryptoError::Malformed(_)));
    assert!(matches!(with(7, 0), CryptoError::Malformed(_)));
    assert!(matches!(with(7, 65), CryptoError::Malformed(_)));
    assert!(matches!(with(8, b' '), CryptoError::Malformed(_)));
    assert!(matches!(with(0, b'{'), CryptoError::Malformed(_)));
}

#[test]
fn truncation_at_every_length_and_extension_are_refused() {
    let keyset = keyset();
    let context = full_context();
    for suite in SUITES {
        let envelope = sealed_1kib(suite);
        for len in 0..envelope.len() {
            assert!(
                open(&keyset, &envelope[..len], &context).is_err(),
                "{suite:?} truncated to {len}"
            );
        }
        let mut extended = envelope.clone();
        extended.push(0);
        assert_eq!(
            open(&keyset, &extended, &context).unwrap_err(),
            CryptoError::DecryptFailed
        );
    }
}

#[test]
fn splicing_a_header_onto_another_ciphertext_is_refused() {
    let keyset = keyset();
    let context = Context::new("q");
    let first = seal(&keyset, b"first message", &context).unwrap();
    let second = seal(&keyset, b"other message", &context).unwrap();
    let header_len = peek_header(&first).unwrap().header_len;
    let spliced = [&first[..header_len], &second[header_len..]].concat();
    assert_eq!(
        open(&keyset, &spliced, &context).unwrap_err(),
        CryptoError::DecryptFailed
    );
}

#[test]
fn a_plaintext_starting_with_the_magic_never_opens() {
    let keyset = keyset();
    let context = Context::new("q");
    let mut body = MAGIC.to_vec();
    for rest in [
        &b""[..],
        b"\x01",
        b"\x01\x01\x00\x05hello",
        &[0x01; 200][..],
    ] {
        body.truncate(MAGIC.len());
        body.extend_from_slice(rest);
        assert!(queue_crypto::looks_sealed(&body));
        assert!(open(&keyset, &body, &context).is_err(), "{body:?}");
    }
    // A plain text body is recognisably not sealed.
    assert!(!queue_crypto::looks_sealed(b"{\"order\":1}"));
    assert!(matches!(
        open(&keyset, b"{\"order\":1}", &context).unwrap_err(),
        CryptoError::Malformed(_)
    ));
}
