"""Settings: conf/default.toml, an optional extra TOML file, then WXB_* environment variables.

Everything is read once, at start, into one frozen :class:`Settings` object that is passed
down. The defaults file declares every key and, by its value, the key's type; anything else
is an error that names the key.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlparse

#: Every setting with its default, shipped inside the package (``conf/default.toml`` in the
#: repository is a link to it, where operators look).
DEFAULT_FILE = Path(__file__).resolve().parent / "conf" / "default.toml"
ENV_PREFIX = "WXB_"


class SettingsError(ValueError):
    """A setting is unknown or has a bad value; the message names it."""


class Section(Mapping[str, Any]):
    """One immutable ``[section]`` of the settings, readable as attributes."""

    def __init__(self, name: str, values: dict[str, Any]):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", MappingProxyType(dict(values)))

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"no setting {self._name}.{key}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("settings are read-only")

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Section({self._name})"


class Settings:
    """All settings, frozen. ``settings.wechat.timeout_seconds``."""

    def __init__(self, sections: dict[str, dict[str, Any]], source: str = ""):
        object.__setattr__(
            self, "_sections", {name: Section(name, vals) for name, vals in sections.items()}
        )
        object.__setattr__(self, "source", source)

    def __getattr__(self, name: str) -> Section:
        try:
            return self._sections[name]
        except KeyError:
            raise AttributeError(f"no settings section [{name}]") from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("settings are read-only")

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dict(sec) for name, sec in self._sections.items()}

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``section__key=value`` changes, validated like any other layer."""
        layer: dict[str, dict[str, Any]] = {}
        for dotted, value in changes.items():
            section, _, key = dotted.partition("__")
            layer.setdefault(section, {})[key] = value
        merged = self.as_dict()
        _merge(merged, layer, "override")
        _validate(merged)
        return Settings(merged, self.source)

    @property
    def sandbox_mode(self) -> bool:
        return self.wechat.api_base == "sandbox"

    @property
    def is_sqlite(self) -> bool:
        return self.database.url.startswith("sqlite:")


def local_wechat_problem(settings: Settings) -> str | None:
    """Why this configuration must not start with its WeChat (or WeCom robot) base, or None.

    ``"sandbox"`` and ``http://`` bases hand out logins and verified identities to anyone
    who can reach them (a plain-http robot base sends each center's robot key and its ticket
    alerts in clear); they belong to a developer's machine (the embedded defaults) or to
    tests and benchmarks (``wechat.allow_sandbox = true``), never beside PostgreSQL or a
    real Redis by accident.
    """
    embedded = settings.database.url.startswith("sqlite") and settings.redis.url == "embedded"
    if settings.wechat.allow_sandbox or embedded:
        return None
    checks = (
        ("wechat.api_base", settings.wechat.api_base, "hands out logins and face passes to "
         "anyone who reaches it", "https://api.weixin.qq.com/"),
        ("wecom.api_base", settings.wecom.api_base, "sends the centers' robot keys and ticket "
         "alerts in clear or nowhere", "https://qyapi.weixin.qq.com/"),
    )  # fmt: skip
    for key, base, harm, real in checks:
        if base == "sandbox" or base.startswith("http://"):
            return (
                f"{key} {base!r} is the sandbox or plain http, which {harm}; with PostgreSQL "
                f"or a real Redis set {key} to {real} (or wechat.allow_sandbox = true for tests)"
            )
    return None


