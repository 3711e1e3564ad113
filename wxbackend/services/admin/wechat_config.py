"""The WeChat configuration in force: admin-stored values over environment over file.

Admins change it through the console (``PUT /admin/api/wechat-config``) or
``wxbackend wechat-config set``; each change is a new numbered version in the database
(secrets encrypted) and is announced on Redis pub/sub. Every process holds the effective
configuration in memory (:class:`WeChatConfigStore`), reloads it on the announcement, and
polls the version number once a second as a fallback, so a change applies everywhere within
about a second without a restart.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, replace
from dataclasses import field as dataclass_field
from typing import Any

import redis.asyncio as aioredis

from models.settings_store import WeChatConfigVersion
from wxbackend.cache import ChannelWatcher, Keys
from wxbackend.db import Database, database
from wxbackend.security import FieldCipher, mask_secret
from wxbackend.services.admin.audit import Actor, record
from wxbackend.services.messaging import template_data
from wxbackend.settings import Settings
from wxbackend.timefmt import iso
from wxbackend.wechat.client import Credentials

log = logging.getLogger("wxbackend.wechat_config")

SECRET_FIELDS = ("secret", "push_token", "aes_key")
EDITABLE = (
    "appid",
    "secret",
    "push_token",
    "aes_key",
    "templates",
    "miniprogram_page",
    "env_version",
    "check_path",
)
TEMPLATE_KEYS = ("reminder", "rectified")
#: Each template's own field map (product rule 23), and the attributes it may name.
FIELD_MAPS = {
    "reminder_fields": template_data.ATTRIBUTES,
    "rectified_fields": template_data.ATTRIBUTES + template_data.RECTIFIED_ATTRIBUTES,
}
POLL_SECONDS = 1.0

_RULES = {
    "appid": (re.compile(r"^wx[0-9a-f]{16}$"), "wx followed by 16 hex digits"),
    "secret": (re.compile(r"^[0-9a-f]{32}$"), "32 hex digits"),
    "push_token": (re.compile(r"^[A-Za-z0-9]{3,32}$"), "3–32 letters or digits"),
    "aes_key": (re.compile(r"^[A-Za-z0-9]{43}$"), "43 letters or digits"),
    "miniprogram_page": (
        re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$"),
        "a page path without a leading / or a query",
    ),
}
_TEMPLATE_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


class ConfigError(ValueError):
    """A bad value; ``field`` names it."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class WeChatConfig:
    """The effective WeChat configuration (plain values: keep it out of logs)."""

    appid: str
    secret: str
    push_token: str
    aes_key: str
    template_reminder: str
    template_rectified: str
    api_base: str
    miniprogram_page: str
    env_version: str
    check_path: bool
    reminder_fields: dict[str, str] = dataclass_field(default_factory=dict)
    rectified_fields: dict[str, str] = dataclass_field(default_factory=dict)
    version: int = 0
    updated_at: str | None = None
    updated_by: str | None = None

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.appid, self.secret)

    def public_view(self) -> dict[str, Any]:
        """What the console shows: secrets masked, never in clear."""
        return {
            "appid": self.appid,
            "secret": mask_secret(self.secret),
            "push_token": "****" if self.push_token else "",
            "aes_key": "****" if self.aes_key else "",
            "templates": {
                "reminder": self.template_reminder,
                "rectified": self.template_rectified,
                "reminder_fields": dict(self.reminder_fields),
                "rectified_fields": dict(self.rectified_fields),
            },
            "api_base": self.api_base,
            "miniprogram_page": self.miniprogram_page,
            "env_version": self.env_version,
            "check_path": self.check_path,
            "version": self.version,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }


def base_config(settings: Settings) -> WeChatConfig:
    """The file + environment layer (settings), before admin-stored values."""
    w = settings.wechat
    return WeChatConfig(
        appid=w.appid,
        secret=w.secret,
        push_token=w.push_token,
        aes_key=w.aes_key,
        template_reminder=w.template_reminder,
        template_rectified=w.template_rectified,
        api_base=w.api_base,
        miniprogram_page=w.miniprogram_page,
        env_version=w.env_version,
        check_path=w.check_path,
        reminder_fields=dict(
            settings.templates.reminder_fields or settings.reminders.template_fields
        ),
        rectified_fields=dict(settings.templates.rectified_fields),
    )


