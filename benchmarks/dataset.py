"""A province-shaped database for benchmarks and plan tests (issue 14, item 1).

    .venv/bin/python benchmarks/dataset.py sqlite:///tmp/big.db [--scale 1.0] [--seed 1]
    .venv/bin/python benchmarks/dataset.py postgresql://u:p@host/db --scale 0.1

At ``--scale 1`` (the default): 1,000,000 cases and QR tokens, 672,122 evaluations (first ratings
and ~1 % follow-ups; levels 5/4/3/2/1 ≈ 71/14/7/3.5/4.5 %, so ~8 % 差评; ~12 % default ratings),
285 k indicator rows, 97 k likes, 9.3 k tickets (with their events), 200 k users (150 k with a
verified identity), 2.62 M jobs of which 1,000,002 pending. Every count scales with ``--scale``.

The schema is the app's own (``models.migrations.migrate``), the catalogue is generated
(centers, departments, items, staff, windows) on top of ``conf/catalog.example.json`` (so the
other benchmarks' seeds find their codes). Rows are what the app writes, under the models'
table and column names:

- Encrypted with the database's keys (``security.master_key``): identities' name and ID number
  (one encryption each), users' ``session_key_enc``, cases' applicant name/ID/phone. The case
  and session ciphertexts come from a pool of 4,096 real ciphertexts per field (they decrypt
  with the database's keys, but the name inside is not the case's applicant): the app decrypts
  them only in the admin's case view, never in a hot path. Hashes (``applicant_id_hash``,
  ``id_hash``, ``rater_id_hash``) are the real keyed HMACs of valid resident ID numbers, so a
  case's applicant is the identity that rated it.
- Timeline: rated cases completed over the past year; unrated cases are inside their rating
  window (the default sweep has nothing to do, as in a running system); every pending job is
  due in the future (an idle worker finds nothing) unless ``due_now`` asks for a backlog of
  reminders due now; finished jobs ended in the last 29 days, plus ~1 % older than the 30-day
  retention (one purge's worth).
- Not generated: transparency-log leaves, messages, subscriptions, replies.

SQLite is loaded by ``executemany`` in one transaction per table with fast pragmas (journal
off, no sync), then put back to WAL; PostgreSQL by ``COPY``, sequences moved past the ids,
then ``VACUUM ANALYZE``. SQLite is left un-ANALYZEd, as the app leaves it.

Time at scale 1 on the 2-core machine of the issue (shared with other work): SQLite 575 s wall
(197 s of CPU; 2.1 GB), PostgreSQL 391 s; scale 0.03 in ~8 s.

``build(database_url, scale, seed)`` is the entry point for other benchmarks and tests;
:data:`AFTER_BUILD` hooks run at its end (e.g. rebuilding a rollup table).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import peewee  # noqa: E402

from wxbackend.services.public import rollup_rebuild  # noqa: E402

#: Counts at scale 1 (a province: the figures of issue 14).
FULL = {
    "cases": 1_000_000,
    "evaluations": 672_122,
    "indicator_rows": 285_000,
    "likes": 97_000,
    "tickets": 9_300,
    "users": 200_000,
    "jobs": 2_620_000,
    "pending_jobs": 1_000_002,
}
#: Levels of citizens' first ratings: (level, weight). 1 and 2 are 差评 (~9 % of citizens'
#: ratings; with the default ratings at 3, ~8 % of all).
LEVEL_MIX = ((5, 71.0), (4, 14.0), (3, 6.0), (2, 4.0), (1, 5.0))
DEFAULT_SHARE = 0.12
FOLLOW_UP_SHARE = 0.01
IDENTITY_SHARE = 0.75
POOL = 4096
COMMENTS = ("办事很快，窗口人员很耐心", "材料一次讲清楚了", "排队有点久", "服务态度好", "环境整洁")
BAD_COMMENTS = ("跑了两次才办好", "要求补交指南以外的材料", "窗口人员态度差")
NAMES = ("黎明", "陈晓", "王芳", "张伟", "李娜", "刘洋", "黄磊", "周敏")


def _rebuild_rollups(db: peewee.Database, _info: Info) -> None:
    """The figures' rollups, recounted from the rows just loaded (as ``rebuild-rollups``)."""
    rollup_rebuild.rebuild(db)


