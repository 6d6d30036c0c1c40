//! The public-key envelope (version 2): sealing and opening, sizes, suites, keys, rotation,
//! times, limits, and version 1 beside it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use queue_crypto::public::{
    self, ConsumerKeyset, HpkeSuite, Kem, ProducerKeyset, RecipientKeyPair, RecipientPublicKey,
    SIGNATURE_LEN, Sealer, SenderPublicKey, SenderSigningKey,
};
use queue_crypto::{
    Context, CryptoError, KeyId, KeyState, MAX_PLAINTEXT_LEN, Suite, TAG_LEN, envelope_version,
    looks_sealed,
};
use support::{
    FixedClock, KEMS, SUITES, ScriptedRandom, full_context, keyset, millis, public_parties,
    recipient_pair, signer,
};

fn id(text: &str) -> KeyId {
    KeyId::new(text).unwrap()
}

#[test]
fn every_size_round_trips_in_every_suite() {
    let context = full_context();
    for kem in KEMS {
        let parties = public_parties(kem);
        for aead in SUITES {
            let sealer = Sealer::new().with_aead(aead);
            for size in [0, 1, 15, 16, 17, 255, 256, 4096, 65_536, 1 << 20] {
                let plaintext: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
                let envelope = sealer
                    .seal(&parties.producer, &plaintext, &context)
                    .unwrap();
                let header = public::peek_header(&envelope).unwrap();
                assert_eq!(
                    envelope.len(),
                    header.header_len + size + TAG_LEN + SIGNATURE_LEN
                );
                assert_eq!(header.ciphertext_len, size);
                assert_eq!(header.suite, HpkeSuite::new(kem, aead));
                assert!(looks_sealed(&envelope));
                assert_eq!(envelope_version(&envelope), Some(2));
                if size >= 16 {
                    assert!(
                        !envelope
                            .windows(16)
                            .any(|window| window == &plaintext[..16]),
                        "{kem:?} {aead:?} {size}: plaintext visible in the envelope"
                    );
                }
                let opened = public::open(&parties.consumer, &envelope, &context).unwrap();
                assert_eq!(opened.plaintext(), plaintext, "{kem:?} {aead:?} {size}");
                assert_eq!(opened.suite(), HpkeSuite::new(kem, aead));
                assert_eq!(opened.recipient_key_id().as_str(), "r-primary");
                assert_eq!(opened.sender_key_id().as_str(), "s-primary");
            }
        }
    }
}

#[test]
fn opened_reports_the_authenticated_header_and_peek_agrees() {
    let parties = public_parties(Kem::X25519HkdfSha256);
    let context = Context::new("q");
    let sealer = Sealer::new().with_clock(Arc::new(FixedClock(millis(1_790_000_000_123))));
    let envelope = sealer
        .seal_not_before(
            &parties.producer,
            b"later",
            &context,
            millis(1_790_000_060_000),
        )
        .unwrap();
    let opened = public::open(&parties.consumer, &envelope, &context).unwrap();
    assert_eq!(opened.sealed_at(), millis(1_790_000_000_123));
    assert_eq!(opened.not_before(), Some(millis(1_790_000_060_000)));
    let header = public::peek_header(&envelope).unwrap();
    assert_eq!(&header.envelope_id, opened.envelope_id());
    assert_eq!(header.recipient_key_id, "r-primary");
    assert_eq!(header.sender_key_id, "s-primary");
    assert_eq!(header.sealed_at, opened.sealed_at());
    assert_eq!(header.not_before, opened.not_before());
    let printed = format!("{opened:?}");
    assert!(
        printed.contains("plaintext_len: 5") && !printed.contains("later"),
        "{printed}"
    );
    let plain = public::seal(&parties.producer, b"now", &context).unwrap();
    assert_eq!(
        public::open(&parties.consumer, &plain, &context)
            .unwrap()
            .not_before(),
        None
    );
}

#[test]
fn every_seal_gets_a_fresh_envelope_id_and_ephemeral_key() {
    let parties = public_parties(Kem::X25519HkdfSha256);
    let context = Context::new("q");
    let mut ids = HashSet::new();
    let mut encs = HashSet::new();
    for _ in 0..200 {
        let envelope = public::seal(&parties.producer, b"same", &context).unwrap();
        let header = public::peek_header(&envelope).unwrap();
        ids.insert(header.envelope_id);
        encs.insert(envelope[header.header_len - 32..header.header_len].to_vec());
    }
    assert_eq!((ids.len(), encs.len()), (200, 200));
}

