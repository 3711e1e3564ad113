"""``/metrics`` under ``--processes N`` sums the processes' files (wxbackend/metrics.py): a
file another process has only just created (empty until it is sized) must not fail the
scrape, nor one a process killed at that moment left behind."""

from __future__ import annotations

from prometheus_client.mmap_dict import MmapedDict, mmap_key

from wxbackend.metrics import Metrics

REQUESTS = "wxb_http_requests"


def _write_counter(path: str, value: float) -> None:
    """One process's file as prometheus_client writes it: the request counter of a route."""
    key = mmap_key(
        REQUESTS,
        REQUESTS + "_total",
        ["method", "route", "status"],
        ["GET", "/healthz", "200"],
        "HTTP requests",
    )
    values = MmapedDict(path)
    try:
        values.write_value(key, value, 0.0)
    finally:
        values.close()


def test_an_empty_file_of_a_starting_process_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    _write_counter(str(tmp_path / "counter_101.db"), 3.0)
    _write_counter(str(tmp_path / "counter_102.db"), 4.0)
    (tmp_path / "counter_103.db").write_bytes(b"")  # created, not sized yet (or killed then)
    text = Metrics().render().decode()
    line = 'wxb_http_requests_total{method="GET",route="/healthz",status="200"} 7.0'
    assert line in text.splitlines(), text[:2000]
