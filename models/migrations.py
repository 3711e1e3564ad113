"""Schema migrations, applied in order by ``wxbackend migrate`` (and by ``serve`` on an
empty database). Each migration runs once, in its own transaction, and is recorded in
``schema_version``. Add new migrations at the end; never edit an applied one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import peewee
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as migrate_columns

from models.access import Admin, Partner, PartnerCenter
from models.alert import StaffAlert
from models.audit import AuditEntry
from models.base import BaseModel, utcnow
from models.case import Case, QrToken
from models.catalog import Center, Department, ServiceItem, Staff, Window
from models.device import DeviceToken, WindowDevice
from models.evaluation import (
    DEFAULT_INDICATORS,
    Evaluation,
    EvaluationIndicator,
    Indicator,
    Like,
    Reply,
)
from models.idempotency import IdempotentRequest
from models.identity import FaceAttempt, Identity
from models.job import Job
from models.messaging import Message, MessageAttempt, PushReceipt, Subscription
from models.rollup import ROLLUP_MODELS, RollupMonth
from models.session import Session
from models.settings_store import WeChatConfigVersion
from models.ticket import Ticket, TicketEvent
from models.transparency import LogCheckpoint, LogCosignature, LogHead, LogLeaf, LogNode
from models.user import User

log = logging.getLogger("wxbackend.migrations")


class SchemaVersion(BaseModel):
    version = peewee.IntegerField(primary_key=True)
    name = peewee.CharField(max_length=100)
    applied_at = peewee.DateTimeField(default=utcnow)


def _create(*models: type[BaseModel]) -> Callable[[peewee.Database], None]:
    def apply(db: peewee.Database) -> None:
        db.create_tables(models, safe=True)

    return apply


def _cases_and_ratings(db: peewee.Database) -> None:
    db.create_tables(
        [
            Case,
            QrToken,
            Indicator,
            Evaluation,
            EvaluationIndicator,
            Like,
            Reply,
            Ticket,
            TicketEvent,
        ],
        safe=True,
    )
    for order, (code, label) in enumerate(DEFAULT_INDICATORS):
        Indicator.insert(code=code, label=label, sort_order=order).on_conflict_ignore().execute()


def _add_columns(db: peewee.Database, *columns: peewee.Field) -> None:
    """Add the model fields' columns their tables lack (a database created by an earlier
    migration from today's models already has them)."""
    migrator = SchemaMigrator.from_database(db)
    for field in columns:
        table = field.model._meta.table_name
        if field.column_name not in {c.name for c in db.get_columns(table)}:
            migrate_columns(migrator.add_column(table, field.column_name, field))


def _case_no_per_partner(db: peewee.Database) -> None:
    """``case.case_no`` was unique across partners: make it unique per partner."""
    old = next((i for i in db.get_indexes("case") if i.name == "case_case_no"), None)
    if old is not None and old.unique:
        db.execute_sql('DROP INDEX "case_case_no"')
    Case._schema.create_indexes(safe=True)


def _reach_and_callbacks(db: peewee.Database) -> None:
    """Admins linked to a staff member; a callback rating's contact time and reference; a
    ticket's pending proposal to declare its 差评 invalid."""
    _add_columns(
        db,
        Admin.staff_no,
        Evaluation.contact_at,
        Evaluation.contact_reference,
        Ticket.invalid_proposed_by,
        Ticket.invalid_proposed_note,
        Ticket.invalid_proposed_at,
    )
    db.create_tables([PartnerCenter], safe=True)
    _case_no_per_partner(db)


def _transparency_log(db: peewee.Database) -> None:
    db.create_tables([LogHead, LogLeaf, LogNode, LogCheckpoint, LogCosignature], safe=True)
    LogHead.insert(id=1, tree_size=0, frontier=b"").on_conflict_ignore().execute()
    # Ratings stored before the log existed become its first leaves (a no-op on a new database).
    from wxbackend.services.transparency.log import backfill  # a service: imported late

    backfill()


def _ticket_due_index(db: peewee.Database) -> None:
    """The figures select tickets by ``rectify_due`` (按时整改率 over tickets due in a period)."""
    Ticket._schema.create_indexes(safe=True)


def _staff_alerts(db: peewee.Database) -> None:
    """Each center's WeCom robot key (encrypted, with its mask) and the alerts sent to it."""
    _add_columns(db, Center.wecom_key_enc, Center.wecom_key_mask)
    db.create_tables([StaffAlert], safe=True)


def _idempotency(db: peewee.Database) -> None:
    db.create_tables([IdempotentRequest], safe=True)


def _rollups(db: peewee.Database) -> None:
    """The figures' rollups, filled from the rows already stored (a no-op on a new database)."""
    db.create_tables(ROLLUP_MODELS, safe=True)
    from wxbackend.services.public.rollup_rebuild import rebuild  # a service: imported late

    rebuild(db)


