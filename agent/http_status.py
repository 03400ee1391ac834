"""The agent's HTTP status endpoint: `/metrics` (Prometheus text), `/livez`, `/readyz`.

Default `127.0.0.1:9847`. Port choice: it clashes with none of Fluent Bit (2020), Fluentd
(24224 forward, 9880 http, 24231 prometheus), Vector (8686 API, 9598 exporter), node_exporter
(9100), Prometheus itself (9090-9093) or the OpenTelemetry SDKs' Prometheus exporter (9464, which
an application in the same pod may already use). Prometheus' 9100-9999 range is fully
allocated, so any number there may coincide with some exporter; the port is configurable.

Binding to anything but a loopback address must be asked for (`allow_remote=True`), because
the metrics name the host's components and the endpoint has no authentication.

- `/livez`: 200 while the process serves HTTP (the liveness probe; a wedged pipeline is caught
  by the systemd watchdog, and by `ready` returning False in Kubernetes' startup probe).
- `/readyz`: 200 when `ready()` is true (bundle loaded, sources listening), 503 otherwise.
- `/metrics`: `agent.metrics.REGISTRY` in the Prometheus text format. The `*_created`
  timestamp series of prometheus-client are switched off: they double the series count and
  turn `logdetect_templates_created` into `..._created_created`.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, disable_created_metrics, generate_latest

from agent import metrics
from agent.errors import ConfigError

DEFAULT_PORT = 9847
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"


def parse_listen(listen: str) -> tuple[str, int]:
    """`"HOST:PORT"` (IPv6 as `"[::1]:PORT"`) -> (host, port); a ConfigError names the problem."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError(f"metrics listen {listen!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN!r}")
    host = host.strip("[]") or "127.0.0.1"
    port = int(port_text)
    if port > 65535:
        raise ConfigError(f"metrics listen {listen!r}: port {port} is out of range")
    return host, port


def is_loopback(host: str) -> bool:
    """Whether a host name or address stays on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: CollectorRegistry
    ready: Callable[[], bool]


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/livez":
            self._reply(200, b"ok\n")
        elif path == "/readyz":
            try:
                ok = bool(self.server.ready())
            except Exception:  # a failing check means "not ready", never a dead endpoint
                ok = False
            self._reply(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
        else:
            self._reply(404, b"not found: try /metrics, /livez or /readyz\n")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _reply(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # Probes hit this every few seconds: an access log line each time is noise.
        return


def _always_ready() -> bool:
    return True


class StatusServer:
    """Serves the status endpoint from a background thread. Port 0 picks a free port (`.port`)."""

    def __init__(
        self,
        listen: str = DEFAULT_LISTEN,
        ready: Callable[[], bool] = _always_ready,
        *,
        allow_remote: bool = False,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.host, self.port = parse_listen(listen)
        if not allow_remote and not is_loopback(self.host):
            raise ConfigError(
                f"metrics listen {listen!r} is not a loopback address; set allow_remote = true "
                "to expose metrics off the host"
            )
        self.ready = ready
        self.registry = registry if registry is not None else metrics.REGISTRY
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve /metrics, /livez and /readyz from a background thread."""
        disable_created_metrics()  # type: ignore[no-untyped-call]  # process-wide in prometheus-client; never wanted
        server_class = _Server
        if ":" in self.host:  # IPv6 literal
            server_class = _Server6
        try:
            server = server_class((self.host, self.port), _Handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen for metrics on {self.host}:{self.port}: {exc.strerror}"
            ) from None
        server.registry = self.registry
        server.ready = self.ready
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="status-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket (waits up to 5 s for the thread)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    @property
    def url(self) -> str:
        """The base URL actually bound (the real port when 0 was asked for)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"
