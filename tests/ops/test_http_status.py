"""The status endpoint over a real socket, scraped with prometheus-client's own parser."""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from agent import metrics
from agent.errors import ConfigError
from agent.http_status import DEFAULT_PORT, StatusServer, parse_listen

# Ports of neighbours the default must not take (ecosystem.md §5.3).
NEIGHBOUR_PORTS = {2020, 8686, 9598, 9100, 9464, 9090, 9091, 9093, 24224, 24231, 9880}
# Prometheus naming: single-word prefix, snake_case, base units, no `_total` on non-counters.
NAME = re.compile(r"^logdetect_[a-z][a-z0-9_]*$")
NON_BASE_UNITS = ("_milliseconds", "_ms", "_kilobytes", "_megabytes", "_minutes", "_hours", "_percent")


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


def test_default_port_clashes_with_no_neighbour() -> None:
    """The default metrics port is not one a common neighbour (exporters, shippers) uses."""
    assert DEFAULT_PORT not in NEIGHBOUR_PORTS


def test_metrics_scrape_parses_and_follows_prometheus_naming() -> None:
    """Touch every labelled metric once, scrape /metrics, parse it, check names and types."""
    # Label values of our own, so other tests' counters in the same process are left alone.
    comp, model = "ops_test_source", "ops_test_model"
    metrics.records_in.labels(component=comp).inc(3)
    metrics.records_out.labels(component=comp).inc(2)
    metrics.records_dropped.labels(component=comp, reason="bad_msgpack").inc()
    metrics.decode_errors.labels(component=comp).inc()
    metrics.lost_messages.labels(component=comp).inc(0)
    metrics.queue_depth.labels(stage="ops_test_stage").set(7)
    metrics.inference_seconds.labels(model=model).observe(0.002)
    metrics.inference_batch.labels(model=model).observe(32)
    metrics.memo_hit_ratio.labels(model=model).set(0.75)
    metrics.anomalies.labels(verdict="watch").inc(0)
    metrics.incidents.labels(severity="high").inc(0)
    server = StatusServer("127.0.0.1:0")
    server.start()
    try:
        status, ctype, body = _get(server.url + "/metrics")
    finally:
        server.stop()
    assert status == 200
    assert ctype.startswith("text/plain") and "version=" in ctype
    families = {f.name: f for f in text_string_to_metric_families(body)}
    ours = {n: f for n, f in families.items() if n.startswith("logdetect")}
    assert len(ours) >= 15
    for name, family in ours.items():
        assert NAME.match(name), name
        assert not name.endswith(NON_BASE_UNITS), name
        if family.type == "counter":
            assert all(s.name == name + "_total" for s in family.samples), name
        else:
            assert not name.endswith(("_total", "_created")), f"{name} is a {family.type}"
        if name.endswith("_ratio"):  # ("duration" contains "ratio" too)
            assert all(0.0 <= s.value <= 1.0 for s in family.samples), name
    # The values we set come back through the parser.
    records = families["logdetect_records_in"]
    total = {s.labels["component"]: s.value for s in records.samples if s.name.endswith("_total")}
    assert total[comp] == 3
    assert families["logdetect_inference_duration_seconds"].type == "histogram"
    assert families["logdetect_inference_batch_size"].type == "histogram"
    depth = [s for s in families["logdetect_queue_records"].samples if s.labels == {"stage": "ops_test_stage"}]
    assert depth[0].value == 7


def test_probes_follow_readiness() -> None:
    """/livez is 200 while serving; /readyz flips with the callback; unknown paths 404."""
    ready = threading.Event()

    def boom() -> bool:
        raise RuntimeError("check failed")

    server = StatusServer("127.0.0.1:0", ready=ready.is_set)
    server.start()
    try:
        assert _get(server.url + "/livez")[0] == 200
        assert _get(server.url + "/readyz")[0] == 503
        ready.set()
        assert _get(server.url + "/readyz")[0] == 200
        assert _get(server.url + "/nope")[0] == 404
    finally:
        server.stop()
    broken = StatusServer("127.0.0.1:0", ready=boom)
    broken.start()
    try:
        assert _get(broken.url + "/readyz")[0] == 503
        assert _get(broken.url + "/livez")[0] == 200
    finally:
        broken.stop()


def test_custom_registry_and_ipv6_loopback() -> None:
    """A custom registry is served, on the IPv6 loopback where the host has one."""
    registry = CollectorRegistry()
    Counter("logdetect_test_things", "things", registry=registry).inc(5)
    server = StatusServer("[::1]:0", registry=registry)
    try:
        server.start()
    except ConfigError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        body = _get(server.url + "/metrics")[2]
    finally:
        server.stop()
    (family,) = text_string_to_metric_families(body)
    assert [(s.name, s.value) for s in family.samples] == [("logdetect_test_things_total", 5.0)]


def test_off_host_binding_only_when_asked() -> None:
    """Binding beyond loopback is refused unless allow_remote is set."""
    with pytest.raises(ConfigError, match="allow_remote"):
        StatusServer("0.0.0.0:0")
    server = StatusServer("0.0.0.0:0", allow_remote=True)
    server.start()
    try:
        assert _get(f"http://127.0.0.1:{server.port}/livez")[0] == 200
    finally:
        server.stop()


def test_bad_listen_values_and_busy_port() -> None:
    """Malformed listen values and a busy port are ConfigErrors with a clear message."""
    for bad in ("9847", "localhost:http", "127.0.0.1:70000"):
        with pytest.raises(ConfigError):
            parse_listen(bad)
    first = StatusServer("127.0.0.1:0")
    first.start()
    try:
        with pytest.raises(ConfigError, match="cannot listen"):
            StatusServer(f"127.0.0.1:{first.port}").start()
    finally:
        first.stop()
