#!/usr/bin/env python3
"""An independent implementation of the queue-runtime envelope, version 1 (docs/envelope.md),
in Python with the `cryptography` package, checked against docs/envelope-vectors.json.

    pip install cryptography && python3 docs/envelope-reference.py

It re-seals every vector from its inputs and compares the bytes, then opens every envelope,
then checks that a changed context is refused. Written from the document, not from the Rust code.
"""
import json
import pathlib
import struct
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

MAGIC = b"\xf5QRE"
VERSION = 1
SUITES = {1: AESGCM, 2: ChaCha20Poly1305}
MESSAGE_KEY_LABEL = b"queue-runtime envelope v1 message key"
COMMITMENT_LABEL = b"queue-runtime envelope v1 key commitment"


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    mac = hmac.HMAC(salt, hashes.SHA256())
    mac.update(ikm)
    return mac.finalize()


def hkdf_expand_32(prk: bytes, info: bytes) -> bytes:
    # One block of HKDF-Expand: T(1) = HMAC(PRK, info || 0x01); 32 bytes need no more.
    mac = hmac.HMAC(prk, hashes.SHA256())
    mac.update(info + b"\x01")
    return mac.finalize()


def derive(master: bytes, envelope_id: bytes, suite: int, key_id: bytes):
    prk = hkdf_extract(envelope_id, master)
    suffix = bytes([VERSION, suite, len(key_id)]) + key_id
    return hkdf_expand_32(prk, MESSAGE_KEY_LABEL + suffix), hkdf_expand_32(prk, COMMITMENT_LABEL + suffix)


def encode_str(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack(">I", len(data)) + data


def encode_context(context: dict) -> bytes:
    out = encode_str(context["channel"])
    for field in ("session_id", "correlation_id", "content_type", "message_id"):
        value = context[field]
        out += b"\x00" if value is None else b"\x01" + encode_str(value)
    properties = sorted(context["properties"].items(), key=lambda item: item[0].encode("utf-8"))
    out += struct.pack(">I", len(properties))
    for key, value in properties:
        out += encode_str(key) + encode_str(value)
    return out


def seal(master, key_id, suite, envelope_id, sealed_at_ms, not_before_ms, context, plaintext):
    message_key, commitment = derive(master, envelope_id, suite, key_id)
    flags = 1 if not_before_ms is not None else 0
    header = MAGIC + bytes([VERSION, suite, flags, len(key_id)]) + key_id + envelope_id
    header += struct.pack(">Q", sealed_at_ms)
    if not_before_ms is not None:
        header += struct.pack(">Q", not_before_ms)
    header += commitment
    aad = header + encode_context(context)
    return header + SUITES[suite](message_key).encrypt(b"\x00" * 12, plaintext, aad)


def open_envelope(keys: dict, envelope: bytes, context: dict) -> bytes:
    if envelope[:4] != MAGIC or envelope[4] != VERSION or envelope[5] not in SUITES:
        raise ValueError("malformed")
    suite, flags, n = envelope[5], envelope[6], envelope[7]
    if flags & ~1 or not 1 <= n <= 64:
        raise ValueError("malformed")
    key_id = envelope[8 : 8 + n]
    header_len = 8 + n + 32 + 8 + (8 if flags & 1 else 0) + 32
    if len(envelope) < header_len + 16:
        raise ValueError("malformed")
    header = envelope[:header_len]
    envelope_id = envelope[8 + n : 8 + n + 32]
    message_key, commitment = derive(keys[key_id], envelope_id, suite, key_id)
    if not hmac_compare(commitment, header[-32:]):
        raise InvalidTag()
    aad = header + encode_context(context)
    return SUITES[suite](message_key).decrypt(b"\x00" * 12, envelope[header_len:], aad)


def hmac_compare(a: bytes, b: bytes) -> bool:
    import hmac as std_hmac

    return std_hmac.compare_digest(a, b)


def main() -> int:
    path = pathlib.Path(__file__).with_name("envelope-vectors.json")
    vectors = json.loads(path.read_text())["vectors"]
    for vector in vectors:
        master = bytes.fromhex(vector["key"])
        key_id = vector["key_id"].encode("ascii")
        plaintext = bytes.fromhex(vector["plaintext"])
        assert encode_context(vector["context"]).hex() == vector["context_encoding"], vector["name"]
        envelope = seal(
            master, key_id, vector["suite"], bytes.fromhex(vector["envelope_id"]),
            vector["sealed_at_ms"], vector["not_before_ms"], vector["context"], plaintext,
        )
        assert envelope.hex() == vector["envelope"], f"{vector['name']}: sealed bytes differ"
        opened = open_envelope({key_id: master}, bytes.fromhex(vector["envelope"]), vector["context"])
        assert opened == plaintext, vector["name"]
        moved = dict(vector["context"], channel=vector["context"]["channel"] + "-elsewhere")
        try:
            open_envelope({key_id: master}, envelope, moved)
            raise AssertionError(f"{vector['name']}: opened in another channel")
        except InvalidTag:
            pass
        print(f"ok  {vector['name']}")
    print(f"{len(vectors)} vectors reproduced by the Python reference implementation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
