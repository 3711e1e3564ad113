"""Tests for wxbackend.security: keys, field encryption, lookup hashes, passwords, masking."""

import base64
import logging
import os
import stat
import threading

import pytest

from wxbackend.security import (
    DecryptionError,
    FieldCipher,
    Keys,
    LookupHasher,
    StartupError,
    hash_password,
    key_id,
    load_keys,
    mask_name,
    mask_secret,
    new_token,
    normalize_id_number,
    token_digest,
    verify_password,
)
from wxbackend.settings import load_settings

PG_URL = "postgresql://x@localhost/db"


def raw_key(byte: int) -> bytes:
    return bytes([byte]) * 32


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


KEY_A, KEY_B, KEY_H = raw_key(1), raw_key(2), raw_key(3)


def make_settings(tmp_path, db_url=PG_URL, **security):
    return load_settings(
        env={},
        overrides={
            "security": security,
            "server": {"data_dir": str(tmp_path / "data")},
            "database": {"url": db_url},
        },
    )


def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path}/wx.db"


# ----------------------------------------------------------------- field encryption


@pytest.fixture
def cipher():
    return FieldCipher(Keys(master=KEY_A, old_masters=(), hash_key=KEY_H))


@pytest.mark.parametrize("text", ["", "abc", "黎明", "11010519491231002X", "欧阳娜娜 🙂"])
def test_round_trip(cipher, text):
    token = cipher.encrypt(text, "identity.name")
    assert text not in token or text == ""
    assert cipher.decrypt(token, "identity.name") == text


def test_token_format(cipher):
    token = cipher.encrypt("黎明", "identity.name")
    kid, body = token.split(":")
    assert kid == key_id(KEY_A) and len(kid) == 8
    assert "=" not in body and "+" not in body and "/" not in body
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert len(raw) == 12 + len("黎明".encode()) + 16


def test_two_encryptions_differ(cipher):
    a = cipher.encrypt("secret", "f")
    b = cipher.encrypt("secret", "f")
    assert a != b
    assert cipher.decrypt(a, "f") == cipher.decrypt(b, "f") == "secret"


def test_tamper_detected(cipher):
    token = cipher.encrypt("11010519491231002X", "identity.id_number")
    kid, body = token.split(":")
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    for i in (0, 12, len(raw) - 1):  # nonce, ciphertext, tag
        bad = bytearray(raw)
        bad[i] ^= 1
        tampered = kid + ":" + base64.urlsafe_b64encode(bytes(bad)).rstrip(b"=").decode()
        with pytest.raises(DecryptionError):
            cipher.decrypt(tampered, "identity.id_number")


@pytest.mark.parametrize("token", ["", "nocolon", "abcdefgh:", "abcdefgh:!!!", "abc:AAAA"])
def test_malformed_token(cipher, token):
    with pytest.raises(DecryptionError):
        cipher.decrypt(token, "f")


def test_wrong_context(cipher):
    token = cipher.encrypt("13800138000", "identity.phone")
    with pytest.raises(DecryptionError) as exc:
        cipher.decrypt(token, "identity.name")
    assert "13800138000" not in str(exc.value)


def test_rotation():
    old = FieldCipher(Keys(master=KEY_A, old_masters=(), hash_key=KEY_H))
    token = old.encrypt("黎明", "identity.name")
    assert old.needs_reencrypt(token) is False

    rotated = FieldCipher(Keys(master=KEY_B, old_masters=(KEY_A,), hash_key=KEY_H))
    assert rotated.decrypt(token, "identity.name") == "黎明"
    assert rotated.needs_reencrypt(token) is True
    fresh = rotated.encrypt("黎明", "identity.name")
    assert rotated.needs_reencrypt(fresh) is False

    without_a = FieldCipher(Keys(master=KEY_B, old_masters=(), hash_key=KEY_H))
    with pytest.raises(DecryptionError):
        without_a.decrypt(token, "identity.name")


def test_keys_repr_hides_keys():
    keys = Keys(master=KEY_A, old_masters=(KEY_B,), hash_key=KEY_H)
    text = repr(keys)
    for k in (KEY_A, KEY_B, KEY_H):
        assert repr(k) not in text and b64(k) not in text
    with pytest.raises(ValueError):
        Keys(master=b"short", old_masters=(), hash_key=KEY_H)


def test_key_id_stable():
    assert key_id(KEY_A) == key_id(raw_key(1))
    assert key_id(KEY_A) != key_id(KEY_B)
    assert len(key_id(KEY_A)) == 8


# ----------------------------------------------------------------- lookup hashes


def test_hash_stable_and_keyed():
    h = LookupHasher(Keys(master=KEY_A, old_masters=(), hash_key=KEY_H))
    value = normalize_id_number(" 11010519491231002x ")
    assert value == "11010519491231002X"
    digest = h.hash(value, "id_number")
    assert digest == h.hash("11010519491231002X", "id_number")
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert digest != h.hash(value, "phone")
    other = LookupHasher(Keys(master=KEY_A, old_masters=(), hash_key=KEY_B))
    assert other.hash(value, "id_number") != digest
    # master key does not matter for hashes
    same = LookupHasher(Keys(master=KEY_B, old_masters=(), hash_key=KEY_H))
    assert same.hash(value, "id_number") == digest