#[test]
fn versions_1_and_2_open_side_by_side_and_refuse_each_other() {
    let parties = public_parties(Kem::X25519HkdfSha256);
    let shared = keyset();
    let context = Context::new("q");
    let v1 = queue_crypto::seal(&shared, b"one", &context).unwrap();
    let v2 = public::seal(&parties.producer, b"two", &context).unwrap();
    // The caller dispatches on the version byte.
    let open_any = |envelope: &[u8]| match envelope_version(envelope) {
        Some(1) => queue_crypto::open(&shared, envelope, &context).map(|o| o.into_plaintext()),
        Some(2) => public::open(&parties.consumer, envelope, &context).map(|o| o.into_plaintext()),
        _ => Err(CryptoError::Malformed("not an envelope")),
    };
    assert_eq!(open_any(&v1).unwrap(), b"one");
    assert_eq!(open_any(&v2).unwrap(), b"two");
    assert_eq!(
        queue_crypto::open(&shared, &v2, &context).unwrap_err(),
        CryptoError::UnsupportedVersion(2)
    );
    assert_eq!(
        public::open(&parties.consumer, &v1, &context).unwrap_err(),
        CryptoError::UnsupportedVersion(1)
    );
    assert_eq!(
        queue_crypto::peek_header(&v2).unwrap_err(),
        CryptoError::UnsupportedVersion(2)
    );
}

#[test]
fn recipient_rotation_opens_by_id_and_retirement_refuses() {
    let context = Context::new("q");
    let kem = Kem::XWing;
    let old = || recipient_pair("old", kem, 1, KeyState::Active);
    let new = || recipient_pair("new", kem, 2, KeyState::Primary);
    let me = || signer("s", 9, KeyState::Primary);
    // Step 1 of a rotation: the consumer adds "new" (both open); step 2: producers seal to it.
    let consumer = ConsumerKeyset::new([old(), new()], [me().public_key()]).unwrap();
    // The producer's view before step 2: "old" is the primary it seals to.
    let old_public = old().public_key();
    let old_primary =
        RecipientPublicKey::new(id("old"), kem, old_public.as_bytes(), KeyState::Primary).unwrap();
    let before = ProducerKeyset::new([old_primary], [me()]).unwrap();
    let after = ProducerKeyset::new([new().public_key()], [me()]).unwrap();
    let sealed_before = public::seal(&before, b"a", &context).unwrap();
    let sealed_after = public::seal(&after, b"b", &context).unwrap();
    let opened = |consumer: &ConsumerKeyset, envelope: &[u8]| {
        public::open(consumer, envelope, &context).map(|o| o.recipient_key_id().to_string())
    };
    assert_eq!(opened(&consumer, &sealed_before).unwrap(), "old");
    assert_eq!(opened(&consumer, &sealed_after).unwrap(), "new");
    // Step 3: "old" retired on the consumer.
    let retired = ConsumerKeyset::new(
        [recipient_pair("old", kem, 1, KeyState::Retired), new()],
        [me().public_key()],
    )
    .unwrap();
    assert_eq!(
        opened(&retired, &sealed_before).unwrap_err(),
        CryptoError::RetiredKey("old".into())
    );
    assert_eq!(opened(&retired, &sealed_after).unwrap(), "new");
    // A consumer that never had the key.
    let stranger = ConsumerKeyset::new([new()], [me().public_key()]).unwrap();
    assert_eq!(
        opened(&stranger, &sealed_before).unwrap_err(),
        CryptoError::UnknownKeyId("old".into())
    );
}