def _month_rollup(db: peewee.Database) -> None:
    """The month shape of the figures, summed from the day shape already kept."""
    db.create_tables([RollupMonth], safe=True)
    from wxbackend.services.public.rollup_rebuild import rebuild_months  # a service: late

    rebuild_months(db)


#: Partial indexes of the hot job and case statements (issue 14): each one covers only the
#: rows its statement looks for, so a poll or a sweep that finds nothing reads nothing.
_PLAN_INDEXES = (
    # the worker's claim and due count: pending jobs by due time; expired leases
    'CREATE INDEX IF NOT EXISTS "job_pending_due" ON "job" ("due_at", "id") '
    "WHERE status = 'pending'",
    'CREATE INDEX IF NOT EXISTS "job_running_lease" ON "job" ("lease_until", "id") '
    "WHERE status = 'running'",
    # purge_jobs: finished jobs by end time
    'CREATE INDEX IF NOT EXISTS "job_finished" ON "job" ("finished_at") '
    "WHERE status IN ('done', 'cancelled')",
    # the default-rating sweep: unrated cases by completion
    'CREATE INDEX IF NOT EXISTS "case_unrated" ON "case" ("completed_at") '
    "WHERE first_rated_at IS NULL",
    # the push-receipt prune
    'CREATE INDEX IF NOT EXISTS "push_receipt_received_at" ON "push_receipt" ("received_at")',
)


def _plan_indexes(db: peewee.Database) -> None:
    for statement in _PLAN_INDEXES:
        db.execute_sql(statement)


def _pending_due_with_kind(db: peewee.Database) -> None:
    """``job_pending_due`` also carries ``kind``, the claim's and the due count's filter: both
    read the index alone (PostgreSQL's index-only scan, SQLite's covering index) instead of
    one table row per due job (issue 14: ``due_count`` read ~700 rows at random on PostgreSQL
    at scale 1, 6.7 ms). ``status`` too: SQLite before 3.42 counts a partial index as covering
    only when it holds every column the statement names. Same name: ``INDEXED BY`` stays."""
    db.execute_sql('DROP INDEX IF EXISTS "job_pending_due"')
    db.execute_sql(
        'CREATE INDEX "job_pending_due" ON "job" ("due_at", "id", "kind", "status") '
        "WHERE status = 'pending'"
    )


MIGRATIONS: list[tuple[int, str, Callable[[peewee.Database], None]]] = [
    (
        1,
        "users, identities, catalogue, partners, admins",
        _create(
            User,
            Identity,
            FaceAttempt,
            Center,
            Department,
            ServiceItem,
            Staff,
            Window,
            Partner,
            Admin,
        ),
    ),
    (2, "cases, QR tokens, evaluations, likes, replies, tickets", _cases_and_ratings),
    (3, "audit log, WeChat configuration versions", _create(AuditEntry, WeChatConfigVersion)),
    (4, "scheduled jobs", _create(Job)),
    (
        5,
        "subscriptions, messages, push receipts",
        _create(Subscription, Message, MessageAttempt, PushReceipt),
    ),
    (6, "staff_no, callback contact, invalidation, partner centers", _reach_and_callbacks),
    (7, "transparency log", _transparency_log),
    (8, "index of tickets by rectification deadline", _ticket_due_index),
    (9, "WeCom robot keys of centers, staff alerts", _staff_alerts),
    (10, "evaluator screens' device keys", _create(WindowDevice)),
    (11, "idempotency keys of rating writes", _idempotency),
    (12, "partial indexes of job claims, purges and the default sweep", _plan_indexes),
    (13, "rollups of the figures and the staff ranking", _rollups),
    (14, "durable sessions of citizens and admins (Redis caches them)", _create(Session)),
    (15, "month rollup of the figures (long ranges read whole months)", _month_rollup),
    (
        17,
        "the pending jobs' partial index carries the kind (index-only claims, counts)",
        _pending_due_with_kind,
    ),
    (18, "durable device tokens of evaluator screens (Redis caches them)", _create(DeviceToken)),
]


def applied_versions(db: peewee.Database) -> set[int]:
    if not db.table_exists(SchemaVersion._meta.table_name):
        return set()
    return {row.version for row in SchemaVersion.select(SchemaVersion.version)}


def migrate(db: peewee.Database) -> list[int]:
    """Apply every pending migration; return the versions applied now."""
    db.create_tables([SchemaVersion], safe=True)
    done = applied_versions(db)
    applied = []
    for version, name, apply in MIGRATIONS:
        if version in done:
            continue
        with db.atomic():
            apply(db)
            SchemaVersion.create(version=version, name=name)
        log.info("applied migration %d: %s", version, name)
        applied.append(version)
    return applied


def is_empty(db: peewee.Database) -> bool:
    return not applied_versions(db)
