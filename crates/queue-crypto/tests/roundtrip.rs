//! Sealing and opening: sizes, suites, keys, times, limits.

// Test helpers outside #[test] functions may unwrap too: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use queue_crypto::{
    Context, CryptoError, KeyState, Keyset, MAX_ENVELOPE_LEN, MAX_PLAINTEXT_LEN, Sealer, TAG_LEN,
    looks_sealed, open, peek_header, seal,
};
use support::{FixedClock, SUITES, full_context, key, keyset, millis};

#[test]
fn every_size_from_empty_to_one_mebibyte_round_trips_in_both_suites() {
    let keyset = keyset();
    let context = full_context();
    for suite in SUITES {
        let sealer = Sealer::new().with_suite(suite);
        for size in [
            0,
            1,
            15,
            16,
            17,
            255,
            256,
            1024,
            4096,
            65_536,
            262_144,
            1 << 20,
        ] {
            let plaintext: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let envelope = sealer.seal(&keyset, &plaintext, &context).unwrap();
            let header = peek_header(&envelope).unwrap();
            assert_eq!(envelope.len(), header.header_len + size + TAG_LEN);
            assert_eq!(header.ciphertext_len, size);
            assert!(looks_sealed(&envelope));
            if size >= 16 {
                assert!(
                    !envelope
                        .windows(16)
                        .any(|window| window == &plaintext[..16]),
                    "{suite:?} {size}: plaintext visible in the envelope"
                );
            }
            let opened = open(&keyset, &envelope, &context).unwrap();
            assert_eq!(opened.plaintext(), plaintext, "{suite:?} {size}");
            assert_eq!(opened.suite(), suite);
        }
    }
}

#[test]
fn opened_reports_the_authenticated_header() {
    let keyset = keyset();
    let context = Context::new("q");
    let sealer = Sealer::new().with_clock(Arc::new(FixedClock(millis(1_790_000_000_123))));
    let envelope = sealer
        .seal_not_before(&keyset, b"later", &context, millis(1_790_000_060_000))
        .unwrap();
    let opened = open(&keyset, &envelope, &context).unwrap();
    assert_eq!(opened.key_id().as_str(), "k-primary");
    assert_eq!(opened.sealed_at(), millis(1_790_000_000_123));
    assert_eq!(opened.not_before(), Some(millis(1_790_000_060_000)));
    let header = peek_header(&envelope).unwrap();
    assert_eq!(&header.envelope_id, opened.envelope_id());
    assert_eq!(header.key_id, "k-primary");
    assert_eq!(header.not_before, opened.not_before());
    let printed = format!("{opened:?}");
    assert!(
        printed.contains("plaintext_len: 5") && !printed.contains("later"),
        "{printed}"
    );

    let plain = seal(&keyset, b"now", &context).unwrap();
    assert_eq!(open(&keyset, &plain, &context).unwrap().not_before(), None);
}

#[test]
fn every_seal_gets_a_fresh_envelope_id() {
    let keyset = keyset();
    let context = Context::new("q");
    let ids: HashSet<[u8; 32]> = (0..1000)
        .map(|_| {
            *open(
                &keyset,
                &seal(&keyset, b"same", &context).unwrap(),
                &context,
            )
            .unwrap()
            .envelope_id()
        })
        .collect();
    assert_eq!(ids.len(), 1000);
}

#[test]
fn rotation_an_active_key_opens_what_it_sealed_as_primary() {
    let context = Context::new("q");
    // Phase 2 of a rotation: "new" becomes primary, "old" stays active.
    let before = Keyset::new([
        key("old", 1, KeyState::Primary),
        key("new", 2, KeyState::Active),
    ])
    .unwrap();
    let after = Keyset::new([
        key("old", 1, KeyState::Active),
        key("new", 2, KeyState::Primary),
    ])
    .unwrap();
    let sealed_before = seal(&before, b"a", &context).unwrap();
    let sealed_after = seal(&after, b"b", &context).unwrap();
    assert_eq!(
        open(&after, &sealed_before, &context)
            .unwrap()
            .key_id()
            .as_str(),
        "old"
    );
    assert_eq!(
        open(&before, &sealed_after, &context)
            .unwrap()
            .key_id()
            .as_str(),
        "new"
    );
    // Phase 3: "old" retired.
    let retired = Keyset::new([
        key("old", 1, KeyState::Retired),
        key("new", 2, KeyState::Primary),
    ])
    .unwrap();
    assert_eq!(
        open(&retired, &sealed_before, &context).unwrap_err(),
        CryptoError::RetiredKey("old".into())
    );
    assert!(open(&retired, &sealed_after, &context).is_ok());
}

#[test]
fn a_keyset_without_primary_opens_but_does_not_seal() {
    let context = Context::new("q");
    let receiver = Keyset::new([key("k-primary", 1, KeyState::Active)]).unwrap();
    assert_eq!(
        seal(&receiver, b"x", &context).unwrap_err(),
        CryptoError::NoPrimaryKey
    );
    let envelope = seal(&keyset(), b"x", &context).unwrap();
    assert_eq!(
        open(&receiver, &envelope, &context).unwrap().plaintext(),
        b"x"
    );
}

#[test]
fn not_after_stops_sealing_and_refuses_later_seal_times() {
    let context = Context::new("q");
    let at = |ms| Sealer::new().with_clock(Arc::new(FixedClock(millis(ms))));
    let bounded =
        || Keyset::new([key("k", 1, KeyState::Primary).with_not_after(millis(2_000))]).unwrap();
    // Before not_after: seals, opens.
    let early = at(1_000).seal(&bounded(), b"x", &context).unwrap();
    assert!(open(&bounded(), &early, &context).is_ok());
    // After: refuses to seal.
    assert_eq!(
        at(3_000).seal(&bounded(), b"x", &context).unwrap_err(),
        CryptoError::KeyExpired("k".into())
    );
    // An envelope claiming a later seal time (made with the same material elsewhere) is refused.
    let unbounded = Keyset::new([key("k", 1, KeyState::Primary)]).unwrap();
    let late = at(3_000).seal(&unbounded, b"x", &context).unwrap();
    assert_eq!(
        open(&bounded(), &late, &context).unwrap_err(),
        CryptoError::KeyExpired("k".into())
    );
}

