#!/usr/bin/env python3
"""An independent implementation of the queue-runtime envelope (docs/envelope.md), versions 1
and 2, in Python, checked against docs/envelope-vectors.json.

    pip install cryptography pyhpke && python3 docs/envelope-reference.py

Version 1 uses the `cryptography` package. Version 2 uses `pyhpke` for HPKE (RFC 9180) and
`cryptography` for Ed25519 and SHA-256. pyhpke has no X-Wing KEM, and no maintained Python
package on PyPI offers X-Wing within HPKE, so the X-Wing vectors (suites 3 and 4) are skipped
here, and said so; the Rust test suite checks them against the `hpke` crate's own API and the
draft's published vectors.

For every vector it re-seals from the inputs and compares the bytes, opens the envelope, and
checks that a changed context is refused; every negative vector must be refused with the error
it names. Opening follows the document's order of checks. Written from the document, not from
the Rust code.
"""
import hashlib
import hmac as std_hmac
import json
import pathlib
import struct
import sys

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from pyhpke import AEADId, CipherSuite, KDFId, KEMId
from pyhpke.exceptions import OpenError

MAGIC = b"\xf5QRE"
V1_SUITES = {1: AESGCM, 2: ChaCha20Poly1305}
MESSAGE_KEY_LABEL = b"queue-runtime envelope v1 message key"
COMMITMENT_LABEL = b"queue-runtime envelope v1 key commitment"
MAX_PLAINTEXT = 100 * 1024 * 1024
MAX_CONTEXT = 1024 * 1024
V1_MAX_HEADER = 152
V2_MAX_HEADER = 1305
TAG = 16
SIGNATURE = 64
HPKE_INFO = b"queue-runtime envelope v2"
SIGNATURE_LABEL = b"queue-runtime envelope v2 signature"
# Version 2 suites: (KEM, enc length, AEAD); only the X25519 ones are available here.
V2_SUITES = {
    1: ("x25519", 32, AEADId.AES256_GCM),
    2: ("x25519", 32, AEADId.CHACHA20_POLY1305),
    3: ("x-wing", 1120, AEADId.AES256_GCM),
    4: ("x-wing", 1120, AEADId.CHACHA20_POLY1305),
}


class Refused(Exception):
    """An envelope refused, with the document's name of the error."""

    def __init__(self, error: str):
        super().__init__(error)
        self.error = error


# --- The bound context ---------------------------------------------------------------------------


def encode_str(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack(">I", len(data)) + data


def encode_context(context: dict) -> bytes:
    """The canonical encoding. A JSON null is an absent field (00), never an empty string."""
    if context["channel"] == "":
        raise Refused("InvalidContext")
    out = encode_str(context["channel"])
    for field in ("session_id", "correlation_id", "content_type", "message_id"):
        value = context[field]
        out += b"\x00" if value is None else b"\x01" + encode_str(value)
    # Keys ascending by their UTF-8 bytes (not by UTF-16 code units, not by locale).
    properties = sorted(context["properties"].items(), key=lambda item: item[0].encode("utf-8"))
    out += struct.pack(">I", len(properties))
    for key, value in properties:
        out += encode_str(key) + encode_str(value)
    if len(out) > MAX_CONTEXT:
        raise Refused("TooLarge")
    return out


# --- Version 1 -----------------------------------------------------------------------------------


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    mac = hmac.HMAC(salt, hashes.SHA256())
    mac.update(ikm)
    return mac.finalize()


def hkdf_expand_32(prk: bytes, info: bytes) -> bytes:
    # One block of HKDF-Expand: T(1) = HMAC(PRK, info || 0x01); the counter is one byte.
    mac = hmac.HMAC(prk, hashes.SHA256())
    mac.update(info + b"\x01")
    return mac.finalize()


def derive(master: bytes, envelope_id: bytes, suite: int, key_id: bytes):
    prk = hkdf_extract(envelope_id, master)
    suffix = bytes([1, suite, len(key_id)]) + key_id
    return hkdf_expand_32(prk, MESSAGE_KEY_LABEL + suffix), hkdf_expand_32(prk, COMMITMENT_LABEL + suffix)


def seal_v1(master, key_id, suite, envelope_id, sealed_at_ms, not_before_ms, context, plaintext):
    aad_context = encode_context(context)
    message_key, commitment = derive(master, envelope_id, suite, key_id)
    flags = 1 if not_before_ms is not None else 0
    header = MAGIC + bytes([1, suite, flags, len(key_id)]) + key_id + envelope_id
    header += struct.pack(">Q", sealed_at_ms)
    if not_before_ms is not None:
        header += struct.pack(">Q", not_before_ms)
    header += commitment
    return header + V1_SUITES[suite](message_key).encrypt(b"\x00" * 12, plaintext, header + aad_context)


def printable(key_id: bytes) -> bool:
    return all(0x21 <= byte <= 0x7E for byte in key_id)


def check_prefix(envelope: bytes, max_len: int, prefix_len: int):
    if len(envelope) > max_len:
        raise Refused("TooLarge")
    if envelope[:4] != MAGIC[: len(envelope)]:
        raise Refused("Malformed")
    if len(envelope) < prefix_len:
        raise Refused("Malformed")


def open_v1(keys: dict, envelope: bytes, context: dict) -> bytes:
    aad_context = encode_context(context)
    check_prefix(envelope, V1_MAX_HEADER + MAX_PLAINTEXT + TAG, 8)
    version, suite, flags, n = envelope[4:8]
    if version != 1:
        raise Refused("UnsupportedVersion")
    if suite not in V1_SUITES:
        raise Refused("UnsupportedSuite")
    if flags & ~1 or not 1 <= n <= 64:
        raise Refused("Malformed")
    header_len = 8 + n + 32 + 8 + (8 if flags & 1 else 0) + 32
    if len(envelope) < header_len + TAG or not printable(envelope[8 : 8 + n]):
        raise Refused("Malformed")
    if len(envelope) - header_len - TAG > MAX_PLAINTEXT:
        raise Refused("TooLarge")
    key_id = envelope[8 : 8 + n]
    if key_id not in keys:
        raise Refused("UnknownKeyId")
    header = envelope[:header_len]
    message_key, commitment = derive(keys[key_id], envelope[8 + n : 8 + n + 32], suite, key_id)
    if not std_hmac.compare_digest(commitment, header[-32:]):
        raise Refused("DecryptFailed")
    try:
        return V1_SUITES[suite](message_key).decrypt(b"\x00" * 12, envelope[header_len:], header + aad_context)
    except InvalidTag:
        raise Refused("DecryptFailed") from None


# --- Version 2 -----------------------------------------------------------------------------------


def hpke_suite(suite: int) -> CipherSuite:
    kem, _, aead = V2_SUITES[suite]
    if kem != "x25519":
        raise NotImplementedError("X-Wing: not available in pyhpke")
    return CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, aead)