def validate_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Check a PUT body (any subset of the editable fields) → flat stored values."""
    flat: dict[str, Any] = {}
    for field, value in changes.items():
        if field == "api_base":
            raise ConfigError(
                "api_base", "read-only here: set it in the file or WXB_WECHAT_API_BASE"
            )
        if field not in EDITABLE:
            raise ConfigError(field, "unknown field")
        if field == "templates":
            if not isinstance(value, dict):
                raise ConfigError(
                    "templates",
                    "an object {reminder, rectified, reminder_fields, rectified_fields}",
                )
            for key, template_id in value.items():
                if key in FIELD_MAPS:
                    try:
                        flat[key] = template_data.check_field_map(template_id, FIELD_MAPS[key])
                    except template_data.TemplateFieldsError as exc:
                        raise ConfigError(f"templates.{key}", str(exc)) from None
                    continue
                if key not in TEMPLATE_KEYS:
                    raise ConfigError(f"templates.{key}", "unknown template")
                if not isinstance(template_id, str) or not _TEMPLATE_ID.match(template_id):
                    raise ConfigError(f"templates.{key}", "1–64 of A-Z a-z 0-9 _ -")
                flat[f"template_{key}"] = template_id
        elif field == "env_version":
            if value not in ("release", "trial", "develop"):
                raise ConfigError(field, "release, trial or develop")
            flat[field] = value
        elif field == "check_path":
            if not isinstance(value, bool):
                raise ConfigError(field, "true or false")
            flat[field] = value
        else:
            pattern, what = _RULES[field]
            if not isinstance(value, str) or not pattern.match(value):
                raise ConfigError(field, what)
            flat[field] = value
    return flat


def _decode(cipher: FieldCipher, row: WeChatConfigVersion) -> dict[str, Any]:
    values = json.loads(row.values)
    for field in SECRET_FIELDS:
        if values.get(field):
            values[field] = cipher.decrypt(values[field], f"wechat_config.{field}")
    return values


def load_effective(settings: Settings, cipher: FieldCipher) -> WeChatConfig:
    """The newest stored version over the settings (sync: run on a DB thread)."""
    config = base_config(settings)
    row = WeChatConfigVersion.select().order_by(WeChatConfigVersion.version.desc()).first()
    if row is None:
        return config
    return replace(
        config,
        **_decode(cipher, row),
        version=row.version,
        updated_at=iso(row.updated_at),
        updated_by=row.updated_by,
    )


def current_version() -> int:
    return (
        WeChatConfigVersion.select(WeChatConfigVersion.version)
        .order_by(WeChatConfigVersion.version.desc())
        .scalar()
        or 0
    )


def save_changes(
    settings: Settings, cipher: FieldCipher, actor: Actor, changes: dict[str, Any]
) -> WeChatConfig:
    """Validate and store a new version (sync, one transaction, audited). Returns it."""
    flat = validate_changes(changes)
    with database.atomic():
        latest = WeChatConfigVersion.select().order_by(WeChatConfigVersion.version.desc()).first()
        stored = json.loads(latest.values) if latest else {}
        current = _decode(cipher, latest) if latest else {}
        changed = sorted(k for k, v in flat.items() if current.get(k, _MISSING) != v)
        for field, value in flat.items():
            if field in SECRET_FIELDS:
                stored[field] = cipher.encrypt(value, f"wechat_config.{field}")
            else:
                stored[field] = value
        _store_version(latest, stored, changed, actor, "update")
    return load_effective(settings, cipher)


def _store_version(
    latest: WeChatConfigVersion | None,
    stored: dict[str, Any],
    changed: list[str],
    actor: Actor,
    verb: str,
) -> None:
    """Write the version after ``latest`` holding ``stored``, audited ``wechat_config.<verb>``
    (inside the caller's transaction)."""
    version = (latest.version if latest else 0) + 1
    WeChatConfigVersion.create(
        version=version,
        values=json.dumps(stored, ensure_ascii=False),
        changed_fields=json.dumps(changed),
        updated_by=actor.username,
    )
    record(actor, f"wechat_config.{verb}", "wechat_config", version, {"changed": changed})


_MISSING = object()


def stored_field(name: str) -> str:
    """The stored field a command-line KEY names (``templates.reminder`` → ``template_reminder``,
    ``templates.reminder_fields`` → ``reminder_fields``); ConfigError for any other name."""
    if name.startswith("templates."):
        key = name.split(".", 1)[1]
        if key in FIELD_MAPS:
            return key
        if key in TEMPLATE_KEYS:
            return f"template_{key}"
        raise ConfigError(name, "unknown template")
    if name not in EDITABLE or name == "templates":
        raise ConfigError(name, "unknown field")
    return name


def unset_fields(
    settings: Settings, cipher: FieldCipher, actor: Actor, names: list[str]
) -> WeChatConfig:
    """Remove console overrides (``names`` as :func:`stored_field` reads them), so the file
    and environment values apply again: a new version, audited ``wechat_config.unset``."""
    fields = sorted({stored_field(name) for name in names})
    with database.atomic():
        latest = WeChatConfigVersion.select().order_by(WeChatConfigVersion.version.desc()).first()
        stored = json.loads(latest.values) if latest else {}
        removed = [f for f in fields if f in stored]
        if not removed:
            return load_effective(settings, cipher)
        for field in removed:
            del stored[field]
        _store_version(latest, stored, removed, actor, "unset")
    return load_effective(settings, cipher)


def history(limit: int = 50) -> list[dict[str, Any]]:
    """Versions newest first: who, when, which fields changed (no values)."""
    rows = WeChatConfigVersion.select().order_by(WeChatConfigVersion.version.desc()).limit(limit)
    return [
        {
            "version": r.version,
            "changed_fields": json.loads(r.changed_fields),
            "updated_by": r.updated_by,
            "updated_at": iso(r.updated_at),
        }
        for r in rows
    ]


class WeChatConfigStore:
    """The effective configuration of this process, kept current (pub/sub + polling)."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        redis: aioredis.Redis,
        rkeys: Keys,
        cipher: FieldCipher,
    ):
        self.settings = settings
        self.db = db
        self.redis = redis
        self.cipher = cipher
        self.current = base_config(settings)
        self.channel = rkeys("wechat-config")
        self._watcher = ChannelWatcher(
            redis,
            self.channel,
            on_message=lambda _data: self.reload(),
            on_idle=self._poll,
            interval=POLL_SECONDS,
        )

    def config(self) -> WeChatConfig:
        """The configuration in force."""
        return self.current

    def credentials(self) -> Credentials:
        """The appid and secret in force (the WeChat gateway asks at every token fetch)."""
        return self.current.credentials

    async def reload(self) -> WeChatConfig:
        """Read the effective configuration from the database."""
        fresh = await self.db.run(load_effective, self.settings, self.cipher)
        if fresh.version != self.current.version:
            log.info("WeChat configuration version %d in force", fresh.version)
        self.current = fresh
        return fresh

    async def save(self, actor: Actor, changes: dict[str, Any]) -> WeChatConfig:
        """Store a new version, use it here at once and announce it to the other processes."""
        fresh = await self.db.run(save_changes, self.settings, self.cipher, actor, changes)
        self.current = fresh
        await self.announce(fresh.version)
        return fresh

    async def announce(self, version: int) -> None:
        """Publish ``version`` on the channel (a failure is logged: polling spreads it too)."""
        try:
            await self.redis.publish(self.channel, str(version))
        except Exception as exc:  # noqa: BLE001 - polling still spreads the change
            log.warning("could not announce the WeChat configuration: %s", type(exc).__name__)

    def start(self) -> None:
        """Watch for changes in the background (call once the loop runs)."""
        self._watcher.start()

    async def stop(self) -> None:
        """Stop watching."""
        await self._watcher.stop()

    async def _poll(self) -> None:
        if await self.db.run(current_version) != self.current.version:
            await self.reload()


def as_dict(config: WeChatConfig) -> dict[str, Any]:
    return asdict(config)