def test_normalize_full_width():
    assert normalize_id_number("１１０１０５１９４９１２３１００２ｘ") == "11010519491231002X"


# ----------------------------------------------------------------- passwords


@pytest.mark.production_password_cost
def test_password():
    stored = hash_password("correct horse 电池")
    assert stored.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse 电池", stored)
    assert not verify_password("wrong", stored)
    assert hash_password("x") != hash_password("x")


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plain",
        "scrypt$16384$8$1$AAAA",
        "bcrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "scrypt$x$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "scrypt$16384$8$1$!!!$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "scrypt$1073741824$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ],
)
def test_password_malformed(stored):
    assert verify_password("anything", stored) is False


def test_password_non_str():
    assert verify_password("x", None) is False


# ----------------------------------------------------------------- tokens, masking


def test_tokens():
    a, b = new_token(), new_token()
    assert a != b and len(a) >= 43
    assert token_digest(a) == token_digest(a) and len(token_digest(a)) == 64
    assert token_digest(a) != token_digest(b)


@pytest.mark.parametrize(
    "name,masked",
    [("黎明", "黎**"), ("欧阳娜娜", "欧**"), ("A", "A**"), ("", ""), ("王", "王**")],
)
def test_mask_name(name, masked):
    assert mask_name(name) == masked


def test_mask_secret():
    assert mask_secret("") == ""
    assert mask_secret("short") == "****"
    assert mask_secret("1234567") == "****"
    assert mask_secret("wx1234567890abcd") == "****abcd"
    assert mask_secret("wx1234567890abcd", keep=6) == "****90abcd"
    assert mask_secret("12345678", keep=8) == "****5678"


# ----------------------------------------------------------------- key loading


def test_settings_keys_used_as_given(tmp_path):
    s = make_settings(
        tmp_path, master_key=b64(KEY_B), old_master_keys=[b64(KEY_A)], hash_key=b64(KEY_H)
    )
    keys = load_keys(s)
    assert keys == Keys(master=KEY_B, old_masters=(KEY_A,), hash_key=KEY_H)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "security,missing",
    [
        ({}, "security.master_key"),
        ({"hash_key": b64(KEY_H)}, "WXB_SECURITY_MASTER_KEY"),
        ({"master_key": b64(KEY_A)}, "security.hash_key"),
        ({"master_key": b64(KEY_A)}, "WXB_SECURITY_HASH_KEY"),
    ],
)
def test_postgres_without_key(tmp_path, security, missing):
    with pytest.raises(StartupError) as exc:
        load_keys(make_settings(tmp_path, **security))
    assert missing in str(exc.value)
    assert not (tmp_path / "data").exists()


def test_sqlite_generates_once(tmp_path, caplog):
    s = make_settings(tmp_path, db_url=sqlite_url(tmp_path))
    with caplog.at_level(logging.INFO, logger="wxbackend.security"):
        first = load_keys(s)
    data = tmp_path / "data"
    for name in ("master.key", "hash.key"):
        path = data / name
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert base64.b64decode(path.read_text().strip()) in (first.master, first.hash_key)
    assert first.master != first.hash_key
    assert f"generated new master key in {data / 'master.key'}" in caplog.text
    for k in (first.master, first.hash_key):
        assert b64(k) not in caplog.text
    assert sorted(os.listdir(data)) == ["hash.key", "master.key"]

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="wxbackend.security"):
        second = load_keys(s)
    assert second == first
    assert "generated" not in caplog.text


def test_sqlite_partial_settings(tmp_path):
    s = make_settings(tmp_path, db_url=sqlite_url(tmp_path), master_key=b64(KEY_A))
    keys = load_keys(s)
    assert keys.master == KEY_A
    assert not (tmp_path / "data" / "master.key").exists()
    assert (tmp_path / "data" / "hash.key").exists()


def test_concurrent_generation_single_key(tmp_path):
    s = make_settings(tmp_path, db_url=sqlite_url(tmp_path))
    results, errors = [], []

    def run():
        try:
            results.append(load_keys(s))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({(k.master, k.hash_key) for k in results}) == 1


def test_bad_key_file(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "master.key").write_text("not a key\n")
    with pytest.raises(StartupError) as exc:
        load_keys(make_settings(tmp_path, db_url=sqlite_url(tmp_path)))
    assert "master.key" in str(exc.value)


def test_unreadable_key_file(tmp_path):
    data = tmp_path / "data"
    (data / "master.key").mkdir(parents=True)  # a directory cannot be read as a file
    with pytest.raises(StartupError) as exc:
        load_keys(make_settings(tmp_path, db_url=sqlite_url(tmp_path)))
    assert "master.key" in str(exc.value)


def test_existing_key_file_read(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "master.key").write_text(b64(KEY_A) + "\n")
    (data / "hash.key").write_text(b64(KEY_H))
    os.chmod(data / "master.key", 0o600)
    os.chmod(data / "hash.key", 0o600)
    keys = load_keys(make_settings(tmp_path, db_url=sqlite_url(tmp_path)))
    assert keys.master == KEY_A and keys.hash_key == KEY_H
