"""WeChat message push (消息推送): signatures, safe-mode crypto, JSON and XML bodies.

Pure functions, no HTTP types: the handler (``handlers/push.py``) checks and decrypts with
them, and tests (or the sandbox) build real deliveries with :func:`build_delivery`.

What WeChat sends (../shared/docs/wechat.md, "message push"):

* verification ``GET ?signature&timestamp&nonce&echostr`` with
  ``signature = sha1("".join(sorted([token, timestamp, nonce])))``;
* ``POST ?signature&timestamp&nonce`` with a plaintext JSON or XML message, or in safe mode
  ``…&encrypt_type=aes&msg_signature=`` with ``{"ToUserName", "Encrypt"}`` (or the same as
  ``<xml>``) where ``msg_signature = sha1(sorted([token, timestamp, nonce, Encrypt]))``;
* ``Encrypt`` = base64(AES-256-CBC(key, iv=key[:16], PKCS#7 padded to **32-byte** blocks of
  16 random bytes + 4-byte big-endian length + message + appid)), key =
  b64decode(EncodingAESKey + "=").

wechatpy 1.8.18 as checked (``wechatpy/crypto/base.py``, ``crypto/pkcs7.py``, ``utils.py``):
its ``WeChatCipher`` (AES-CBC, iv = key[:16]) and ``PKCS7Encoder.encode`` (32-byte blocks)
are right and used here. Its decryption (``BasePrpCrypto._decrypt``) is too lenient for an
endpoint open to the internet, so :func:`decrypt` replaces it: wechatpy never checks the
padding (a last byte of 0 or >32, or inconsistent pad bytes, slices garbage; 0 crashes in
``struct.unpack``), never checks the length field against the data, lets base64 /
block-size / UTF-8 errors escape as assorted exceptions, and compares signatures with ``!=``
(not constant time). Its ``random_string`` for the 16-byte prefix uses :mod:`random`; the
encrypt helper here uses :func:`os.urandom`. ``wechatpy.parse_message`` is XML only and knows
none of the ``subscribe_msg_*`` events, so bodies are parsed here (XML through xmltodict with
entities refused, as wechatpy itself does).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import string
import struct
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode
from xml.parsers.expat import ExpatError

import xmltodict
from wechatpy.crypto.cryptography import WeChatCipher
from wechatpy.crypto.pkcs7 import PKCS7Encoder

BLOCK = 32  # WeChat's PKCS#7 block size (not AES's 16)
MAX_CLOCK_SKEW_SECONDS = 300


class PushError(ValueError):
    """A delivery that must be refused; ``kind`` is ``"signature"`` or ``"malformed"``."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)


def _malformed(message: str) -> PushError:
    return PushError("malformed", message)


def _forged(message: str) -> PushError:
    return PushError("signature", message)


# ---- signatures -------------------------------------------------------------------------------


def sign(token: str, timestamp: str, nonce: str, *extra: str) -> str:
    """WeChat's push signature: sha1 of the sorted, concatenated parts (hex)."""
    parts = sorted(p.encode() for p in (token, timestamp, nonce, *extra))
    return hashlib.sha1(b"".join(parts)).hexdigest()  # noqa: S324 - WeChat's scheme  # nosec


def signature_ok(signature: str, token: str, timestamp: str, nonce: str, *extra: str) -> bool:
    """Constant-time check of ``signature`` (False when the token is not configured)."""
    if not token or not signature:
        return False
    expected = sign(token, timestamp, nonce, *extra)
    return hmac.compare_digest(expected.encode(), signature.lower().encode())


def check_fresh(timestamp: str, now: float | None = None) -> int:
    """The query ``timestamp`` as an int, refused when over 5 minutes away from now."""
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise _forged("The timestamp is missing or not a number.")
    value = int(timestamp)
    now = time.time() if now is None else now
    if abs(now - value) > MAX_CLOCK_SKEW_SECONDS:
        raise _forged("The timestamp is more than 5 minutes away: refused as a replay.")
    return value


# ---- safe-mode crypto -------------------------------------------------------------------------


