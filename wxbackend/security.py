"""Keys, field encryption, keyed lookup hashes, passwords, tokens and masking.

Personal information (ID numbers, names, phones: PIPL, product rule 9) is stored encrypted
with AES-256-GCM (:class:`FieldCipher`) and matched by keyed hash (:class:`LookupHasher`,
HMAC-SHA256), never by a plain SHA/MD5 that an 18-digit ID number could be brute-forced from.

Keys come from ``security.master_key`` / ``security.old_master_keys`` / ``security.hash_key``
(standard base64 of 32 bytes). With SQLite and no key configured, each is generated once into
``<data_dir>/master.key`` / ``<data_dir>/hash.key`` (mode 0600); with PostgreSQL a missing key is
a :class:`StartupError`.

No plaintext and no key is ever logged or put into an exception message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import stat
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "DecryptionError",
    "FieldCipher",
    "Keys",
    "LookupHasher",
    "StartupError",
    "hash_password",
    "key_id",
    "load_keys",
    "mask_name",
    "mask_secret",
    "new_token",
    "normalize_id_number",
    "token_digest",
    "verify_password",
]

logger = logging.getLogger("wxbackend.security")

KEY_BYTES = 32
NONCE_BYTES = 12
MASTER_KEY_FILE = "master.key"
HASH_KEY_FILE = "hash.key"


class StartupError(Exception):
    """Keys cannot be set up: missing with PostgreSQL, or a key file unreadable or malformed.

    The message names the setting or the file, never the key.
    """


class DecryptionError(ValueError):
    """A field token cannot be decrypted: malformed, unknown key id, tampered or wrong context."""


@dataclass(frozen=True)
class Keys:
    """Raw key material (32 bytes each). ``repr`` never shows the keys."""

    master: bytes = field(repr=False)
    old_masters: tuple[bytes, ...] = field(default=(), repr=False)
    hash_key: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "old_masters", tuple(self.old_masters))
        for name, key in (("master", self.master), ("hash_key", self.hash_key)):
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise ValueError(f"Keys.{name} must be {KEY_BYTES} bytes")
        for key in self.old_masters:
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise ValueError(f"Keys.old_masters must be {KEY_BYTES} bytes each")


def key_id(key: bytes) -> str:
    """Short stable, non-secret id of a key: first 8 hex chars of sha256(b"wxb-key-id" + key)."""
    return hashlib.sha256(b"wxb-key-id" + key).hexdigest()[:8]


# --------------------------------------------------------------------------- key loading


def _decode_key(text: str) -> bytes | None:
    """Standard base64 of exactly 32 bytes, or None."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == KEY_BYTES else None


def _read_key_file(path: str, log: logging.Logger) -> bytes:
    """Read a key file; a file that is still empty (being written by another process) is
    retried briefly."""
    deadline = time.monotonic() + 2.0
    while True:
        try:
            with open(path, encoding="ascii") as fh:
                text = fh.read()
            mode = os.stat(path).st_mode
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not ASCII text"
            raise StartupError(f"cannot read key file {path}: {reason}") from None
        if text.strip() or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    key = _decode_key(text)
    if key is None:
        raise StartupError(f"key file {path} does not hold standard base64 of 32 bytes")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("key file %s is readable by others; chmod 600 it", path)
    return key


def _write_new_key_file(path: str) -> bool:
    """Create ``path`` with a fresh key, mode 0600, atomically.

    The key is written to a unique temporary file (``O_CREAT|O_EXCL``, 0600) and then hard
    linked to ``path``, which fails if ``path`` exists: of two processes starting at once
    exactly one wins, and nobody ever sees a half-written file. Returns False when ``path``
    already existed (the caller then reads it).
    """
    text = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii") + "\n"
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, text.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:
            # File system without hard links: create the target exclusively instead.
            # A concurrent reader may see it empty for a moment; _read_key_file retries.
            try:
                fd2 = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return False
            try:
                os.write(fd2, text.encode("ascii"))
                os.fsync(fd2)
            finally:
                os.close(fd2)
        return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _key_from_file(data_dir: str, filename: str, label: str, log: logging.Logger) -> bytes:
    path = os.path.join(data_dir, filename)
    if not os.path.exists(path):
        try:
            os.makedirs(data_dir, mode=0o700, exist_ok=True)
            created = _write_new_key_file(path)
        except OSError as exc:
            raise StartupError(f"cannot create key file {path}: {exc.strerror}") from None
        if created:
            log.warning(
                "generated new %s in %s (back it up: without it the data cannot be read)",
                label,
                path,
            )
    return _read_key_file(path, log)


