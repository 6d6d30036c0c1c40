//! The public-key envelope against an attacker who reads and writes the queue, and against
//! producers who are trusted but try to pass for one another: everything refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use queue_crypto::public::{self, ConsumerKeyset, Kem, ProducerKeyset, SIGNATURE_LEN, Sealer};
use queue_crypto::{Context, CryptoError, KeyState, MAGIC};
use support::{KEMS, SUITES, full_context, public_parties, recipient_pair, sign_v2, signer};

fn sealed_1kib(producer: &ProducerKeyset, aead: queue_crypto::Suite) -> Vec<u8> {
    let plaintext: Vec<u8> = (0..1024_u32).map(|i| (i * 7 % 256) as u8).collect();
    Sealer::new()
        .with_aead(aead)
        .seal(producer, &plaintext, &full_context())
        .unwrap()
}

/// The header, the HPKE body (ciphertext and tag) and the signature of an envelope.
fn split(envelope: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let header_len = public::peek_header(envelope).unwrap().header_len;
    let (header, rest) = envelope.split_at(header_len);
    let (body, signature) = rest.split_at(rest.len() - SIGNATURE_LEN);
    (header, body, signature)
}

#[test]
fn flipping_any_single_bit_is_refused_in_every_suite() {
    let context = full_context();
    for kem in KEMS {
        let parties = public_parties(kem);
        for aead in SUITES {
            let envelope = sealed_1kib(&parties.producer, aead);
            assert!(public::open(&parties.consumer, &envelope, &context).is_ok());
            for bit in 0..envelope.len() * 8 {
                let mut tampered = envelope.clone();
                tampered[bit / 8] ^= 1 << (bit % 8);
                assert!(
                    public::open(&parties.consumer, &tampered, &context).is_err(),
                    "{kem:?} {aead:?}: flipping bit {bit} still opens"
                );
            }
        }
    }
}

#[test]
fn every_context_field_is_bound() {
    let parties = public_parties(Kem::X25519HkdfSha256);
    let context = full_context();
    let envelope = public::seal(&parties.producer, b"body", &context).unwrap();
    let altered = [
        ("channel", {
            let mut other = Context::new("other-queue");
            if let Some(session) = context.session_id() {
                other = other.with_session_id(session);
            }
            other
                .with_correlation_id("delivery-9")
                .with_content_type("application/json")
                .with_message_id("6f1c9c3e-5a57-4c9b-9d43-3a8c3b1e2f10")
                .with_properties(context.properties().clone())
        }),
        ("session id", context.clone().with_session_id("repo/124")),
        ("correlation id", context.clone().with_correlation_id("x")),
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
        ("empty property", context.clone().with_property("", "")),
        (
            "session only",
            Context::new("pr-events").with_session_id("repo/123"),
        ),
    ];
    for (field, other) in altered {
        assert_ne!(other, context, "{field}: the test must change something");
        assert_eq!(
            public::open(&parties.consumer, &envelope, &other).unwrap_err(),
            CryptoError::DecryptFailed,
            "{field}"
        );
    }
}

#[test]
fn swapped_signatures_are_refused() {
    let parties = public_parties(Kem::X25519HkdfSha256);
    let context = full_context();
    let first = public::seal(&parties.producer, b"first", &context).unwrap();
    let second = public::seal(&parties.producer, b"other", &context).unwrap();
    let (header, body, _) = split(&first);
    let (_, _, other_signature) = split(&second);
    let swapped = [header, body, other_signature].concat();
    assert_eq!(
        public::open(&parties.consumer, &swapped, &context).unwrap_err(),
        CryptoError::DecryptFailed
    );
    // The other message's body under the first one's header and signature.
    let (_, other_body, _) = split(&second);
    let (_, _, signature) = split(&first);
    let spliced = [header, other_body, signature].concat();
    assert_eq!(
        public::open(&parties.consumer, &spliced, &context).unwrap_err(),
        CryptoError::DecryptFailed
    );
}