#: Called at the end of :func:`build` with ``(database, info)`` (the bound peewee database,
#: the :class:`Info`): other features register their rebuilds here (e.g. rollup tables).
AFTER_BUILD: list[Callable[[peewee.Database, Info], None]] = [_rebuild_rollups]


@dataclass
class Info:
    """What :func:`build` made: counts per table, its "now", how long it took."""

    url: str
    scale: float
    now: datetime
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: Users with a verified identity and unrated cases in their window (for /me and scans).
    citizens_with_pending: list[int] = field(default_factory=list)
    #: Citizen first ratings with a visible comment (for likes and lists).
    commented_evaluations: list[int] = field(default_factory=list)

    def line(self) -> str:
        parts = ", ".join(f"{k} {v:,}" for k, v in self.counts.items())
        return f"dataset scale {self.scale}: {parts} in {self.seconds:.1f} s"


def counts_at(scale: float) -> dict[str, int]:
    """The row counts of :data:`FULL` at ``scale`` (at least a handful of each)."""
    return {k: max(3, round(v * scale)) for k, v in FULL.items()}


# ---- writing ---------------------------------------------------------------------------------


class Loader:
    """Bulk rows into one table: ``executemany`` on SQLite, ``COPY`` on PostgreSQL."""

    def __init__(self, db: peewee.Database):
        self.db = db
        self.sqlite = isinstance(db, peewee.SqliteDatabase)
        self.counts: dict[str, int] = {}

    def load(self, model: type[peewee.Model], fields: Sequence[Any], rows: Iterable[tuple]) -> int:
        table = model._meta.table_name
        cols = [f.column_name for f in fields]
        n = 0
        if self.sqlite:
            sql = (
                f'INSERT INTO "{table}" ({", ".join(f"{chr(34)}{c}{chr(34)}" for c in cols)}) '
                f"VALUES ({', '.join('?' * len(cols))})"
            )
            cursor = self.db.connection().cursor()
            batch: list[tuple] = []
            for row in rows:
                batch.append(row)
                if len(batch) >= 20_000:
                    cursor.executemany(sql, batch)
                    n += len(batch)
                    batch.clear()
            if batch:
                cursor.executemany(sql, batch)
                n += len(batch)
        else:
            quoted = ", ".join(f'"{c}"' for c in cols)
            cursor = self.db.connection().cursor()
            with cursor.copy(f'COPY "{table}" ({quoted}) FROM STDIN') as copy:
                for row in rows:
                    copy.write_row(row)
                    n += 1
        self.counts[table] = self.counts.get(table, 0) + n
        return n

    def fix_sequences(self, models: Iterable[type[peewee.Model]]) -> None:
        """PostgreSQL: move each table's id sequence past the ids loaded explicitly."""
        if self.sqlite:
            return
        for model in models:
            table = model._meta.table_name
            self.db.execute_sql(
                f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                f'(SELECT COALESCE(MAX(id), 0) + 1 FROM "{table}"), false)'
            )


def _next_id(model: type[peewee.Model]) -> int:
    return (model.select(peewee.fn.MAX(model.id)).scalar() or 0) + 1


# ---- the generator ---------------------------------------------------------------------------


@dataclass
class Desk:
    """Where a case is handled: center, department, an item, a window and its clerk, an
    approver (what ``catalogue_refs`` copies into the evaluation)."""

    center: int
    department: int
    items: list[int]
    windows: list[tuple[int, int]]  # (window id, staff id)
    approvers: list[int]