#[test]
fn sender_rotation_and_the_trust_list() {
    let context = Context::new("q");
    let pair = || recipient_pair("r", Kem::X25519HkdfSha256, 1, KeyState::Primary);
    let old = signer("s-old", 1, KeyState::Primary);
    let new = signer("s-new", 2, KeyState::Primary);
    let sealed_old = public::seal(
        &ProducerKeyset::new([pair().public_key()], [old]).unwrap(),
        b"a",
        &context,
    )
    .unwrap();
    let sealed_new = public::seal(
        &ProducerKeyset::new([pair().public_key()], [new]).unwrap(),
        b"b",
        &context,
    )
    .unwrap();
    let trusting = |keys: Vec<SenderPublicKey>| ConsumerKeyset::new([pair()], keys).unwrap();
    let old_pub = |state| {
        SenderPublicKey::new(
            id("s-old"),
            signer("s-old", 1, state).public_key().as_bytes(),
            state,
        )
        .unwrap()
    };
    let new_pub = signer("s-new", 2, KeyState::Active).public_key();
    // Both trusted (step 1 and 2 of a sender rotation): both open, and say who sealed.
    let both = trusting(vec![old_pub(KeyState::Active), new_pub.clone()]);
    assert_eq!(
        public::open(&both, &sealed_old, &context)
            .unwrap()
            .sender_key_id()
            .as_str(),
        "s-old"
    );
    assert!(public::open(&both, &sealed_new, &context).is_ok());
    // Step 3: the old sender key retired.
    let retired = trusting(vec![old_pub(KeyState::Retired), new_pub.clone()]);
    assert_eq!(
        public::open(&retired, &sealed_old, &context).unwrap_err(),
        CryptoError::RetiredSender("s-old".into())
    );
    // Not in the trust list at all.
    let only_new = trusting(vec![new_pub]);
    assert_eq!(
        public::open(&only_new, &sealed_old, &context).unwrap_err(),
        CryptoError::UntrustedSender("s-old".into())
    );
}

#[test]
fn a_keyset_without_primaries_does_not_seal() {
    let context = Context::new("q");
    let pair = recipient_pair("r", Kem::X25519HkdfSha256, 1, KeyState::Active);
    let no_recipient =
        ProducerKeyset::new([pair.public_key()], [signer("s", 1, KeyState::Primary)]).unwrap();
    assert_eq!(
        public::seal(&no_recipient, b"x", &context).unwrap_err(),
        CryptoError::NoPrimaryKey
    );
    let primary = recipient_pair("r", Kem::X25519HkdfSha256, 1, KeyState::Primary);
    let no_signer =
        ProducerKeyset::new([primary.public_key()], [signer("s", 1, KeyState::Active)]).unwrap();
    assert_eq!(
        public::seal(&no_signer, b"x", &context).unwrap_err(),
        CryptoError::NoSigningKey
    );
}

#[test]
fn not_after_of_either_key_stops_sealing_and_refuses_later_seal_times() {
    let context = Context::new("q");
    let at = |ms| Sealer::new().with_clock(Arc::new(FixedClock(millis(ms))));
    let pair = || recipient_pair("r", Kem::X25519HkdfSha256, 1, KeyState::Primary);
    let me = || signer("s", 1, KeyState::Primary);
    let unbounded = ProducerKeyset::new([pair().public_key()], [me()]).unwrap();
    let late = at(3_000).seal(&unbounded, b"x", &context).unwrap();
    let early = at(1_000).seal(&unbounded, b"x", &context).unwrap();

    // The sender key bounded.
    let producer =
        ProducerKeyset::new([pair().public_key()], [me().with_not_after(millis(2_000))]).unwrap();
    assert_eq!(
        at(3_000).seal(&producer, b"x", &context).unwrap_err(),
        CryptoError::KeyExpired("s".into())
    );
    let consumer =
        ConsumerKeyset::new([pair()], [me().public_key().with_not_after(millis(2_000))]).unwrap();
    assert!(public::open(&consumer, &early, &context).is_ok());
    assert_eq!(
        public::open(&consumer, &late, &context).unwrap_err(),
        CryptoError::KeyExpired("s".into())
    );

    // The recipient key bounded.
    let producer =
        ProducerKeyset::new([pair().public_key().with_not_after(millis(2_000))], [me()]).unwrap();
    assert_eq!(
        at(3_000).seal(&producer, b"x", &context).unwrap_err(),
        CryptoError::KeyExpired("r".into())
    );
    let consumer =
        ConsumerKeyset::new([pair().with_not_after(millis(2_000))], [me().public_key()]).unwrap();
    assert!(public::open(&consumer, &early, &context).is_ok());
    assert_eq!(
        public::open(&consumer, &late, &context).unwrap_err(),
        CryptoError::KeyExpired("r".into())
    );
}