def v2_header(suite, recipient_id, sender_id, envelope_id, sealed_at_ms, not_before_ms, enc) -> bytes:
    flags = 1 if not_before_ms is not None else 0
    header = MAGIC + bytes([2, suite, flags, len(recipient_id), len(sender_id)])
    header += recipient_id + sender_id + envelope_id + struct.pack(">Q", sealed_at_ms)
    if not_before_ms is not None:
        header += struct.pack(">Q", not_before_ms)
    return header + enc


def signed_message(header: bytes, aad_context: bytes, body: bytes) -> bytes:
    return SIGNATURE_LABEL + header + aad_context + hashlib.sha256(body).digest()


def seal_v2(vector: dict) -> bytes:
    suite = hpke_suite(vector["suite"])
    aad_context = encode_context(vector["context"])
    pkr = suite.kem.deserialize_public_key(bytes.fromhex(vector["recipient_public_key"]))
    # The vectors fix the ephemeral key pair: DeriveKeyPair(ikmE), RFC 9180 section 7.1.3.
    eks = suite.kem.derive_key_pair(bytes.fromhex(vector["ephemeral_randomness"]))
    enc, sender = suite.create_sender_context(pkr, HPKE_INFO, eks=eks)
    header = v2_header(
        vector["suite"],
        vector["recipient_key_id"].encode("ascii"),
        vector["sender_key_id"].encode("ascii"),
        bytes.fromhex(vector["envelope_id"]),
        vector["sealed_at_ms"],
        vector["not_before_ms"],
        enc,
    )
    body = sender.seal(bytes.fromhex(vector["plaintext"]), header + aad_context)
    signing = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vector["sender_seed"]))
    return header + body + signing.sign(signed_message(header, aad_context, body))


def open_v2(recipients: dict, trusted: dict, envelope: bytes, context: dict) -> bytes:
    """recipients: key id -> (suite KEM name, private key bytes); trusted: key id -> (public
    key bytes, state)."""
    aad_context = encode_context(context)
    check_prefix(envelope, V2_MAX_HEADER + MAX_PLAINTEXT + TAG + SIGNATURE, 9)
    version, suite, flags, r, s = envelope[4:9]
    if version != 2:
        raise Refused("UnsupportedVersion")
    if suite not in V2_SUITES:
        raise Refused("UnsupportedSuite")
    if flags & ~1 or not 1 <= r <= 64 or not 1 <= s <= 64:
        raise Refused("Malformed")
    enc_len = V2_SUITES[suite][1]
    header_len = 9 + r + s + 32 + 8 + (8 if flags & 1 else 0) + enc_len
    recipient_id, sender_id = envelope[9 : 9 + r], envelope[9 + r : 9 + r + s]
    if len(envelope) < header_len + TAG + SIGNATURE or not printable(recipient_id) or not printable(sender_id):
        raise Refused("Malformed")
    if len(envelope) - header_len - TAG - SIGNATURE > MAX_PLAINTEXT:
        raise Refused("TooLarge")
    if recipient_id not in recipients:
        raise Refused("UnknownKeyId")
    if sender_id not in trusted:
        raise Refused("UntrustedSender")
    public_key, state = trusted[sender_id]
    if state == "retired":
        raise Refused("RetiredSender")
    header, body, signature = envelope[:header_len], envelope[header_len:-SIGNATURE], envelope[-SIGNATURE:]
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, signed_message(header, aad_context, body))
    except InvalidSignature:
        raise Refused("DecryptFailed") from None
    kem, private_key = recipients[recipient_id]
    if kem != V2_SUITES[suite][0]:
        raise Refused("DecryptFailed")
    hpke = hpke_suite(suite)
    try:
        skr = hpke.kem.deserialize_private_key(private_key)
        recipient = hpke.create_recipient_context(header[-enc_len:], skr, HPKE_INFO)
        return recipient.open(body, header + aad_context)
    except (OpenError, ValueError):
        raise Refused("DecryptFailed") from None


