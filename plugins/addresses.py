"""`listen`/`address` strings of stream sockets (`tcp:HOST:PORT` or `unix:PATH`) and ZeroMQ
endpoints (`tcp://HOST:PORT`, `ipc://PATH`, `inproc://NAME`), checked before anything binds."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ConfigError


@dataclass(frozen=True, slots=True)
class TcpAddress:
    """A TCP listen or connect address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"tcp:{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class UnixAddress:
    """A Unix-domain socket path."""

    path: Path

    def __str__(self) -> str:
        return f"unix:{self.path}"


StreamAddress = TcpAddress | UnixAddress


def parse_stream_address(value: str, what: str = "listen") -> StreamAddress:
    """Parse `tcp:127.0.0.1:24224`, `tcp:[::1]:24224` or `unix:/run/logdetect/forward.sock`."""
    kind, sep, rest = value.partition(":")
    if not sep or not rest:
        raise ConfigError(f"{what} = {value!r}: expected 'tcp:HOST:PORT' or 'unix:PATH'")
    if kind == "unix":
        return UnixAddress(Path(rest))
    if kind != "tcp":
        raise ConfigError(f"{what} = {value!r}: unknown scheme {kind!r} (use 'tcp:' or 'unix:')")
    host, sep, port_text = rest.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{what} = {value!r}: expected 'tcp:HOST:PORT'")
    host = host.removeprefix("[").removesuffix("]")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{what} = {value!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what} = {value!r}: port {port} is outside 0-65535")
    return TcpAddress(host, port)


ZMQ_TRANSPORTS = ("tcp", "ipc", "inproc")


def zmq_endpoint_problem(endpoint: str, what: str = "endpoint") -> str | None:
    """Why `endpoint` is not a ZeroMQ endpoint logdetect can use; None when it is.

    libzmq itself accepts `tcp://host:99999` and binds a random port, so the port range is
    checked here; `*` (any interface) and port `*` (an ephemeral port) are allowed.
    """
    transport, sep, rest = endpoint.partition("://")
    if not sep or transport not in ZMQ_TRANSPORTS or not rest:
        return (
            f"{what} {endpoint!r} is not a ZeroMQ endpoint "
            "(e.g. 'tcp://127.0.0.1:5556', 'ipc:///run/logdetect/in.sock')"
        )
    if transport != "tcp":
        return None
    host, sep, port_text = rest.rpartition(":")
    if not sep or not host:
        return f"{what} {endpoint!r}: expected tcp://HOST:PORT"
    if port_text == "*":
        return None
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        return f"{what} {endpoint!r}: port {port_text!r} is outside 0-65535"
    return None


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def start_stream_server(
    address: StreamAddress, handler: Handler, limit: int = 64 * 1024
) -> tuple[asyncio.Server, StreamAddress]:
    """Listen on `address`; return the server and the address actually bound (port 0 → real port)."""
    if isinstance(address, UnixAddress):
        _remove_stale_socket(address.path)
        address.path.parent.mkdir(parents=True, exist_ok=True)
        server = await asyncio.start_unix_server(handler, path=str(address.path), limit=limit)
        return server, address
    server = await asyncio.start_server(handler, host=address.host, port=address.port, limit=limit)
    port = server.sockets[0].getsockname()[1] if server.sockets else address.port
    return server, TcpAddress(address.host, int(port))


def _remove_stale_socket(path: Path) -> None:
    """A socket file left by a killed agent would make bind fail; anything else is not ours."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"listen path {path} exists and is not a socket; remove it or pick another path")
    path.unlink()


def cleanup_unix(address: StreamAddress) -> None:
    """Remove a Unix socket file this process created (nothing for TCP)."""
    if isinstance(address, UnixAddress):
        with contextlib.suppress(OSError):
            address.path.unlink()
