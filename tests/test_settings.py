"""Settings: defaults, file and environment layers, errors that name the key."""

import pytest

from wxbackend.settings import DEFAULT_FILE, SettingsError, load_settings


def test_defaults_match_the_contract():
    s = load_settings(env={})
    assert s.database.url == "sqlite:///data/wxbackend.db"
    assert s.redis.url == "embedded"
    assert s.wechat.api_base == "sandbox"
    assert s.qr.ttl_days == 7
    assert s.wechat.timeout_seconds == 5.0
    assert s.ratelimit.login_per_ip_per_minute == 120
    assert s.ratelimit.login_per_openid_per_minute == 10
    assert s.reminders.first_after_seconds == 7200
    assert s.reminders.template_fields["thing1"] == "item_name"
    assert s.identity.valid_days == 365 and s.identity.allow_rebind is True
    assert s.rating.default_after_days == 7 and s.rating.require_applicant is True


def test_every_default_key_is_commented():
    """conf/default.toml explains its settings: every section has comments."""
    text = DEFAULT_FILE.read_text(encoding="utf-8")
    assert text.count("#") > 40


def test_file_then_environment(tmp_path):
    extra = tmp_path / "prod.toml"
    extra.write_text('[database]\nurl = "postgresql://u@h/db"\n[wechat]\ntimeout_seconds = 3\n')
    s = load_settings(extra, env={"WXB_WECHAT_TIMEOUT_SECONDS": "2.5", "WXB_QR_TTL_DAYS": "3"})
    assert s.database.url == "postgresql://u@h/db"
    assert s.wechat.timeout_seconds == 2.5
    assert s.qr.ttl_days == 3
    s2 = load_settings(env={"WXB_CONFIG": str(extra)})
    assert s2.wechat.timeout_seconds == 3.0


def test_environment_types():
    s = load_settings(
        env={
            "WXB_SERVER_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
            "WXB_IDENTITY_ALLOW_REBIND": "false",
            "WXB_REMINDERS_TEMPLATE_FIELDS": '{"thing1": "item_name"}',
        }
    )
    assert s.server.trusted_proxies == ["10.0.0.0/8", "127.0.0.1"]
    assert s.identity.allow_rebind is False
    assert s.reminders.template_fields == {"thing1": "item_name"}


@pytest.mark.parametrize(
    "env, named",
    [
        ({"WXB_DATABASE_URLL": "x"}, "WXB_DATABASE_URLL"),
        ({"WXB_QR_TTL_DAYS": "seven"}, "WXB_QR_TTL_DAYS"),
        ({"WXB_IDENTITY_ALLOW_REBIND": "maybe"}, "WXB_IDENTITY_ALLOW_REBIND"),
        ({"WXB_DATABASE_URL": "mysql://x"}, "database.url"),
        ({"WXB_REDIS_URL": "memcached://x"}, "redis.url"),
        ({"WXB_QR_TTL_DAYS": "30"}, "qr.ttl_days"),
        ({"WXB_WECHAT_TIMEOUT_SECONDS": "0"}, "wechat.timeout_seconds"),
        ({"WXB_SECURITY_MASTER_KEY": "short"}, "security.master_key"),
        ({"WXB_REMINDERS_QUIET_HOURS": "late"}, "reminders.quiet_hours"),
        ({"WXB_SERVER_TRUSTED_PROXIES": "not-an-ip"}, "server.trusted_proxies"),
        ({"WXB_WECHAT_API_BASE": "https://api.weixin.qq.com"}, "wechat.api_base"),
        ({"WXB_WECOM_API_BASE": "ftp://qyapi.weixin.qq.com/"}, "wecom.api_base"),
        ({"WXB_WECOM_API_BASE": "https://qyapi.weixin.qq.com"}, "wecom.api_base"),
    ],
)
def test_bad_values_name_the_key(env, named):
    with pytest.raises(SettingsError) as info:
        load_settings(env=env)
    assert named in str(info.value)


def test_unknown_key_in_file(tmp_path):
    extra = tmp_path / "bad.toml"
    extra.write_text("[wechat]\ntimeout = 3\n")
    with pytest.raises(SettingsError, match="wechat.timeout"):
        load_settings(extra, env={})
    extra.write_text("[nosuch]\nx = 1\n")
    with pytest.raises(SettingsError, match="nosuch"):
        load_settings(extra, env={})
    extra.write_text('[wechat]\ntimeout_seconds = "5"\n')
    with pytest.raises(SettingsError, match="wechat.timeout_seconds"):
        load_settings(extra, env={})


def test_frozen():
    s = load_settings(env={})
    with pytest.raises(AttributeError):
        s.wechat.timeout_seconds = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        s.wechat = None  # type: ignore[misc]
    changed = s.replace(qr__ttl_days=2)
    assert changed.qr.ttl_days == 2 and s.qr.ttl_days == 7
