"""Every route of the server, gathered from each handler module's ``default_handlers``."""

from __future__ import annotations

import tornado.web

from handlers import (
    admin,
    admin_accounts,
    admin_catalog,
    admin_evaluations,
    admin_messages,
    admin_stats,
    admin_tickets,
    auth,
    devices,
    evaluations,
    health,
    identity,
    live,
    pages,
    partner,
    public,
    push,
    subscriptions,
    transparency,
)

MODULES = [
    health,
    auth,
    identity,
    partner,
    evaluations,
    admin,
    public,
    admin_catalog,
    admin_accounts,
    admin_stats,
    push,
    subscriptions,
    admin_tickets,
    admin_evaluations,
    admin_messages,
    pages,
    live,
    devices,
    transparency,
]


def all_routes() -> list[tornado.web.URLSpec]:
    rules: list[tornado.web.URLSpec] = []
    for module in MODULES:
        rules.extend(module.default_handlers)
    return rules