def load_keys(settings: Any, log: logging.Logger = logger) -> Keys:
    """The keys from ``settings.security``; with SQLite, missing ones come from (or are
    generated once into) ``settings.server.data_dir``. Raises :class:`StartupError`."""
    sec = settings.security
    configured: dict[str, bytes | None] = {}
    for name in ("master_key", "hash_key"):
        text = str(getattr(sec, name))
        if text:
            key = _decode_key(text)
            if key is None:
                raise StartupError(f"setting security.{name}: must be standard base64 of 32 bytes")
            configured[name] = key
        else:
            configured[name] = None
    old: list[bytes] = []
    for text in sec.old_master_keys:
        key = _decode_key(str(text))
        if key is None:
            raise StartupError(
                "setting security.old_master_keys: must be standard base64 of 32 bytes each"
            )
        old.append(key)

    missing = [name for name, key in configured.items() if key is None]
    if missing and not settings.is_sqlite:
        names = " and ".join(f"security.{n} (WXB_SECURITY_{n.upper()})" for n in missing)
        raise StartupError(
            f"{names} must be set when the database is PostgreSQL "
            "(standard base64 of 32 random bytes)"
        )
    data_dir = str(settings.server.data_dir)
    master = configured["master_key"] or _key_from_file(
        data_dir, MASTER_KEY_FILE, "master key", log
    )
    hash_key = configured["hash_key"] or _key_from_file(data_dir, HASH_KEY_FILE, "hash key", log)

    old_masters: list[bytes] = []
    for key in old:
        if key != master and key not in old_masters:
            old_masters.append(key)
    return Keys(master=master, old_masters=tuple(old_masters), hash_key=hash_key)


# --------------------------------------------------------------------------- encryption


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FieldCipher:
    """AES-256-GCM encryption of single fields.

    Token format: ``"<kid>:<base64url-no-padding(nonce12 || ciphertext+tag)>"`` where ``kid``
    is :func:`key_id` of the key used. ``context`` (the field name, e.g.
    ``"identity.id_number"``) is bound as associated data, so a token copied into another
    field does not decrypt.
    """

    def __init__(self, keys: Keys) -> None:
        self._kid = key_id(keys.master)
        self._aead = AESGCM(keys.master)
        self._by_kid: dict[str, list[AESGCM]] = {self._kid: [self._aead]}
        for key in keys.old_masters:
            if key != keys.master:
                self._by_kid.setdefault(key_id(key), []).append(AESGCM(key))

    @property
    def current_key_id(self) -> str:
        """Key id of the current master key (non-secret)."""
        return self._kid

    def encrypt(self, plaintext: str, context: str) -> str:
        """Encrypt ``plaintext`` under the current master key with a fresh random nonce."""
        if not isinstance(plaintext, str) or not isinstance(context, str):
            raise TypeError("plaintext and context must be str")
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
        return f"{self._kid}:{_b64url(nonce + sealed)}"

    @staticmethod
    def _split(token: str) -> tuple[str, bytes]:
        if not isinstance(token, str):
            raise DecryptionError("field token must be str")
        kid, sep, body = token.partition(":")
        if not sep or len(kid) != 8 or not body:
            raise DecryptionError("malformed field token")
        try:
            raw = _unb64url(body)
        except (binascii.Error, ValueError):
            raise DecryptionError("malformed field token") from None
        if len(raw) < NONCE_BYTES + 16:
            raise DecryptionError("malformed field token")
        return kid, raw

    def decrypt(self, token: str, context: str) -> str:
        """Decrypt a token made by :meth:`encrypt` with the current or a retired master key.

        Raises :class:`DecryptionError` for a malformed token, an unknown key id, tampering or
        a different ``context``.
        """
        kid, raw = self._split(token)
        candidates = self._by_kid.get(kid)
        if not candidates:
            raise DecryptionError(f"field token uses unknown key id {kid}")
        nonce, sealed = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
        for aead in candidates:
            try:
                data = aead.decrypt(nonce, sealed, context.encode("utf-8"))
            except InvalidTag:
                continue
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                break
        raise DecryptionError(f"cannot decrypt field {context}: tampered or wrong field")

    def needs_reencrypt(self, token: str) -> bool:
        """True when the token was not made under the current master key (e.g. a retired
        one), so the caller should re-encrypt it. Raises :class:`DecryptionError` when the
        token is malformed."""
        kid, _ = self._split(token)
        return kid != self._kid