#[test]
fn a_message_re_signed_by_another_trusted_sender_is_refused() {
    // s-other is trusted by the consumer, and takes s-primary's envelope from the queue.
    let context = full_context();
    for kem in KEMS {
        let parties = public_parties(kem);
        let envelope = public::seal(&parties.producer, b"from s-primary", &context).unwrap();
        let (header, body, _) = split(&envelope);
        let other_seed = [12; 32];

        // Its own signature, the header still naming s-primary: the signature does not verify.
        let kept_name = [header, body, &sign_v2(&other_seed, header, &context, body)].concat();
        assert_eq!(
            public::open(&parties.consumer, &kept_name, &context).unwrap_err(),
            CryptoError::DecryptFailed
        );

        // Its own name in the header and its own signature: the signature verifies, but the
        // sender id is in HPKE's associated data, so the ciphertext no longer authenticates
        // (and s-other cannot re-encrypt: it cannot read the plaintext).
        let renamed_header = rename_sender(header, b"s-other");
        let renamed = [
            &renamed_header[..],
            body,
            &sign_v2(&other_seed, &renamed_header, &context, body),
        ]
        .concat();
        assert_eq!(
            public::peek_header(&renamed).unwrap().sender_key_id,
            "s-other"
        );
        assert_eq!(
            public::open(&parties.consumer, &renamed, &context).unwrap_err(),
            CryptoError::DecryptFailed
        );

        // And it cannot make a fresh one claiming to be s-primary: its key signs as itself.
        let impostor = ProducerKeyset::new(
            [parties.consumer.primary_key_pair().unwrap().public_key()],
            [signer("s-primary", 12, KeyState::Primary)],
        )
        .unwrap();
        let forged = public::seal(&impostor, b"forged", &context).unwrap();
        assert_eq!(
            public::open(&parties.consumer, &forged, &context).unwrap_err(),
            CryptoError::DecryptFailed
        );
        // Sealing as itself works, and says so.
        let honest = public::seal(&parties.other_producer, b"from s-other", &context).unwrap();
        assert_eq!(
            public::open(&parties.consumer, &honest, &context)
                .unwrap()
                .sender_key_id()
                .as_str(),
            "s-other"
        );
    }
}

/// The header with another sender key id (same layout, lengths adjusted).
fn rename_sender(header: &[u8], sender: &[u8]) -> Vec<u8> {
    let recipient_len = usize::from(header[7]);
    let sender_len = usize::from(header[8]);
    let mut out = header[..9].to_vec();
    out[8] = sender.len() as u8;
    out.extend_from_slice(&header[9..9 + recipient_len]);
    out.extend_from_slice(sender);
    out.extend_from_slice(&header[9 + recipient_len + sender_len..]);
    out
}

#[test]
fn a_message_sealed_to_another_queues_key_is_refused() {
    let context = full_context();
    let parties = public_parties(Kem::X25519HkdfSha256);
    let me = || signer("s-primary", 11, KeyState::Primary);
    // Queue B's key has another id: the consumer of queue A has no such key.
    let queue_b = recipient_pair("b-primary", Kem::X25519HkdfSha256, 40, KeyState::Primary);
    let to_b = ProducerKeyset::new([queue_b.public_key()], [me()]).unwrap();
    let envelope = public::seal(&to_b, b"for queue b", &context).unwrap();
    assert_eq!(
        public::open(&parties.consumer, &envelope, &context).unwrap_err(),
        CryptoError::UnknownKeyId("b-primary".into())
    );
    // Queue B's key under queue A's key id (a misconfigured or malicious producer): signed by a
    // trusted sender, but it does not decapsulate under A's private key.
    let same_id = recipient_pair("r-primary", Kem::X25519HkdfSha256, 40, KeyState::Primary);
    let to_b = ProducerKeyset::new([same_id.public_key()], [me()]).unwrap();
    let envelope = public::seal(&to_b, b"for queue b", &context).unwrap();
    assert_eq!(
        public::open(&parties.consumer, &envelope, &context).unwrap_err(),
        CryptoError::DecryptFailed
    );
    // A key of the other KEM under the same id: refused the same way.
    let xwing = recipient_pair("r-primary", Kem::XWing, 1, KeyState::Primary);
    let to_xwing = ProducerKeyset::new([xwing.public_key()], [me()]).unwrap();
    let envelope = public::seal(&to_xwing, b"x", &context).unwrap();
    assert_eq!(
        public::open(&parties.consumer, &envelope, &context).unwrap_err(),
        CryptoError::DecryptFailed
    );
}