#[test]
fn keysets_are_checked() {
    let pair = |name: &str, state| recipient_pair(name, Kem::X25519HkdfSha256, 1, state);
    let me = |name: &str, state| signer(name, 1, state);
    let error = |result: Result<(), CryptoError>| result.unwrap_err().to_string();
    let producer = |recipients: Vec<RecipientPublicKey>, signers: Vec<SenderSigningKey>| {
        ProducerKeyset::new(recipients, signers).map(|_| ())
    };
    let consumer = |pairs: Vec<RecipientKeyPair>, trusted: Vec<SenderPublicKey>| {
        ConsumerKeyset::new(pairs, trusted).map(|_| ())
    };
    let p = pair("a", KeyState::Primary).public_key();
    assert!(error(producer(vec![], vec![me("s", KeyState::Primary)])).contains("at least one"));
    assert!(error(producer(vec![p.clone()], vec![])).contains("at least one"));
    assert!(
        error(producer(
            vec![p.clone(), pair("a", KeyState::Active).public_key()],
            vec![me("s", KeyState::Primary)]
        ))
        .contains("twice")
    );
    assert!(
        error(producer(
            vec![p.clone()],
            vec![me("s", KeyState::Primary), me("t", KeyState::Primary)]
        ))
        .contains("at most one primary")
    );
    let trusted = me("s", KeyState::Primary).public_key();
    assert!(error(consumer(vec![], vec![trusted.clone()])).contains("at least one"));
    assert!(error(consumer(vec![pair("a", KeyState::Primary)], vec![])).contains("at least one"));
    assert!(
        error(consumer(
            vec![pair("a", KeyState::Primary), pair("b", KeyState::Primary)],
            vec![trusted.clone()]
        ))
        .contains("at most one primary")
    );
    // Several senders are trusted at once: the trust list takes any number of primaries.
    assert!(
        consumer(
            vec![pair("a", KeyState::Primary)],
            vec![trusted, me("t", KeyState::Primary).public_key()]
        )
        .is_ok()
    );
}

#[test]
fn keys_are_checked_and_round_trip_through_their_bytes() {
    for kem in KEMS {
        let pair = RecipientKeyPair::generate(id("r"), kem, KeyState::Primary).unwrap();
        assert_eq!(pair.public_key().as_bytes().len(), kem.public_key_len());
        let again = RecipientKeyPair::from_private_key(
            id("r"),
            kem,
            pair.expose_private_key(),
            KeyState::Active,
        )
        .unwrap();
        assert_eq!(again.public_key().as_bytes(), pair.public_key().as_bytes());
        let public = RecipientPublicKey::new(
            id("r"),
            kem,
            pair.public_key().as_bytes(),
            KeyState::Primary,
        )
        .unwrap();
        assert_eq!(public.as_bytes(), pair.public_key().as_bytes());
        for len in [0, 31, 33, kem.public_key_len() + 1] {
            assert!(matches!(
                RecipientPublicKey::new(id("r"), kem, &vec![9; len], KeyState::Primary),
                Err(CryptoError::InvalidKey(_))
            ));
        }
        assert!(matches!(
            RecipientKeyPair::from_private_key(id("r"), kem, &[1; 31], KeyState::Primary),
            Err(CryptoError::InvalidKey(_))
        ));
    }
    let a = RecipientKeyPair::generate(id("a"), Kem::XWing, KeyState::Primary).unwrap();
    let b = RecipientKeyPair::generate(id("b"), Kem::XWing, KeyState::Primary).unwrap();
    assert_ne!(a.expose_private_key(), b.expose_private_key());

    let signing = SenderSigningKey::generate(id("s"), KeyState::Primary).unwrap();
    let again =
        SenderSigningKey::from_seed(id("s"), signing.expose_seed(), KeyState::Primary).unwrap();
    assert_eq!(again.public_key(), signing.public_key());
    assert!(SenderSigningKey::from_seed(id("s"), &[1; 31], KeyState::Primary).is_err());
    assert!(SenderPublicKey::new(id("s"), &[1; 33], KeyState::Primary).is_err());
}