# --------------------------------------------------------------------------- lookup hashes


def normalize_id_number(s: str) -> str:
    """Canonical form of a resident ID number for hashing: NFKC (full-width digits and
    ``Ｘ`` from Chinese input methods become ASCII), stripped, upper-cased."""
    return unicodedata.normalize("NFKC", s).strip().upper()


class LookupHasher:
    """Keyed hashes (HMAC-SHA256 under ``hash_key``) to find records by personal data without
    storing it in clear. Callers normalise values first (see :func:`normalize_id_number`)."""

    def __init__(self, keys: Keys) -> None:
        self._key = keys.hash_key

    def hash(self, value: str, purpose: str) -> str:
        """Hex HMAC-SHA256(hash_key, purpose + "\\x00" + value). ``purpose`` (e.g.
        ``"id_number"``) separates domains: the same value hashes differently per purpose."""
        if not isinstance(value, str) or not isinstance(purpose, str):
            raise TypeError("value and purpose must be str")
        if not purpose or "\x00" in purpose:
            raise ValueError("purpose must be non-empty and contain no NUL")
        msg = (purpose + "\x00" + value).encode("utf-8")
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- passwords


_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SALT_BYTES, _DK_BYTES = 16, 32


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=dklen,
        maxmem=128 * r * n * p + 2**20 * 8,
    )


def hash_password(password: str) -> str:
    """scrypt (n=2**14, r=8, p=1, 16-byte salt, 32-byte key) as a self-describing string
    ``"scrypt$16384$8$1$<b64salt>$<b64hash>"`` (standard base64)."""
    if not isinstance(password, str):
        raise TypeError("password must be str")
    salt = secrets.token_bytes(_SALT_BYTES)
    dk = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _DK_BYTES)
    b64 = base64.b64encode
    return (
        f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}$"
        f"{b64(salt).decode('ascii')}${b64(dk).decode('ascii')}"
    )


#: scrypt's own threads (64 MiB and ~50 ms of CPU each): admin logins never queue on, or
#: take, the database threads, and at most two hash at once however many arrive.
_PASSWORD_THREADS = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="wxb-password")


async def verify_password_async(password: str, stored: str) -> bool:
    """:func:`verify_password` on the password threads."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_PASSWORD_THREADS, verify_password, password, stored)


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (from :func:`hash_password`); the comparison
    is constant-time. A malformed or unsupported ``stored`` gives False."""
    if not isinstance(password, str) or not isinstance(stored, str):
        return False
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        expected = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        return False
    # Bounds keep a corrupted row from costing unbounded memory or time.
    if not (2 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        return False
    if len(salt) < 8 or not 16 <= len(expected) <= 64:
        return False
    try:
        actual = _scrypt(password, salt, n, r, p, len(expected))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


# --------------------------------------------------------------------------- tokens


def new_token(nbytes: int = 32) -> str:
    """A random URL-safe token (``secrets.token_urlsafe``)."""
    return secrets.token_urlsafe(nbytes)


def token_digest(token: str) -> str:
    """Hex SHA-256 of a token, for storing it without storing the token itself.

    Only for high-entropy random tokens (sessions, QR scenes from :func:`new_token`); never
    for personal data or passwords, which are guessable: use :class:`LookupHasher` or
    :func:`hash_password`.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- masking


def mask_name(name: str) -> str:
    """First character and ``"**"`` whatever the length ("黎明" → "黎**"); "" → ""."""
    name = (name or "").strip()
    return name[0] + "**" if name else ""


def mask_secret(value: str, keep: int = 4) -> str:
    """``"****"`` plus the last ``keep`` characters ("****abcd"); "" → ""; values shorter
    than 8 → "****". At most half of the value is ever shown."""
    if not value:
        return ""
    if len(value) < 8 or keep <= 0:
        return "****"
    keep = min(keep, len(value) // 2)
    return "****" + value[-keep:]