# --- The vectors ---------------------------------------------------------------------------------


def refused_with(expected: str, call) -> None:
    try:
        call()
    except Refused as refused:
        assert refused.error == expected, f"refused with {refused.error}, expected {expected}"
        return
    raise AssertionError(f"opened; expected {expected}")


def main() -> int:
    path = pathlib.Path(__file__).with_name("envelope-vectors.json")
    document = json.loads(path.read_text(encoding="utf-8"))

    for vector in document["vectors"]:
        master = bytes.fromhex(vector["key"])
        key_id = vector["key_id"].encode("ascii")
        plaintext = bytes.fromhex(vector["plaintext"])
        assert encode_context(vector["context"]).hex() == vector["context_encoding"], vector["name"]
        envelope = seal_v1(
            master, key_id, vector["suite"], bytes.fromhex(vector["envelope_id"]),
            vector["sealed_at_ms"], vector["not_before_ms"], vector["context"], plaintext,
        )
        assert envelope.hex() == vector["envelope"], f"{vector['name']}: sealed bytes differ"
        assert open_v1({key_id: master}, envelope, vector["context"]) == plaintext, vector["name"]
        moved = dict(vector["context"], channel=vector["context"]["channel"] + "-elsewhere")
        refused_with("DecryptFailed", lambda: open_v1({key_id: master}, envelope, moved))
        print(f"ok  v1  {vector['name']}")

    for vector in document["negative_vectors"]:
        keys = {vector["key_id"].encode("ascii"): bytes.fromhex(vector["key"])}
        envelope = bytes.fromhex(vector["envelope"])
        refused_with(vector["error"], lambda: open_v1(keys, envelope, vector["context"]))
        print(f"ok  v1  refused ({vector['error']}): {vector['name']}")

    skipped = 0
    for vector in document["public_key_vectors"]:
        kem = V2_SUITES[vector["suite"]][0]
        if kem != "x25519":
            skipped += 1
            print(f"--  v2  {vector['name']}: skipped (no X-Wing in pyhpke)")
            continue
        assert encode_context(vector["context"]).hex() == vector["context_encoding"], vector["name"]
        envelope = seal_v2(vector)
        assert envelope.hex() == vector["envelope"], f"{vector['name']}: sealed bytes differ"
        seed = bytes.fromhex(vector["sender_seed"])
        public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        assert public.hex() == vector["sender_public_key"], vector["name"]
        recipients = {vector["recipient_key_id"].encode("ascii"): (kem, bytes.fromhex(vector["recipient_private_key"]))}
        trusted = {vector["sender_key_id"].encode("ascii"): (public, "active")}
        plaintext = open_v2(recipients, trusted, envelope, vector["context"])
        assert plaintext.hex() == vector["plaintext"], vector["name"]
        moved = dict(vector["context"], channel=vector["context"]["channel"] + "-elsewhere")
        refused_with("DecryptFailed", lambda: open_v2(recipients, trusted, envelope, moved))
        print(f"ok  v2  {vector['name']}")

    for vector in document["public_key_negative_vectors"]:
        if vector["kem"] != "x25519":
            skipped += 1
            continue
        recipients = {vector["recipient_key_id"].encode("ascii"): (vector["kem"], bytes.fromhex(vector["recipient_private_key"]))}
        trusted = {
            sender["key_id"].encode("ascii"): (bytes.fromhex(sender["public_key"]), sender["state"])
            for sender in vector["trusted_senders"]
        }
        envelope = bytes.fromhex(vector["envelope"])
        refused_with(vector["error"], lambda: open_v2(recipients, trusted, envelope, vector["context"]))
        print(f"ok  v2  refused ({vector['error']}): {vector['name']}")

    total = sum(len(document[name]) for name in ("vectors", "negative_vectors", "public_key_vectors", "public_key_negative_vectors"))
    print(f"{total - skipped} vectors reproduced by the Python reference implementation, {skipped} skipped (X-Wing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
