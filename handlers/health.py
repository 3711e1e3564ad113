"""Operations endpoints: health, metrics, the OpenAPI document."""

from __future__ import annotations

import json

from handlers.base import BaseHandler, bearer_token, route
from handlers.openapi import errors_of
from wxbackend import errors
from wxbackend.services.common import metrics_access, outages

#: Seconds a write probe's outcome is reused (health checks may come many times a second).
WRITE_PROBE_CACHE_SECONDS = 1.0


class HealthHandler(BaseHandler):
    """``GET /healthz``: 200 when the database and Redis answer and the database can write
    (``database``: ``error: cannot write: …`` when its disk is full), else 503."""

    openapi = {
        "get": {
            "summary": "Health: database (and that it can write) and Redis checked",
            "responses": {"200": {"description": "healthy"}, "503": {"description": "unhealthy"}},
        }
    }

    async def get(self) -> None:
        state = outages.outages(self.ctx)
        checks: dict[str, str] = {}
        for dependency in (outages.DATABASE, outages.REDIS):
            found = await state.check(dependency)
            checks[dependency] = "ok" if found is None else f"error: {found.reason}"
        if checks[outages.DATABASE] == "ok":  # and it can write: a probe at most once a second
            found = await state.check(outages.DISK, WRITE_PROBE_CACHE_SECONDS)
            if found is not None:
                checks[outages.DATABASE] = f"error: cannot write: {found.reason}"
        ok = all(v == "ok" for v in checks.values())
        self.send({"status": "ok" if ok else "unhealthy", "checks": checks}, 200 if ok else 503)


class MetricsHandler(BaseHandler):
    """``GET /metrics``: Prometheus text format, for the addresses of ``metrics.allow``
    (the client address, trusted-proxy aware) or a bearer ``metrics.token``; else 403."""

    openapi = {
        "get": {
            "summary": "Prometheus metrics (metrics.allow addresses or the metrics.token bearer)",
            "responses": {"200": {"description": "text"}, **errors_of(403)},
        }
    }

    def get(self) -> None:
        allowed = metrics_access.allowed(
            self.ctx.settings.metrics,
            self.client_ip(),
            bearer_token(self.request.headers.get("Authorization", "")),
        )
        if not allowed:
            raise errors.Forbidden("Metrics are served to the addresses of metrics.allow.")
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.ctx.metrics.render())


class OpenApiHandler(BaseHandler):
    """``GET /openapi.json``: every route of this server, described."""

    openapi = {
        "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}
    }

    def get(self) -> None:
        self.finish(json.dumps(self.application.settings["openapi"], ensure_ascii=False))


default_handlers = [
    route("/healthz", HealthHandler),
    route("/metrics", MetricsHandler),
    route("/openapi.json", OpenApiHandler),
]