#[test]
fn sizes_beyond_the_limits_are_refused_before_work() {
    let keyset = keyset();
    let context = Context::new("q");
    let too_big = vec![0_u8; MAX_PLAINTEXT_LEN + 1];
    assert_eq!(
        seal(&keyset, &too_big, &context).unwrap_err(),
        CryptoError::TooLarge {
            what: "plaintext",
            size: MAX_PLAINTEXT_LEN + 1,
            max: MAX_PLAINTEXT_LEN
        }
    );
    let mut huge = seal(&keyset, b"x", &context).unwrap();
    huge.resize(MAX_ENVELOPE_LEN + 1, 0);
    assert!(matches!(
        open(&keyset, &huge, &context).unwrap_err(),
        CryptoError::TooLarge {
            what: "envelope",
            ..
        }
    ));
    assert!(matches!(
        peek_header(&huge).unwrap_err(),
        CryptoError::TooLarge { .. }
    ));
}

#[test]
fn a_seal_time_before_1970_is_an_error_not_a_panic() {
    let sealer = Sealer::new().with_clock(Arc::new(FixedClock(
        std::time::SystemTime::UNIX_EPOCH - Duration::from_secs(1),
    )));
    assert!(matches!(
        sealer
            .seal(&keyset(), b"x", &Context::new("q"))
            .unwrap_err(),
        CryptoError::InvalidTime(_)
    ));
}

#[test]
fn open_refuses_what_seal_would_refuse_whatever_the_header_length() {
    // A short header (9-byte key id, no not-before) leaves 71 bytes of MAX_ENVELOPE_LEN that a
    // ciphertext could fill; opening refuses them exactly as sealing refuses the plaintext.
    let keyset = keyset();
    let context = Context::new("q");
    let envelope = seal(&keyset, b"x", &context).unwrap();
    let header_len = peek_header(&envelope).unwrap().header_len;
    let mut long = envelope.clone();
    long.resize(header_len + MAX_PLAINTEXT_LEN + 1 + TAG_LEN, 0);
    assert!(long.len() <= MAX_ENVELOPE_LEN);
    let too_large = CryptoError::TooLarge {
        what: "plaintext",
        size: MAX_PLAINTEXT_LEN + 1,
        max: MAX_PLAINTEXT_LEN,
    };
    assert_eq!(open(&keyset, &long, &context).unwrap_err(), too_large);
    assert_eq!(peek_header(&long).unwrap_err(), too_large);
    // At the limit it is judged on its tag, like any other envelope.
    long.truncate(long.len() - 1);
    assert_eq!(
        open(&keyset, &long, &context).unwrap_err(),
        CryptoError::DecryptFailed
    );
}

#[test]
fn short_inputs_are_malformed_until_the_prefix_is_complete() {
    let keyset = keyset();
    let context = Context::new("q");
    for input in [
        &b""[..],
        b"\xF5",
        b"\xF5QRE",
        b"\xF5QRE\x09",
        b"\xF5QRE\x01\x01",
        b"\xF5QRE\x02\x01\x00",
    ] {
        assert!(
            matches!(
                open(&keyset, input, &context),
                Err(CryptoError::Malformed(_))
            ),
            "{input:?}"
        );
    }
    // From 8 bytes on, the version is judged first.
    assert_eq!(
        open(&keyset, b"\xF5QRE\x09\x01\x00\x01", &context).unwrap_err(),
        CryptoError::UnsupportedVersion(9)
    );
    assert_eq!(queue_crypto::envelope_version(b"\xF5QRE\x09"), Some(9));
    assert_eq!(queue_crypto::envelope_version(b"\xF5QRE"), None);
}

#[test]
fn an_invalid_context_is_judged_before_the_envelope() {
    let keyset = keyset();
    for input in [
        &b"not an envelope"[..],
        &seal(&keyset, b"x", &Context::new("q")).unwrap(),
    ] {
        assert!(matches!(
            open(&keyset, input, &Context::new("")).unwrap_err(),
            CryptoError::InvalidContext(_)
        ));
    }
    assert!(matches!(
        seal(
            &Keyset::new([key("k", 1, KeyState::Active)]).unwrap(),
            b"x",
            &Context::new("")
        )
        .unwrap_err(),
        CryptoError::InvalidContext(_)
    ));
}

#[test]
fn times_truncate_to_milliseconds_and_not_before_may_precede_the_seal() {
    let keyset = keyset();
    let context = Context::new("q");
    let sealed = std::time::SystemTime::UNIX_EPOCH + Duration::from_micros(1_790_000_000_123_999);
    let sealer = Sealer::new().with_clock(Arc::new(FixedClock(sealed)));
    let envelope = sealer
        .seal_not_before(&keyset, b"x", &context, millis(1_000))
        .unwrap();
    let opened = open(&keyset, &envelope, &context).unwrap();
    assert_eq!(opened.sealed_at(), millis(1_790_000_000_123));
    assert_eq!(opened.not_before(), Some(millis(1_000)));
    let before_1970 = std::time::SystemTime::UNIX_EPOCH - Duration::from_millis(1);
    assert!(matches!(
        sealer
            .seal_not_before(&keyset, b"x", &context, before_1970)
            .unwrap_err(),
        CryptoError::InvalidTime(_)
    ));
}