def aes_key_bytes(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key of a 43-character EncodingAESKey."""
    if len(encoding_aes_key) != 43:
        raise _malformed("The EncodingAESKey is not 43 characters.")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except (binascii.Error, ValueError):
        raise _malformed("The EncodingAESKey is not base64.") from None
    if len(key) != 32:
        raise _malformed("The EncodingAESKey does not decode to 32 bytes.")
    return key


def new_aes_key() -> str:
    """A random EncodingAESKey: 43 letters and digits, as the console generates."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(43))


def pkcs7_unpad(data: bytes) -> bytes:
    """Strict PKCS#7 removal for 32-byte blocks (every pad byte checked)."""
    if not data or len(data) % BLOCK:
        raise _malformed("The decrypted data is not whole 32-byte blocks.")
    pad = data[-1]
    if not 1 <= pad <= BLOCK or data[-pad:] != bytes([pad]) * pad:
        raise _malformed("The decrypted data has bad padding (wrong EncodingAESKey?).")
    return data[:-pad]


def encrypt(encoding_aes_key: str, message: bytes, appid: str, prefix: bytes | None = None) -> str:
    """``Encrypt`` for ``message``: what WeChat sends in safe mode (base64 text)."""
    prefix = os.urandom(16) if prefix is None else prefix
    plain = prefix + struct.pack(">I", len(message)) + message + appid.encode()
    cipher = WeChatCipher(aes_key_bytes(encoding_aes_key))
    return base64.b64encode(cipher.encrypt(PKCS7Encoder.encode(plain))).decode()


def decrypt(encoding_aes_key: str, encrypted: str, appid: str) -> bytes:
    """The message inside ``Encrypt``, checked to be addressed to ``appid``.

    Raises :class:`PushError`: ``malformed`` for anything that does not decrypt to a
    well-formed frame, ``signature`` when the frame names another appid.
    """
    key = aes_key_bytes(encoding_aes_key)
    try:
        raw = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed("Encrypt is not base64.") from None
    if not raw or len(raw) % 16:
        raise _malformed("Encrypt is not whole AES blocks.")
    plain = pkcs7_unpad(WeChatCipher(key).decrypt(raw))
    if len(plain) < 20:
        raise _malformed("The decrypted frame is too short.")
    (length,) = struct.unpack(">I", plain[16:20])
    if length > len(plain) - 20:
        raise _malformed("The decrypted frame's length is wrong (wrong EncodingAESKey?).")
    message, from_appid = plain[20 : 20 + length], plain[20 + length :]
    if not hmac.compare_digest(from_appid, appid.encode()):
        raise _forged("The message is addressed to another appid.")
    return message


# ---- bodies -----------------------------------------------------------------------------------


def parse(raw: bytes) -> dict[str, Any]:
    """A JSON or XML push body → a dict (XML: the children of ``<xml>``), by its first byte."""
    text = raw.strip()
    if text.startswith(b"{"):
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise _malformed("The body is not valid JSON.") from None
    elif text.startswith(b"<"):
        if b"<!DOCTYPE" in text.upper() or b"<!ENTITY" in text.upper():
            raise _malformed("XML with a DOCTYPE is refused.")
        try:
            data = xmltodict.parse(text, disable_entities=True).get("xml")
        except (ValueError, ExpatError):
            raise _malformed("The body is not valid XML.") from None
    else:
        raise _malformed("The body is neither JSON nor XML.")
    if not isinstance(data, dict):
        raise _malformed("The body is not an object (JSON) or <xml> element.")
    return data


def to_xml(message: dict[str, Any]) -> bytes:
    """``message`` as WeChat's ``<xml>…</xml>`` (lists become repeated elements)."""
    return xmltodict.unparse({"xml": message}, full_document=False).encode()


@dataclass(frozen=True)
class Delivery:
    """An authenticated push message: its fields, and a key that is equal for retries."""

    message: dict[str, Any]
    receipt_key: str


def open_delivery(
    query: dict[str, str],
    body: bytes,
    token: str,
    aes_key: str,
    appid: str,
    now: float | None = None,
) -> Delivery:
    """Authenticate (and in safe mode decrypt) one ``POST`` delivery.

    ``query`` holds the URL parameters (``signature``, ``timestamp``, ``nonce``,
    ``encrypt_type``, ``msg_signature``). Raises :class:`PushError` on anything wrong. With
    ``aes_key`` configured only safe-mode deliveries are accepted (plaintext is a downgrade).
    """
    if not token:
        raise _forged("Message push is not configured (no token).")
    timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
    encrypt_type = query.get("encrypt_type") or "raw"
    safe = encrypt_type == "aes"
    if encrypt_type not in ("aes", "raw"):
        raise _malformed("Unknown encrypt_type.")
    if aes_key and not safe:  # a downgrade: the plaintext signature does not cover the body
        raise _forged("Safe mode is configured: an unencrypted delivery is refused.")
    if not nonce or not (query.get("msg_signature") if safe else query.get("signature")):
        raise _forged("The delivery is not signed.")
    check_fresh(timestamp, now)
    envelope = parse(body)
    if safe:
        encrypted = envelope.get("Encrypt")
        if not isinstance(encrypted, str) or not encrypted:
            raise _malformed("Safe mode without Encrypt.")
        if not signature_ok(query["msg_signature"], token, timestamp, nonce, encrypted):
            raise _forged("msg_signature does not match.")
        if not aes_key:
            raise _malformed("Safe mode, but no EncodingAESKey is configured.")
        message = parse(decrypt(aes_key, encrypted, appid))
    else:
        if not signature_ok(query["signature"], token, timestamp, nonce):
            raise _forged("signature does not match.")
        message = envelope
    return Delivery(message, receipt_key(message))


def receipt_key(message: dict[str, Any]) -> str:
    """sha256 of the message in canonical JSON: the same for each retry of a delivery."""
    canonical = json.dumps(message, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def event_items(message: dict[str, Any], wrapper: str) -> list[dict[str, Any]]:
    """The ``List`` entries of a ``subscribe_msg_*`` event, always as a list of dicts.

    JSON has ``List`` at the top (an object for one template, an array for several); XML
    wraps it (``<SubscribeMsgPopupEvent><List>…</List>…``), one element or repeated.
    """
    items: Any = message.get("List")
    if items is None:
        outer = message.get(wrapper)
        if isinstance(outer, list):  # <Wrapper> repeated, one <List> each
            items = [o.get("List") for o in outer if isinstance(o, dict)]
        elif isinstance(outer, dict):
            items = outer.get("List")
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        return []
    flat: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, list):
            flat.extend(i for i in item if isinstance(i, dict))
        elif isinstance(item, dict):
            flat.append(item)
    return flat


# ---- building deliveries (tests, sandbox) -----------------------------------------------------


def build_delivery(
    message: dict[str, Any],
    token: str,
    appid: str,
    aes_key: str | None = None,
    fmt: str = "json",
    timestamp: int | None = None,
    nonce: str | None = None,
) -> tuple[str, bytes]:
    """A real delivery of ``message`` as WeChat makes it: ``(query string, body)``.

    ``aes_key`` given: safe mode (``encrypt_type=aes``, ``msg_signature``); else plaintext.
    ``fmt`` is ``"json"`` or ``"xml"``.
    """
    timestamp_s = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or str(secrets.randbelow(10**9))
    inner = json.dumps(message, ensure_ascii=False).encode() if fmt == "json" else to_xml(message)
    query = {
        "signature": sign(token, timestamp_s, nonce),
        "timestamp": timestamp_s,
        "nonce": nonce,
    }
    if aes_key is None:
        return urlencode(query), inner
    encrypted = encrypt(aes_key, inner, appid)
    query.update(encrypt_type="aes", msg_signature=sign(token, timestamp_s, nonce, encrypted))
    envelope = {"ToUserName": message.get("ToUserName", "gh_000000000000"), "Encrypt": encrypted}
    body = json.dumps(envelope).encode() if fmt == "json" else to_xml(envelope)
    return urlencode(query), body