def shown_url(url: str) -> str:
    """``url`` without its password, fit for a message or a log."""
    parts = urlparse(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{parts.username or ''}:***@{netloc}").geturl()


def load_settings(
    config_file: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> Settings:
    """Build the settings: defaults, then ``config_file`` (or ``WXB_CONFIG``), then env."""
    env = os.environ if env is None else env
    with open(DEFAULT_FILE, "rb") as fh:
        values = tomllib.load(fh)
    sources = [str(DEFAULT_FILE)]
    config_file = config_file or env.get("WXB_CONFIG")
    if config_file:
        try:
            with open(config_file, "rb") as fh:
                extra = tomllib.load(fh)
        except OSError as exc:
            raise SettingsError(f"cannot read config file {config_file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {config_file} is not valid TOML: {exc}") from None
        _merge(values, extra, str(config_file))
        sources.append(str(config_file))
    _merge(values, _env_layer(values, env), "environment")
    if overrides:
        _merge(values, overrides, "override")
    _validate(values)
    return Settings(values, " + ".join(sources))


def _env_layer(defaults: dict[str, dict[str, Any]], env: Mapping[str, str]) -> dict:
    layer: dict[str, dict[str, Any]] = {}
    known = {
        f"{ENV_PREFIX}{section}_{key}".upper(): (section, key)
        for section, keys in defaults.items()
        for key in keys
    }
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name == "WXB_CONFIG":
            continue
        if name not in known:
            raise SettingsError(f"unknown setting in environment: {name}")
        section, key = known[name]
        layer.setdefault(section, {})[key] = _parse_env(name, raw, defaults[section][key])
    return layer


def _parse_env(name: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, list):
            text = raw.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        if isinstance(default, dict):
            return json.loads(raw)
    except (ValueError, json.JSONDecodeError) as exc:
        raise SettingsError(f"{name}: bad value: {exc}") from None
    return raw


def _merge(base: dict, layer: dict, origin: str) -> None:
    for section, keys in layer.items():
        if section not in base or not isinstance(keys, dict):
            raise SettingsError(f"unknown settings section [{section}] (from {origin})")
        for key, value in keys.items():
            if key not in base[section]:
                raise SettingsError(f"unknown setting {section}.{key} (from {origin})")
            default = base[section][key]
            if not _same_type(default, value):
                raise SettingsError(
                    f"setting {section}.{key} must be {type(default).__name__}, "
                    f"got {type(value).__name__} (from {origin})"
                )
            if isinstance(default, float):
                value = float(value)
            base[section][key] = value


def _same_type(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


_B64_32 = re.compile(r"^[A-Za-z0-9+/]{43}=$")
_HHMM = r"([01]\d|2[0-3]):[0-5]\d"


def _validate(v: dict[str, dict[str, Any]]) -> None:
    """Checks beyond types; each failure names its key."""

    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise SettingsError(f"setting {key}: {what}")

    db = v["database"]["url"]
    need(
        db.startswith(("sqlite:///", "postgresql://", "postgres://")),
        "database.url",
        "must start with sqlite:/// or postgresql://",
    )
    rurl = v["redis"]["url"]
    need(
        rurl == "embedded" or rurl.startswith(("redis://", "rediss://", "redis+sentinel://")),
        "redis.url",
        'must be "embedded", redis://, rediss:// or redis+sentinel://',
    )
    for section in ("wechat", "wecom"):  # the WeCom robot's base was once taken unchecked
        base = v[section]["api_base"]
        need(
            base == "sandbox" or (base.startswith(("http://", "https://")) and base.endswith("/")),
            f"{section}.api_base",
            '"sandbox" or an http(s) URL ending with "/"',
        )
    for key in ("master_key", "hash_key"):
        val = v["security"][key]
        need(val == "" or bool(_B64_32.match(val)), f"security.{key}", "base64 of 32 bytes")
    for val in v["security"]["old_master_keys"]:
        need(bool(_B64_32.match(str(val))), "security.old_master_keys", "base64 of 32 bytes each")
    for key, addresses in (
        ("server.trusted_proxies", v["server"]["trusted_proxies"]),
        ("metrics.allow", v["metrics"]["allow"]),
    ):
        for address in addresses:
            try:
                ipaddress.ip_network(str(address), strict=False)
            except ValueError:
                raise SettingsError(f"setting {key}: bad address {address!r}") from None
    positive = [
        ("server", "port"),
        ("server", "processes"),
        ("live", "port"),
        ("live", "processes"),
        ("server", "max_body_bytes"),
        ("database", "threads"),
        ("wechat", "timeout_seconds"),
        ("auth", "session_ttl_seconds"),
        ("qr", "ttl_days"),
        ("rating", "window_days"),
        ("rating", "follow_up_days"),
        ("identity", "valid_days"),
        ("worker", "poll_seconds"),
        ("worker", "lease_seconds"),
        ("worker", "batch_size"),
        ("admin", "token_ttl_seconds"),
        ("redis", "timeout_seconds"),
    ]
    for section, key in positive:
        need(v[section][key] > 0, f"{section}.{key}", "must be positive")
    non_negative = [("ratelimit", k) for k in v["ratelimit"]]
    non_negative.append(("public", "stats_cache_seconds"))  # 0: the figures are not cached
    non_negative.append(("server", "drain_seconds"))  # 0: cut what is running at once
    non_negative.append(("public", "list_cache_seconds"))  # 0: page 1 is read every time
    non_negative.append(("live", "coalesce_ms"))  # 0: written as soon as the loop gets to it
    need(v["live"]["max_backlog_bytes"] > 0, "live.max_backlog_bytes", "must be positive")
    for section, key in non_negative:
        need(v[section][key] >= 0, f"{section}.{key}", "must not be negative")
    # One rule (product.md rule 14): the default rating applies at the window's end.
    need(
        v["rating"]["default_after_days"] == v["rating"]["window_days"],
        "rating.default_after_days",
        "must equal rating.window_days (the default applies at the window's end)",
    )
    need(
        v["qr"]["ttl_days"] <= v["rating"]["window_days"],
        "qr.ttl_days",
        "must not exceed rating.window_days",
    )
    need(280 <= v["qr"]["width"] <= 1280, "qr.width", "must be 280–1280")
    need(
        v["wechat"]["env_version"] in ("release", "trial", "develop"),
        "wechat.env_version",
        "release, trial or develop",
    )
    need(
        v["wechat"]["miniprogram_state"] in ("developer", "trial", "formal"),
        "wechat.miniprogram_state",
        "developer, trial or formal",
    )
    quiet = v["reminders"]["quiet_hours"]
    need(
        quiet == "" or bool(re.fullmatch(f"{_HHMM}-{_HHMM}", quiet)),
        "reminders.quiet_hours",
        'like "22:00-08:00" or ""',
    )
    need(
        0.01 <= v["worker"]["embedded_share"] <= 1,
        "worker.embedded_share",
        "must be 0.01–1",
    )
    need(
        0 <= v["reminders"]["spread_seconds"] <= 21600,
        "reminders.spread_seconds",
        "must be 0–21600",
    )
    need(v["server"]["port"] <= 65535, "server.port", "must be 1–65535")
    need(v["live"]["port"] <= 65535, "live.port", "must be 1–65535")
    need(0 <= v["sandbox"]["port"] <= 65535, "sandbox.port", "must be 1–65535 (0: a free one)")
    need(
        _is_time_zone(v["reminders"]["timezone"]),
        "reminders.timezone",
        f"unknown time zone {v['reminders']['timezone']!r} (an IANA name like Asia/Shanghai)",
    )
    need(v["log"]["format"] in ("json", "text"), "log.format", "json or text")
    need(
        v["log"]["level"] in ("DEBUG", "INFO", "WARNING", "ERROR"),
        "log.level",
        "DEBUG, INFO, WARNING or ERROR",
    )
    for key in ("extra_holidays", "extra_workdays"):
        for day in v["tickets"][key]:
            need(
                bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(day))),
                f"tickets.{key}",
                "ISO dates YYYY-MM-DD",
            )


def _is_time_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True