class Generator:
    """Makes the rows, table by table, from one random seed and one "now"."""

    def __init__(self, scale: float, seed: int, now: datetime, settings: Any):
        from wxbackend.security import FieldCipher, LookupHasher, load_keys

        self.n = counts_at(scale)
        self.scale = scale
        self.rng = random.Random(seed)
        self.now = now
        self.settings = settings
        keys = load_keys(settings)
        self.cipher = FieldCipher(keys)
        self.hasher = LookupHasher(keys)
        self.window_days = settings.rating.window_days

    # -- helpers
    def pool(self, context: str, values: Sequence[str]) -> list[str]:
        return [self.cipher.encrypt(values[i % len(values)], context) for i in range(POOL)]

    def ago(self, days: float) -> datetime:
        return self.now - timedelta(seconds=days * 86400.0)

    @staticmethod
    def hexid(rng: random.Random) -> str:
        return hashlib.sha256(rng.randbytes(16)).hexdigest()

    # -- catalogue (peewee inserts: small)
    def catalogue(self) -> list[Desk]:
        from models.catalog import Center, Department, ServiceItem, Staff, Window
        from wxbackend.services.catalogue.importer import import_catalog, load_catalog_file

        import_catalog(load_catalog_file(str(ROOT / "conf" / "catalog.example.json")), self.hasher)
        n_centers = max(2, round(150 * self.scale))
        desks: list[Desk] = []
        now = self.now
        for c in range(n_centers):
            center = Center.create(
                code=f"DS-{c:04d}", name=f"数据集政务服务中心{c:04d}", area_code=f"44{c:04d}"
            )
            for d in range(8):
                code = f"DS-{c:04d}-D{d}"
                dept = Department.create(code=code, name=f"部门{d}", center=center, updated_at=now)
                items = [
                    ServiceItem.create(
                        code=f"{code}-I{i}", name=f"事项{c}-{d}-{i}", department=dept
                    )
                    for i in range(6)
                ]
                windows, approvers = [], []
                for s in range(6):
                    staff = Staff.create(
                        staff_no=f"{code}-S{s}",
                        name=NAMES[s % len(NAMES)],
                        role="window" if s < 4 else "approver",
                        department=dept,
                        center=center,
                    )
                    if s < 4:
                        win = Window.create(
                            code=f"{code}-W{s}", name=f"{s}号窗口", center=center, staff=staff
                        )
                        windows.append((win.id, staff.id))
                    else:
                        approvers.append(staff.id)
                desks.append(Desk(center.id, dept.id, [i.id for i in items], windows, approvers))
        return desks

    # -- citizens
    def users(self, start: int) -> Iterator[tuple]:
        session_pool = self.pool("user.session_key", [base64.b64encode(b"k" * 16).decode()])
        rng = self.rng
        for i in range(self.n["users"]):
            created = self.ago(rng.uniform(0, 400))
            yield (
                start + i,
                f"oDS{i:09d}{rng.randbytes(6).hex()}",
                None,
                session_pool[i % POOL],
                created,
                created + timedelta(days=rng.uniform(0, 30)),
            )

    def identities(self, user_start: int) -> Iterator[tuple]:
        from wxbackend.clients.partner import resident_id
        from wxbackend.security import normalize_id_number
        from wxbackend.services.citizens import identity

        self.identity_hashes: list[str] = []
        self.identity_users: list[int] = []
        self.identity_masks: list[str] = []
        n = round(self.n["users"] * IDENTITY_SHARE)
        for i in range(n):
            born = date(1950, 1, 1) + timedelta(days=(i // 1000) % 20000)
            number = resident_id("440103", f"{born:%Y%m%d}", i % 1000)
            name = NAMES[i % len(NAMES)]
            id_hash = self.hasher.hash(normalize_id_number(number), "id_number")
            self.identity_hashes.append(id_hash)
            self.identity_users.append(user_start + i)
            self.identity_masks.append(name[0] + "**")
            verified = self.ago(self.rng.uniform(0, 300))
            yield (
                i + 1,
                user_start + i,
                self.cipher.encrypt(name, identity.NAME_CONTEXT),
                self.cipher.encrypt(number, identity.ID_NUMBER_CONTEXT),
                id_hash,
                name[0] + "**",
                "wechat_face",
                verified,
                verified + timedelta(days=365),
            )

    # -- cases, tokens, evaluations
    def plan_cases(self, desks: list[Desk], case_start: int) -> None:
        """Decide every case's desk, times, applicant and rating (kept as compact lists)."""
        rng = self.rng
        n_cases, n_evals = self.n["cases"], self.n["evaluations"]
        n_follow = round(n_evals * FOLLOW_UP_SHARE)
        n_first = min(n_evals - n_follow, n_cases - 1)
        self.n_follow = n_evals - n_first
        self.case_start = case_start
        # Unrated cases are the newest ids (reported in the last window_days); rated before.
        self.rated = n_first
        levels, weights = zip(*LEVEL_MIX, strict=True)
        self.level: list[int] = []
        self.channel: list[str] = []
        self.completed: list[datetime] = []
        self.rated_at: list[datetime] = []
        self.desk: list[int] = []
        self.applicant: list[int] = []  # index into identity lists, or -1 (unknown applicant)
        n_ident = len(self.identity_hashes)
        span = 365.0
        for i in range(n_cases):
            self.desk.append(rng.randrange(len(desks)))
            if i < n_first:
                completed = self.ago(span - span * i / n_first + self.window_days)
                if rng.random() < DEFAULT_SHARE:
                    self.channel.append("default")
                    self.level.append(3)
                    self.rated_at.append(completed + timedelta(days=self.window_days))
                    self.applicant.append(rng.randrange(n_ident) if rng.random() < 0.5 else -1)
                else:
                    self.channel.append("qr" if rng.random() < 0.85 else "miniprogram")
                    self.level.append(rng.choices(levels, weights)[0])
                    self.rated_at.append(completed + timedelta(hours=rng.uniform(0.1, 48)))
                    self.applicant.append(rng.randrange(n_ident))
            else:
                completed = self.ago(rng.uniform(0.05, self.window_days - 0.05))
                self.channel.append("")
                self.level.append(0)
                self.rated_at.append(completed)
                self.applicant.append(rng.randrange(n_ident) if rng.random() < 0.7 else -1)
            self.completed.append(completed)

    def cases(self, desks: list[Desk]) -> Iterator[tuple]:
        from wxbackend.services.cases import reports

        names = self.pool(reports.NAME_CONTEXT, NAMES)
        ids = self.pool(reports.ID_CONTEXT, ["440103199001011234"])
        phones = self.pool(reports.PHONE_CONTEXT, ["13800138000"])
        rng = self.rng
        self.case_refs: list[tuple[int, int, int, int | None, int | None]] = []
        for i, completed in enumerate(self.completed):
            desk = desks[self.desk[i]]
            win, clerk = rng.choice(desk.windows)
            approver = rng.choice(desk.approvers)
            item = rng.choice(desk.items)
            self.case_refs.append((desk.center, item, desk.department, clerk, approver))
            a = self.applicant[i]
            id_hash = self.identity_hashes[a] if a >= 0 else self.hexid(rng)
            first_rated = self.rated_at[i] if i < self.rated else None
            yield (
                self.case_start + i,
                f"DS{i:09d}",
                item,
                desk.center,
                desk.department,
                win,
                clerk,
                approver,
                names[i % POOL],
                ids[i % POOL],
                id_hash,
                phones[i % POOL] if i % 3 else None,
                None,
                None,
                completed - timedelta(minutes=rng.uniform(5, 600)),
                completed,
                completed + timedelta(minutes=rng.uniform(0, 30)),
                None,
                first_rated,
            )

    def tokens(self, token_start: int) -> Iterator[tuple]:
        ttl = timedelta(days=self.settings.qr.ttl_days)
        rng = self.rng
        for i, completed in enumerate(self.completed):
            if i < self.rated:
                status = "used" if self.channel[i] == "qr" else "revoked"
                used = self.rated_at[i] if status == "used" else None
            else:
                status, used = "active", None
            yield (
                token_start + i,
                self.case_start + i,
                self.hexid(rng),
                status,
                completed,
                completed + ttl,
                used,
            )

    def evaluations(self, eval_start: int) -> Iterator[tuple]:
        rng = self.rng
        self.bad: list[int] = []  # evaluation ids of 差评 first ratings (for tickets)
        self.first_eval: list[int] = []  # evaluation id per rated case
        self.commented: list[int] = []
        eid = eval_start
        citizens = [i for i in range(self.rated) if self.channel[i] != "default"]
        follow = set(rng.sample(citizens, min(self.n_follow, len(citizens))))
        for i in range(self.rated):
            rows = [(1, self.rated_at[i], self.level[i], self.channel[i])]
            if i in follow:
                at = self.rated_at[i] + timedelta(days=rng.uniform(1, 30))
                rows.append(
                    (
                        2,
                        min(at, self.now),
                        rng.choices(*zip(*LEVEL_MIX, strict=True))[0],
                        "miniprogram",
                    )
                )
            for number, at, level, channel in rows:
                row = self._evaluation(eid, i, number, at, level, channel)
                if number == 1:
                    self.first_eval.append(eid)
                    if level <= 2:
                        self.bad.append(eid)
                    if row[14] is not None and row[15] == "visible":
                        self.commented.append(eid)
                yield row
                eid += 1
        self.eval_count = eid - eval_start

    def _evaluation(
        self, eid: int, i: int, number: int, at: datetime, level: int, channel: str
    ) -> tuple:
        rng = self.rng
        center, item, department, clerk, approver = self.case_refs[i]
        citizen = channel != "default"
        a = self.applicant[i]
        comment = None
        if citizen and rng.random() < 0.35:
            comment = rng.choice(BAD_COMMENTS if level <= 2 else COMMENTS)
        status = "visible" if comment is None or rng.random() < 0.97 else "hidden"
        stage = (lambda: min(5, max(1, level + rng.choice((-1, 0, 0, 0, 1))))) if citizen else None
        return (
            eid,
            self.case_start + i,
            number,
            channel,
            self.identity_users[a] if citizen else None,
            self.identity_hashes[a] if citizen else None,
            self.identity_masks[a] if citizen else None,
            level,
            stage() if stage else None,
            stage() if stage else None,
            stage() if stage else None,
            stage() if stage else None,
            stage() if stage else None,
            stage() if stage else None,
            comment,
            status,
            0,
            at,
            center,
            item,
            department,
            clerk,
            approver,
        )

    def indicator_rows(self, bad_codes: list[int], good_codes: list[int]) -> Iterator[tuple]:
        rng = self.rng
        target = self.n["indicator_rows"]
        n = 0
        for eid in self.bad:
            for code in rng.sample(bad_codes, rng.randint(1, 3)):
                if n >= target:
                    return
                n += 1
                yield (n, eid, code)
        chosen = rng.sample(self.first_eval, min(len(self.first_eval), max(0, target - n)))
        for eid in sorted(chosen):
            n += 1
            yield (n, eid, rng.choice(good_codes))

    def likes(self) -> Iterator[tuple]:
        rng = self.rng
        self.like_counts: dict[int, int] = {}
        pool = self.commented or self.first_eval
        hot = pool[-max(1, len(pool) // 10) :]  # recent comments collect most likes
        n_ident = len(self.identity_hashes)
        for n in range(1, self.n["likes"] + 1):
            eid = rng.choice(hot) if rng.random() < 0.6 else rng.choice(pool)
            self.like_counts[eid] = self.like_counts.get(eid, 0) + 1
            a = rng.randrange(n_ident)
            yield (
                n,
                eid,
                self.identity_users[a],
                self.hexid(rng),
                self.identity_masks[a],
                self.ago(rng.uniform(0, 300)),
            )

    def tickets(self) -> tuple[list[tuple], list[tuple]]:
        rng = self.rng
        tickets, events = [], []
        chosen = self.bad[-self.n["tickets"] :]
        eval_case = {eid: i for i, eid in enumerate(self.first_eval)}
        steps = ("open", "verified", "rectified", "called_back", "closed")
        for tid, eid in enumerate(chosen, start=1):
            i = eval_case[eid]
            opened = self.rated_at[i]
            center, _, department, _, _ = self.case_refs[i]
            age = (self.now - opened).days
            status = rng.choices(
                ("closed", "invalid", "called_back", "rectified", "verified", "open"),
                (70, 5, 5, 5, 5, 10) if age > 10 else (10, 2, 10, 20, 28, 30),
            )[0]
            reached = 5 if status in ("closed", "invalid") else steps.index(status) + 1
            at = [opened + timedelta(days=d * rng.uniform(0.3, 1.5)) for d in range(reached)]
            at = [min(t, self.now) for t in at]
            verify_due = opened + timedelta(days=2)
            rectify_due = opened + timedelta(days=7)
            tickets.append(
                (
                    tid,
                    eid,
                    self.case_start + i,
                    center,
                    department,
                    status,
                    opened,
                    verify_due,
                    rectify_due,
                    at[1] if reached > 1 else None,
                    at[2] if reached > 2 else None,
                    at[-1] if status in ("closed", "invalid") else None,
                    rng.random() < 0.05,
                )
            )
            for k in range(reached):
                name = status if (k == reached - 1 and status == "invalid") else steps[k]
                events.append((len(events) + 1, tid, name, name, "admin", "", at[k]))
        return tickets, events

    def jobs(self, job_start: int, due_now: int) -> Iterator[tuple]:
        """Pending: each unrated case's default rating and reminders (future; ``due_now`` of
        the reminders due now), topped up with future rectified notices; finished: the
        cancelled or done jobs of rated cases, then hourly housekeeping."""
        rng = self.rng
        total, pending = self.n["jobs"], self.n["pending_jobs"]
        jid = job_start
        made_pending = 0
        unrated = range(self.rated, len(self.completed))

        def job(kind, key, payload, due, status, finished=None, created=None):
            nonlocal jid
            jid += 1
            return (
                jid - 1,
                kind,
                key,
                json.dumps(payload),
                due,
                status,
                1 if status == "done" else 0,
                None,
                None,
                None,
                created or min(due, self.now),
                finished,
            )

        end = timedelta(days=self.window_days)
        for i in unrated:
            if made_pending >= pending:
                break
            cid = self.case_start + i
            yield job(
                "default_rating",
                f"default_rating:{cid}",
                {"case_id": cid},
                self.completed[i] + end,
                "pending",
                created=self.completed[i],
            )
            made_pending += 1
        for n in (1, 2):
            for i in unrated:
                if made_pending >= pending:
                    break
                cid = self.case_start + i
                if due_now > 0:
                    due = self.now - timedelta(seconds=rng.uniform(1, 600))
                    due_now -= 1
                else:
                    due = self.now + timedelta(seconds=rng.uniform(60, self.window_days * 86400))
                yield job(
                    "reminder",
                    f"reminder:{cid}:{n}",
                    {"case_id": cid, "n": n},
                    due,
                    "pending",
                    created=self.completed[i],
                )
                made_pending += 1
        t = 0
        while made_pending < pending:
            t += 1
            due = self.now + timedelta(seconds=rng.uniform(60, 86400))
            yield job("rectified", f"rectified:ds{t}", {"ticket_id": t}, due, "pending")
            made_pending += 1
        finished = total - pending
        made = 0
        for i in range(self.rated):
            cid = self.case_start + i
            default = self.channel[i] == "default"
            for kind, key in (
                ("default_rating", f"default_rating:{cid}"),
                ("reminder", f"reminder:{cid}:1"),
                ("reminder", f"reminder:{cid}:2"),
            ):
                if made >= finished:
                    break
                done = default or (kind == "reminder" and key.endswith(":1") and i % 2 == 0)
                ended = self._finished_at()
                yield job(
                    kind,
                    key,
                    {"case_id": cid},
                    ended,
                    "done" if done else "cancelled",
                    finished=ended,
                )
                made += 1
        h = 0
        while made < finished:
            h += 1
            ended = self._finished_at()
            yield job(
                "housekeeping",
                f"housekeeping:ds:{h}",
                {"task": "flag_overdue"},
                ended,
                "done",
                finished=ended,
            )
            made += 1

    def _finished_at(self) -> datetime:
        if self.rng.random() < 0.01:
            return self.ago(self.rng.uniform(30.05, 60))
        return self.ago(self.rng.uniform(0, 29))


# ---- build -----------------------------------------------------------------------------------


def _settings_for(database_url: str) -> Any:
    from wxbackend.settings import load_settings

    env = {k: v for k, v in os.environ.items() if k.startswith("WXB_")}
    env["WXB_DATABASE_URL"] = database_url
    return load_settings(env=env)


def build(
    database_url: str,
    scale: float = 1.0,
    seed: int = 1,
    *,
    settings: Any = None,
    now: datetime | None = None,
    due_now: int = 0,
    analyze: bool = False,
) -> Info:
    """Migrate ``database_url`` (empty) and fill it with a province-shaped dataset at
    ``scale``; return its :class:`Info`. ``settings`` (with the database's keys) default to
    ``WXB_*`` of the environment with this URL. ``due_now``: that many pending reminders due
    now (a backlog for the worker). ``analyze``: run ANALYZE on SQLite at the end (the app
    does not; PostgreSQL is always VACUUM ANALYZEd, as autovacuum would)."""
    from models.base import utcnow
    from models.case import Case, QrToken
    from models.evaluation import Evaluation, EvaluationIndicator, Indicator, Like
    from models.identity import Identity
    from models.job import Job
    from models.migrations import migrate
    from models.ticket import Ticket, TicketEvent
    from models.user import User
    from wxbackend.db import Database

    t0 = time.monotonic()
    settings = settings or _settings_for(database_url)
    holder = Database(settings)
    db = holder.db
    info = Info(url=database_url, scale=scale, now=now or utcnow())
    gen = Generator(scale, seed, info.now, settings)
    loader = Loader(db)
    try:
        migrate(db)
        if loader.sqlite:
            for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-262144"):
                db.execute_sql(f"PRAGMA {pragma}")
        with db.atomic():
            desks = gen.catalogue()
        user_start = _next_id(User)
        with db.atomic():
            loader.load(User, _fields(User), gen.users(user_start))
            loader.load(Identity, _fields(Identity), gen.identities(user_start))
        gen.plan_cases(desks, _next_id(Case))
        with db.atomic():
            loader.load(Case, _fields(Case), gen.cases(desks))
        with db.atomic():
            loader.load(QrToken, _fields(QrToken), gen.tokens(_next_id(QrToken)))
        eval_fields = _fields(
            Evaluation, skip=("moderation_reason", "contact_at", "contact_reference")
        )
        with db.atomic():
            loader.load(Evaluation, eval_fields, gen.evaluations(_next_id(Evaluation)))
        codes = [row.id for row in Indicator.select(Indicator.id).order_by(Indicator.sort_order)]
        with db.atomic():
            loader.load(
                EvaluationIndicator,
                _fields(EvaluationIndicator),
                gen.indicator_rows(codes[:7], codes[7:] or codes),
            )
            loader.load(Like, _fields(Like), gen.likes())
        _set_like_counts(db, gen.like_counts)
        tickets, events = gen.tickets()
        ticket_fields = _fields(
            Ticket,
            skip=(
                "appeal_status",
                "invalid_proposed_by",
                "invalid_proposed_note",
                "invalid_proposed_at",
            ),
        )
        with db.atomic():
            loader.load(Ticket, ticket_fields, tickets)
            loader.load(TicketEvent, _fields(TicketEvent), events)
        with db.atomic():
            loader.load(Job, _fields(Job), gen.jobs(_next_id(Job), due_now))
        loader.fix_sequences(
            [
                User,
                Identity,
                Case,
                QrToken,
                Evaluation,
                EvaluationIndicator,
                Like,
                Ticket,
                TicketEvent,
                Job,
            ]
        )
        if loader.sqlite:
            db.execute_sql("PRAGMA journal_mode=WAL")
            db.execute_sql("PRAGMA synchronous=NORMAL")
            if analyze:
                db.execute_sql("ANALYZE")
        else:
            db.execute_sql("VACUUM ANALYZE")
        info.counts = dict(loader.counts)
        info.citizens_with_pending = sorted(
            {
                gen.identity_users[gen.applicant[i]]
                for i in range(gen.rated, len(gen.completed))
                if gen.applicant[i] >= 0
            }
        )
        info.commented_evaluations = gen.commented
        for hook in AFTER_BUILD:
            hook(db, info)
    finally:
        # Not holder.close(): its PRAGMA optimize would leave statistics behind, and the
        # database is meant to be as the app leaves it (ANALYZEd only with ``analyze``).
        holder.executor.shutdown(wait=True)
        db.close()
        if not loader.sqlite:
            db.close_all()
    info.seconds = time.monotonic() - t0
    return info


def _fields(model: type[peewee.Model], skip: Sequence[str] = ()) -> list[peewee.Field]:
    """The model's columns in declaration order (the generators' tuple order)."""
    return [f for f in model._meta.sorted_fields if f.name not in skip]


def _set_like_counts(db: peewee.Database, counts: dict[int, int]) -> None:
    from models.evaluation import Evaluation

    table = Evaluation._meta.table_name
    param = "?" if isinstance(db, peewee.SqliteDatabase) else "%s"
    rows = [(n, eid) for eid, n in counts.items()]
    with db.atomic():
        cursor = db.connection().cursor()
        cursor.executemany(f'UPDATE "{table}" SET like_count = {param} WHERE id = {param}', rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("database_url", help="sqlite:///path.db (new file) or postgresql://… (empty)")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--due-now", type=int, default=0, help="pending reminders due now")
    ap.add_argument("--analyze", action="store_true", help="ANALYZE the SQLite file at the end")
    args = ap.parse_args()
    info = build(
        args.database_url, args.scale, args.seed, due_now=args.due_now, analyze=args.analyze
    )
    print(info.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
