"""A backlog of due reminders, seeded fast with bulk inserts (tests and benchmarks).

    from tests.tools.reminder_backlog import seed_backlog, sandbox_sent, worker_env

:func:`seed_backlog` writes N users, their verified identities, one finished case each, a
reminder subscription (quota 1) and a due ``reminder`` job per case, straight into the
database; registers the template in the sandbox and gives every openid one WeChat quota
(``POST /_sandbox/quota/bulk``). :func:`worker_env` is the environment of a ``wxbackend
worker`` subprocess on that database, Redis and sandbox. :func:`sandbox_sent` reads back
what the sandbox received.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

from models.base import utcnow
from models.case import Case
from models.catalog import Center, Department, ServiceItem
from models.identity import Identity
from models.job import Job
from models.messaging import Subscription
from models.migrations import migrate
from models.user import User
from wxbackend.db import database, make_peewee_database
from wxbackend.security import LookupHasher, load_keys
from wxbackend.services.catalogue.importer import import_catalog, load_catalog_file
from wxbackend.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent.parent
TEMPLATE = "Reminder_" + "L" * 34
FIELDS = {"thing1": "thing", "time2": "time", "thing3": "thing"}
CHUNK = 500
_CASE_ID_RE = re.compile(r"case_id=(\d+)")


def worker_env(
    db_path: Path, data_dir: Path, redis_url: str, sandbox_url: str, **extra: str
) -> dict[str, str]:
    """Environment of a ``wxbackend worker`` subprocess sharing this backlog."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WXB_")}
    env.update(
        {
            "WXB_DATABASE_URL": f"sqlite:///{db_path}",
            "WXB_SERVER_DATA_DIR": str(data_dir),
            "WXB_REDIS_URL": redis_url,
            "WXB_WECHAT_API_BASE": sandbox_url,
            "WXB_WECHAT_ALLOW_SANDBOX": "true",
            "WXB_WECHAT_TEMPLATE_REMINDER": TEMPLATE,
            "WXB_REMINDERS_QUIET_HOURS": "",
            "WXB_WORKER_EMBEDDED": "false",
            "WXB_LOG_FORMAT": "text",
            **extra,
        }
    )
    return env


def settings_for(env: dict[str, str]) -> Settings:
    return load_settings(env={k: v for k, v in env.items() if k.startswith("WXB_")})


def _post(url: str, body: Any) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


def _bulk(model: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        model.insert_many(rows[start : start + CHUNK]).execute()


def seed_backlog(
    settings: Settings, sandbox_url: str, n: int, due_in: float = -1.0, wechat_quota: int = 1
) -> list[int]:
    """Seed ``n`` reminders due ``due_in`` seconds from now (default: already due; see the
    module); returns the case ids. ``wechat_quota``: the one-time quotas each openid holds in
    the sandbox (more than one lets a duplicate send through instead of answering 43101)."""
    keys = load_keys(settings)
    db = make_peewee_database(settings)
    database.initialize(db)
    migrate(db)
    catalog = load_catalog_file(str(ROOT / "conf" / "catalog.example.json"))
    import_catalog(catalog, LookupHasher(keys))
    now = utcnow()
    tag = now.strftime("%H%M%S%f")
    with db.atomic():
        item = ServiceItem.get(ServiceItem.code == "440103-SY-001")
        department = Department.get(Department.id == item.department_id)
        center = Center.get(Center.id == department.center_id)
        openids = [f"oBL{tag}{i:07d}" for i in range(n)]
        _bulk(User, [{"openid": o, "created_at": now, "last_login_at": now} for o in openids])
        user_ids = _user_ids(tag)
        hashes = [f"bl{tag}{i:040d}" for i in range(n)]
        _bulk(
            Identity,
            [
                {
                    "user": user_ids[openids[i]],
                    "name_enc": "-",
                    "id_number_enc": "-",
                    "id_hash": hashes[i],
                    "name_masked": "黎**",
                    "verified_at": now,
                    "expires_at": now + timedelta(days=365),
                }
                for i in range(n)
            ],
        )
        _bulk(
            Case,
            [
                {
                    "case_no": f"BL{tag}-{i:07d}",
                    "item": item.id,
                    "center": center.id,
                    "department": department.id,
                    "applicant_name_enc": "-",
                    "applicant_id_enc": "-",
                    "applicant_id_hash": hashes[i],
                    "accepted_at": now - timedelta(hours=3),
                    "completed_at": now - timedelta(hours=2),
                    "reported_at": now - timedelta(hours=2),
                }
                for i in range(n)
            ],
        )
        case_ids = [
            c.id
            for c in Case.select(Case.id)
            .where(Case.case_no.startswith(f"BL{tag}-"))
            .order_by(Case.case_no)
        ]
        _bulk(
            Subscription,
            [
                {"user": user_ids[o], "template_id": TEMPLATE, "quota": 1, "updated_at": now}
                for o in openids
            ],
        )
        due = now + timedelta(seconds=due_in)
        _bulk(
            Job,
            [
                {
                    "kind": "reminder",
                    "key": f"reminder:{case_id}:1",
                    "payload": json.dumps({"case_id": case_id, "n": 1}),
                    "due_at": due,
                    "created_at": now,
                }
                for case_id in case_ids
            ],
        )
    db.close()
    _post(sandbox_url + "_sandbox/templates", {"template_id": TEMPLATE, "fields": FIELDS})
    _post(
        sandbox_url + "_sandbox/quota/bulk",
        {"template_id": TEMPLATE, "openids": openids, "count": wechat_quota},
    )
    return case_ids


def _user_ids(tag: str) -> dict[str, int]:
    return {
        u.openid: u.id
        for u in User.select(User.id, User.openid).where(User.openid.startswith(f"oBL{tag}"))
    }


def sandbox_sent(sandbox_url: str) -> list[int]:
    """Case ids of every message the sandbox accepted (duplicates kept)."""
    items = _get(sandbox_url + "_sandbox/messages?template_id=" + TEMPLATE)["items"]
    return [int(_CASE_ID_RE.search(m["page"])[1]) for m in items]


def sandbox_stats(sandbox_url: str) -> dict[str, Any]:
    return _get(sandbox_url + "_sandbox/stats")