#[test]
fn a_producer_key_opens_nothing() {
    // What a producer holds: public recipient keys and its signing key. The only way to open is
    // a ConsumerKeyset, which takes recipient key pairs; a producer can build one only from a
    // private key it does not have. A consumer keyset made from the producer's own signing seed
    // used as a recipient private key (the only secret it has) opens nothing.
    let parties = public_parties(Kem::X25519HkdfSha256);
    let context = full_context();
    let envelope = public::seal(&parties.producer, b"secret", &context).unwrap();
    let seed = *parties.producer.primary_signer().unwrap().expose_seed();
    let guess = queue_crypto::public::RecipientKeyPair::from_private_key(
        queue_crypto::KeyId::new("r-primary").unwrap(),
        Kem::X25519HkdfSha256,
        &seed,
        KeyState::Primary,
    )
    .unwrap();
    let attempt = ConsumerKeyset::new(
        [guess],
        [parties.producer.primary_signer().unwrap().public_key()],
    )
    .unwrap();
    assert_eq!(
        public::open(&attempt, &envelope, &context).unwrap_err(),
        CryptoError::DecryptFailed
    );
}

#[test]
fn truncation_at_every_length_and_extension_are_refused() {
    let context = full_context();
    for kem in KEMS {
        let parties = public_parties(kem);
        let envelope = sealed_1kib(&parties.producer, queue_crypto::Suite::Aes256Gcm);
        for len in 0..envelope.len() {
            assert!(
                public::open(&parties.consumer, &envelope[..len], &context).is_err(),
                "{kem:?} truncated to {len}"
            );
        }
        let mut extended = envelope.clone();
        extended.push(0);
        assert_eq!(
            public::open(&parties.consumer, &extended, &context).unwrap_err(),
            CryptoError::DecryptFailed
        );
    }
}

#[test]
fn header_errors_are_distinct_for_operators() {
    let parties = public_parties(Kem::X25519HkdfSha256);
    let context = Context::new("q");
    let envelope = public::seal(&parties.producer, b"x", &context).unwrap();
    let with = |index: usize, value: u8| {
        let mut bytes = envelope.clone();
        bytes[index] = value;
        public::open(&parties.consumer, &bytes, &context).unwrap_err()
    };
    assert_eq!(with(4, 3), CryptoError::UnsupportedVersion(3));
    assert_eq!(with(5, 9), CryptoError::UnsupportedSuite(9));
    assert_eq!(with(5, 0), CryptoError::UnsupportedSuite(0));
    assert!(matches!(with(6, 0b10), CryptoError::Malformed(_)));
    assert!(matches!(with(7, 0), CryptoError::Malformed(_)));
    assert!(matches!(with(8, 65), CryptoError::Malformed(_)));
    assert!(matches!(with(9, b' '), CryptoError::Malformed(_)));
    assert!(matches!(with(0, b'{'), CryptoError::Malformed(_)));
    // The other X25519 suite: structurally fine, refused by the signature.
    assert_eq!(with(5, 2), CryptoError::DecryptFailed);
    // An X-Wing suite byte makes the header longer than the envelope holds.
    assert!(matches!(with(5, 3), CryptoError::Malformed(_)));
    // Names that are not in the keyset are named.
    assert_eq!(with(9, b'R'), CryptoError::UnknownKeyId("R-primary".into()));
    assert_eq!(
        with(18, b'S'),
        CryptoError::UntrustedSender("S-primary".into())
    );
    // A retired sender.
    let (header, body, _) = split(&envelope);
    let renamed = rename_sender(header, b"s-retired");
    let by_retired = [
        &renamed[..],
        body,
        &sign_v2(&[13; 32], &renamed, &context, body),
    ]
    .concat();
    assert_eq!(
        public::open(&parties.consumer, &by_retired, &context).unwrap_err(),
        CryptoError::RetiredSender("s-retired".into())
    );
}

#[test]
fn a_plaintext_starting_with_the_magic_and_version_2_never_opens() {
    let parties = public_parties(Kem::X25519HkdfSha256);
    let context = Context::new("q");
    for rest in [
        &b""[..],
        b"\x02",
        b"\x02\x01\x00\x09\x09r-primarys-primary",
        &[0x02; 400][..],
    ] {
        let body = [&MAGIC[..], rest].concat();
        assert!(queue_crypto::looks_sealed(&body));
        assert!(
            public::open(&parties.consumer, &body, &context).is_err(),
            "{body:?}"
        );
    }
}