#[test]
fn debug_never_shows_private_keys() {
    let pair = recipient_pair("r", Kem::X25519HkdfSha256, 0xAB, KeyState::Primary);
    let signing = signer("s", 0xCD, KeyState::Primary);
    let private_hex = [
        hex::encode(pair.expose_private_key()),
        hex::encode(signing.expose_seed()),
    ];
    let consumer = ConsumerKeyset::new(
        [recipient_pair(
            "r",
            Kem::X25519HkdfSha256,
            0xAB,
            KeyState::Primary,
        )],
        [signing.public_key()],
    )
    .unwrap();
    let producer = ProducerKeyset::new([pair.public_key()], [signing]).unwrap();
    let printed = format!(
        "{pair:?} {consumer:?} {producer:#?} {:?}",
        producer.primary_signer()
    );
    assert!(printed.contains("REDACTED"), "{printed}");
    for secret in private_hex {
        assert!(!printed.contains(&secret), "{printed}");
    }
    assert!(
        !printed.contains("171") && !printed.contains("205"),
        "{printed}"
    );
}

#[test]
fn limits_context_and_short_inputs() {
    let parties = public_parties(Kem::X25519HkdfSha256);
    let context = Context::new("q");
    let too_big = vec![0_u8; MAX_PLAINTEXT_LEN + 1];
    assert_eq!(
        public::seal(&parties.producer, &too_big, &context).unwrap_err(),
        CryptoError::TooLarge {
            what: "plaintext",
            size: MAX_PLAINTEXT_LEN + 1,
            max: MAX_PLAINTEXT_LEN
        }
    );
    let envelope = public::seal(&parties.producer, b"x", &context).unwrap();
    let header_len = public::peek_header(&envelope).unwrap().header_len;
    let mut long = envelope.clone();
    long.resize(
        header_len + MAX_PLAINTEXT_LEN + 1 + TAG_LEN + SIGNATURE_LEN,
        0,
    );
    assert!(long.len() <= public::MAX_ENVELOPE_LEN);
    assert!(matches!(
        public::open(&parties.consumer, &long, &context).unwrap_err(),
        CryptoError::TooLarge {
            what: "plaintext",
            ..
        }
    ));
    long.resize(public::MAX_ENVELOPE_LEN + 1, 0);
    assert!(matches!(
        public::open(&parties.consumer, &long, &context).unwrap_err(),
        CryptoError::TooLarge {
            what: "envelope",
            ..
        }
    ));
    // The caller's context first, whatever the envelope.
    for input in [&b"junk"[..], &envelope] {
        assert!(matches!(
            public::open(&parties.consumer, input, &Context::new("")).unwrap_err(),
            CryptoError::InvalidContext(_)
        ));
    }
    // Short inputs: Malformed until the 9-byte prefix is complete.
    for len in 0..9 {
        assert!(
            matches!(
                public::open(&parties.consumer, &envelope[..len], &context),
                Err(CryptoError::Malformed(_))
            ),
            "{len} bytes"
        );
    }
}

#[test]
fn a_random_source_that_runs_dry_is_an_error() {
    let parties = public_parties(Kem::XWing);
    let context = Context::new("q");
    // 32 bytes for the envelope id, then 64 for the X-Wing eseed: 95 are not enough.
    let short = Sealer::new().with_random_source(Arc::new(ScriptedRandom::new(vec![7; 95])));
    assert_eq!(
        short.seal(&parties.producer, b"x", &context).unwrap_err(),
        CryptoError::Random
    );
    let exact = Sealer::new().with_random_source(Arc::new(ScriptedRandom::new(vec![7; 96])));
    let envelope = exact.seal(&parties.producer, b"x", &context).unwrap();
    assert_eq!(public::peek_header(&envelope).unwrap().envelope_id, [7; 32]);
    assert!(public::open(&parties.consumer, &envelope, &context).is_ok());
}

#[test]
fn the_aead_choice_is_the_sealers_and_the_kem_the_recipients() {
    let parties = public_parties(Kem::XWing);
    let sealer = Sealer::new().with_aead(Suite::ChaCha20Poly1305);
    assert_eq!(sealer.aead(), Suite::ChaCha20Poly1305);
    let envelope = sealer
        .seal(&parties.producer, b"x", &Context::new("q"))
        .unwrap();
    assert_eq!(public::peek_header(&envelope).unwrap().suite.id(), 4);
}

#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ProducerKeyset>();
    check::<ConsumerKeyset>();
    check::<Sealer>();
    check::<public::Opened>();
    check::<RecipientPublicKey>();
    check::<SenderPublicKey>();
}
