"""C2SP signed notes and checkpoints with Ed25519 (``cryptography`` only).

* A checkpoint's body is ``<origin>\\n<tree size>\\n<base64 root hash>\\n`` (C2SP
  tlog-checkpoint); the note adds a blank line and one signature line per signer:
  ``— <name> <base64(4-byte key hash || signature)>\\n`` (golang.org/x/mod/sumdb/note).
* The key hash is the first 4 bytes of ``SHA-256(name || "\\n" || 0x01 || public key)``;
  the verifier key (``vkey``) is ``<name>+<8 hex key hash>+<base64(0x01 || public key)>``.
* Witnesses may instead use C2SP ``tlog-cosignature`` keys (type 0x04, ``cosignature/v1``):
  the signature is ``timestamp (8 bytes, big-endian) || Ed25519 signature`` of
  ``"cosignature/v1\\ntime <timestamp>\\n" || body``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = b"\x01"
ALG_COSIGNATURE = b"\x04"  # C2SP tlog-cosignature, cosignature/v1
SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space


class NoteError(ValueError):
    """A note, key or checkpoint is malformed or its signature does not verify."""


def key_hash(name: str, public_key: bytes, alg: bytes = ALG_ED25519) -> bytes:
    """The 4-byte key hash of an Ed25519 note (or cosignature/v1) key."""
    return hashlib.sha256(name.encode() + b"\n" + alg + public_key).digest()[:4]


def vkey(name: str, public_key: bytes, alg: bytes = ALG_ED25519) -> str:
    """The verifier key text ``<name>+<8 hex>+<base64(alg || key)>``."""
    encoded = base64.b64encode(alg + public_key).decode()
    return f"{name}+{key_hash(name, public_key, alg).hex()}+{encoded}"


def cosigned_message(body: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs."""
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


@dataclass(frozen=True)
class Verifier:
    """A parsed verifier key."""

    name: str
    hash: bytes
    public_key: bytes
    alg: bytes = ALG_ED25519

    def verify(self, body: str, signature: bytes) -> bool:
        """True when ``signature`` (as on its note line, after the key hash) signs ``body``."""
        message = body.encode()
        if self.alg == ALG_COSIGNATURE:
            if len(signature) != 72:
                return False
            message = cosigned_message(body, int.from_bytes(signature[:8], "big"))
            signature = signature[8:]
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def parse_vkey(text: str) -> Verifier:
    """A verifier key from its text (NoteError when malformed or its hash is wrong)."""
    name, sep, rest = text.strip().partition("+")
    hash_hex, sep2, key_b64 = rest.partition("+")
    try:
        raw = base64.b64decode(key_b64, validate=True)
        hashed = bytes.fromhex(hash_hex)
    except (binascii.Error, ValueError):
        raise NoteError("the verifier key is not <name>+<hex>+<base64>") from None
    if not (sep and sep2 and name) or len(hashed) != 4 or len(raw) != 33:
        raise NoteError("the verifier key is not <name>+<hex>+<base64>")
    alg = raw[:1]
    if alg not in (ALG_ED25519, ALG_COSIGNATURE):
        raise NoteError("the verifier key is not an Ed25519 or cosignature/v1 key")
    if key_hash(name, raw[1:], alg) != hashed:
        raise NoteError("the verifier key's hash does not match its name and key")
    return Verifier(name, hashed, raw[1:], alg)


@dataclass(frozen=True)
class Signer:
    """An Ed25519 note signer named ``name`` (from a 32-byte seed); ``alg`` 0x04 makes it a
    witness signing cosignature/v1 lines."""

    name: str
    seed: bytes
    alg: bytes = ALG_ED25519

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        key = Ed25519PrivateKey.from_private_bytes(self.seed).public_key()
        return key.public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def vkey(self) -> str:
        """The verifier key text of this signer."""
        return vkey(self.name, self.public_key, self.alg)

    def signature_line(self, body: str, timestamp: int | None = None) -> str:
        """The note signature line of ``body`` (the text up to and including its last
        newline); a cosignature/v1 carries ``timestamp`` (default now)."""
        key = Ed25519PrivateKey.from_private_bytes(self.seed)
        if self.alg == ALG_COSIGNATURE:
            stamp = int(time.time()) if timestamp is None else timestamp
            signature = stamp.to_bytes(8, "big") + key.sign(cosigned_message(body, stamp))
        else:
            signature = key.sign(body.encode())
        hashed = key_hash(self.name, self.public_key, self.alg)
        encoded = base64.b64encode(hashed + signature).decode()
        return f"{SIGNATURE_PREFIX}{self.name} {encoded}\n"

    def sign(self, body: str) -> str:
        """The signed note: ``body``, a blank line, the signature line."""
        return body + "\n" + self.signature_line(body)


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    """The C2SP checkpoint body."""
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read from a signed note, with its signature lines."""

    origin: str
    size: int
    root: bytes
    body: str
    signatures: tuple[tuple[str, bytes, bytes], ...]  # (name, key hash, signature)

    def signed_by(self, verifier: Verifier) -> bool:
        """True when one signature line is ``verifier``'s valid signature of the body."""
        return any(
            name == verifier.name
            and hashed == verifier.hash
            and verifier.verify(self.body, signature)
            for name, hashed, signature in self.signatures
        )


def parse_checkpoint(text: str) -> Checkpoint:
    """Split a signed note into its checkpoint and signature lines (NoteError if malformed;
    no signature is checked here)."""
    body, sep, sigs = text.partition("\n\n")
    if not sep or not sigs.endswith("\n"):
        raise NoteError("the note has no signature block")
    body += "\n"
    lines = body.split("\n")
    if len(lines) < 4:
        raise NoteError("the checkpoint body has fewer than three lines")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error:
        raise NoteError("the checkpoint's root hash is not base64") from None
    if not origin or not size_text.isdigit() or (size_text != "0" and size_text[0] == "0"):
        raise NoteError("the checkpoint's origin or tree size is malformed")
    if len(root) != 32:
        raise NoteError("the checkpoint's root hash is not 32 bytes")
    signatures = []
    for line in sigs[:-1].split("\n"):
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError("a signature line does not start with an em dash")
        name, _, encoded = line[len(SIGNATURE_PREFIX) :].rpartition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise NoteError("a signature is not base64") from None
        if not name or len(raw) < 5:
            raise NoteError("a signature line is malformed")
        signatures.append((name, raw[:4], raw[4:]))
    return Checkpoint(origin, int(size_text), root, body, tuple(signatures))
