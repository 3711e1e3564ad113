"""The keys fit the database: a start refuses (one line) keys that cannot open its data.

A database restored without its keys (README, "Backup and restore"), or started with another
``/etc/wxbackend/env``, used to start: with SQLite it generated new key files beside it, then
answered 500 to whatever touched encrypted data (a partner's signed request, a reveal) and
signed checkpoints with a key the log's verifiers do not know. :func:`check_keys_fit` runs
before the keys are loaded (so that no key file is generated beside a database that already
holds data) and compares what the database holds with the keys configured or in
``server.data_dir``: the key ids of the newest ciphertext of each encrypted column, and the
signature of the newest checkpoint. The hash key cannot be compared (hashes are one-way);
only its file's absence is caught.
"""

from __future__ import annotations

import os
import re
from typing import Any

from wxbackend.db import make_peewee_database, sqlite_path
from wxbackend.security import HASH_KEY_FILE, MASTER_KEY_FILE, StartupError, key_id, load_keys
from wxbackend.services.transparency import note
from wxbackend.services.transparency.checkpoints import KEY_FILE, load_signer
from wxbackend.settings import Settings, SettingsError, shown_url

#: The encrypted columns whose newest value names the key it was encrypted under.
CIPHER_COLUMNS = (
    ("partner", "secret_enc"),
    ("case", "applicant_name_enc"),
    ("identity", "name_enc"),
    ("user", "session_key_enc"),
    ("center", "wecom_key_enc"),
)
#: A ciphertext's key id (:func:`wxbackend.security.key_id`).
_KEY_ID = re.compile(r"[0-9a-f]{8}")
#: Each key file, and the setting that replaces it.
KEY_FILES = (
    (MASTER_KEY_FILE, "security.master_key"),
    (HASH_KEY_FILE, "security.hash_key"),
    (KEY_FILE, "transparency.signing_key"),
)


def check_keys_fit(settings: Settings) -> None:
    """SettingsError (one line) when the database holds data the keys cannot open."""
    kids, newest_note = _evidence(settings)
    if not kids and newest_note is None:
        return  # nothing encrypted or signed yet: any keys fit (and may be generated)
    where = shown_url(settings.database.url)
    missing = _missing_key_files(settings, bool(kids), newest_note is not None)
    if missing:
        raise SettingsError(
            f"the database {where} holds encrypted or signed data but its key files are "
            f"missing ({', '.join(missing)}): put back the key files of its backup (README: "
            "Backup and restore); new keys would leave that data unreadable"
        )
    try:
        keys = load_keys(settings)
        signer = load_signer(settings) if newest_note is not None else None
    except StartupError as exc:
        raise SettingsError(str(exc)) from None
    known = {key_id(keys.master), *(key_id(old) for old in keys.old_masters)}
    for column, kid in kids.items():
        if kid not in known:
            raise SettingsError(
                f"security.master_key (key id {key_id(keys.master)}) does not open the data in "
                f"{where}: its newest {column} was encrypted under key id {kid}; restore the "
                "master key of its backup, or list a retired one in security.old_master_keys"
            )
    if signer is not None and newest_note is not None and not _signed_by(newest_note, signer):
        raise SettingsError(
            f"transparency.signing_key did not sign the checkpoints in {where}: restore the "
            "signing key of its backup (README: Backup and restore); another key would fork "
            "the public log"
        )


def _evidence(settings: Settings) -> tuple[dict[str, str], str | None]:
    """The key id of each encrypted column's newest value, and the newest checkpoint's note
    (tables or columns an older schema lacks are skipped)."""
    kids: dict[str, str] = {}
    newest_note = None
    if settings.is_sqlite and not os.path.exists(sqlite_path(settings.database.url)):
        return kids, newest_note  # a first start (connecting would create the file)
    db = make_peewee_database(settings)
    try:
        db.connect()
        tables = set(db.get_tables())
        for table, column in CIPHER_COLUMNS:
            if table in tables and column in {c.name for c in db.get_columns(table)}:
                # names from CIPHER_COLUMNS (constants) checked against the schema
                sql = f'SELECT "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL '  # noqa: S608  # nosec B608
                row = db.execute_sql(sql + 'ORDER BY "id" DESC LIMIT 1').fetchone()
                kid, sep, _ = str(row[0] if row else "").partition(":")
                if sep and _KEY_ID.fullmatch(kid):  # a ciphertext (placeholders are skipped)
                    kids[f"{table}.{column}"] = kid
        if "log_checkpoint" in tables:
            row = db.execute_sql(
                'SELECT "note" FROM "log_checkpoint" ORDER BY "tree_size" DESC LIMIT 1'
            ).fetchone()
            newest_note = row[0] if row else None
    finally:
        if not db.is_closed():
            db.close()
    return kids, newest_note


def _missing_key_files(settings: Settings, encrypted: bool, signed: bool) -> list[str]:
    """With SQLite, the key files the data needs (the master and hash keys once something is
    encrypted, the signing key once a checkpoint is signed: the one-shot commands generate
    only the first two) that are neither configured nor in ``server.data_dir``."""
    if not settings.is_sqlite:
        return []  # PostgreSQL: every key is configured (load_keys refuses otherwise)
    configured = {
        "security.master_key": settings.security.master_key,
        "security.hash_key": settings.security.hash_key,
        "transparency.signing_key": settings.transparency.signing_key,
    }
    data_dir = str(settings.server.data_dir)
    needed = {MASTER_KEY_FILE: encrypted, HASH_KEY_FILE: encrypted, KEY_FILE: signed}
    return [
        os.path.join(data_dir, filename)
        for filename, setting in KEY_FILES
        if needed[filename]
        and not str(configured[setting]).strip()
        and not os.path.exists(os.path.join(data_dir, filename))
    ]


def _signed_by(text: str, signer: Any) -> bool:
    """Whether ``signer``'s key signed the checkpoint note ``text``, under whatever origin it
    had then (an origin changed since is the operator's choice, not a lost key)."""
    try:
        checkpoint = note.parse_checkpoint(text)
    except note.NoteError:
        return False
    for name, hashed, signature in checkpoint.signatures:
        verifier = note.Verifier(name, note.key_hash(name, signer.public_key), signer.public_key)
        if hashed == verifier.hash and verifier.verify(checkpoint.body, signature):
            return True
    return False
