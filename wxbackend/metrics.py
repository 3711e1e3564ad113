"""Prometheus metrics, one registry per application (so tests can build many apps).

Under ``serve --processes N`` (``PROMETHEUS_MULTIPROC_DIR`` set by the CLI before
prometheus_client is imported) every process writes its values to files in that folder and
:meth:`Metrics.render` sums the files of all of them, so any process answers for the server.
"""

from __future__ import annotations

import glob
import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20)


#: The methods counted by name; any other is ``OTHER``.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class Metrics:
    """HTTP requests and latency by route; WeChat calls by endpoint and errcode."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "wxb_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "wxb_http_request_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.wechat_calls = Counter(
            "wxb_wechat_calls",
            "WeChat API calls by endpoint and errcode (0 = ok; 'timeout', 'http_5xx', ...)",
            ["endpoint", "errcode"],
            registry=self.registry,
        )
        self.wechat_latency = Histogram(
            "wxb_wechat_call_seconds",
            "WeChat API call latency by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request. Labels stay bounded whatever clients send: an unknown method
        is ``OTHER``, a status outside 100–599 ``other`` (300 made-up methods used to add
        600 series); routes are templates, unmatched paths one ``unmatched``."""
        method = method if method in HTTP_METHODS else "OTHER"
        code = str(status) if 100 <= status <= 599 else "other"
        self.requests.labels(route, method, code).inc()
        self.latency.labels(route).observe(seconds)

    def observe_wechat(self, endpoint: str, errcode: str, seconds: float) -> None:
        self.wechat_calls.labels(endpoint, errcode).inc()
        self.wechat_latency.labels(endpoint).observe(seconds)

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            FilesCollector(merged)
            return generate_latest(merged)
        return generate_latest(self.registry)


class FilesCollector(multiprocess.MultiProcessCollector):
    """prometheus_client's collector of the processes' files, skipping a file that holds
    nothing yet: another process creates its file empty and sizes it just after, so a scrape
    in between raised ``struct.error`` (``/metrics`` answered 500), and a process killed in
    that moment left the empty file for good (prometheus/client_python#1199). A file gone
    meanwhile is skipped too."""

    def collect(self):  # noqa: ANN201 - prometheus_client's signature
        files = []
        for name in glob.glob(os.path.join(self._path, "*.db")):
            try:
                if os.path.getsize(name) >= 8:  # the header: how much of the file is used
                    files.append(name)
            except OSError:
                continue
        return self.merge(files, accumulate=True)
