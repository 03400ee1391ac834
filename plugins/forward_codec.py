"""Fluentd Forward protocol v1: decoding requests, acks and the shared-key handshake.

Pure functions and small classes, no sockets: `plugins.forward_source` does the I/O. Facts this
follows (ecosystem.md §1):

- Requests are msgpack arrays; the 2nd element picks the mode: int/EventTime → Message,
  array → Forward, bin/str → PackedForward (gzip'd, possibly multi-member, when the option map
  says `"compressed": "gzip"`; any other `compressed` value, e.g. Fluentd's `"text"`, is ignored).
- Everything is decoded with `raw=True`: Fluentd packs binary entries and Fluent Bit packs its
  PING salt as msgpack `str`, which is not valid UTF-8, so `raw=False` would raise. Text is
  decoded by us with `errors="replace"`.
- Entry time: int seconds, EventTime (ext type 0, uint32 BE seconds + uint32 BE nanoseconds), or
  Fluent Bit's V2 `[time, metadata]` pair; negative times are group markers (−1/−2) and skipped.
- Non-log signals (`fluent_signal` ≠ 0) carry cmetrics/ctraces payloads, not records: skipped.
- The ack is `{"ack": <chunk>}` with the chunk echoed byte-for-byte as msgpack `str` (Fluent Bit
  rejects `bin`; Fluentd's chunk ids end in a newline, which must survive).
"""

from __future__ import annotations

import hashlib
import secrets
import struct
import zlib
from collections import Counter, OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

import msgpack

from agent.types import Record
from plugins.records import DEFAULT_MAX_RECORD_BYTES, FieldMap, cap_record, record_from_map

EVENT_TIME_EXT = 0
TAG_FIELD = "fluent.tag"
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024


class ForwardProtocolError(ValueError):
    """A request that cannot be understood at all; the connection should be closed."""


@dataclass(slots=True)
class DecodedRequest:
    """One Forward request turned into records, plus what was skipped and why."""

    tag: str
    records: list[Record]
    chunk: bytes | None = None
    skipped: Counter[str] = field(default_factory=Counter)
    heartbeat: bool = False
    truncated: int = 0  # records cut at max_record_bytes (kept, counted as record_truncated)

    def ack_bytes(self) -> bytes | None:
        """The ack to send back, when the client asked for one (a chunk id)."""
        return encode_ack(self.chunk) if self.chunk is not None else None


def ext_hook(code: int, data: bytes) -> Any:
    """msgpack ext hook: EventTime (type 0) → float seconds; other types stay ExtType."""
    if code == EVENT_TIME_EXT and len(data) == 8:
        sec, nsec = struct.unpack(">II", data)
        return float(sec) + nsec / 1e9
    return msgpack.ExtType(code, data)


def new_unpacker(max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> msgpack.Unpacker:
    """A streaming unpacker whose buffer (and every str/bin/array/map) is bounded."""
    return msgpack.Unpacker(
        raw=True,
        max_buffer_size=max_frame_bytes,
        ext_hook=ext_hook,
        strict_map_key=False,
    )


def encode_ack(chunk: bytes) -> bytes:
    """`{"ack": chunk}` with both key and value packed as msgpack str, byte-for-byte."""
    packed: bytes = msgpack.packb({b"ack": chunk}, use_bin_type=False)
    return packed


def text(value: bytes | str) -> str:
    """Bytes as text (invalid UTF-8 replaced); text as it is."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def gunzip_members(data: bytes, limit: int) -> bytes:
    """Decompress one or more concatenated gzip members, refusing output larger than `limit`."""
    out: list[bytes] = []
    total = 0
    rest = data
    while rest:
        decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            piece = decomp.decompress(rest, limit - total + 1)
        except zlib.error as exc:
            raise ForwardProtocolError(f"bad gzip data: {exc}") from None
        total += len(piece)
        if total > limit or decomp.unconsumed_tail:
            raise ForwardProtocolError(f"gzip payload expands beyond {limit} bytes")
        if not decomp.eof:
            raise ForwardProtocolError("truncated gzip member")
        out.append(piece)
        rest = decomp.unused_data
        # Padding zeros after the last member are tolerated (as `gzip -d` does).
        if rest and not rest.strip(b"\0"):
            break
    return b"".join(out)


def _entry_time(raw_time: Any) -> tuple[float | None, bool]:
    """(time or None for "use arrival time", ok). ok is False for markers/invalid times."""
    if isinstance(raw_time, list | tuple):  # Fluent Bit V2: [time, metadata]
        if len(raw_time) < 1:
            return None, False
        raw_time = raw_time[0]
    if raw_time is None:
        return None, True
    if isinstance(raw_time, bool) or not isinstance(raw_time, int | float):
        return None, False
    if raw_time < 0:
        return None, False
    # Fluentd replaces a zero time by "now"; so do we.
    return (float(raw_time) if raw_time > 0 else None), True


class RequestDecoder:
    """Turns decoded Forward requests into records. One per connection or source."""

    def __init__(
        self,
        source: str,
        fields: FieldMap | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    ) -> None:
        self.source = source
        self.fields = fields or FieldMap()
        self.max_frame_bytes = max_frame_bytes
        self.max_record_bytes = max_record_bytes

    def decode(self, request: Any, received_at: float) -> DecodedRequest:
        """Decode one top-level msgpack object. Raises ForwardProtocolError for non-requests."""
        if request is None:
            return DecodedRequest(tag="", records=[], heartbeat=True)
        if not isinstance(request, list | tuple) or len(request) < 2:
            raise ForwardProtocolError("request is not an array of at least 2 elements")
        raw_tag = request[0]
        if not isinstance(raw_tag, bytes | str):
            raise ForwardProtocolError("tag is not a string")
        tag = text(raw_tag)
        second = request[1]
        if isinstance(second, list | tuple):
            option = request[2] if len(request) > 2 else None
            entries: Any = second
            mode = "forward"
        elif isinstance(second, bytes | str):
            option = request[2] if len(request) > 2 else None
            entries = second
            mode = "packed"
        elif isinstance(second, int | float) and not isinstance(second, bool):
            if len(request) < 3:
                raise ForwardProtocolError("message mode request without a record")
            option = request[3] if len(request) > 3 else None
            entries = [[second, request[2]]]
            mode = "message"
        else:
            raise ForwardProtocolError("second element is not a time, an array or a string")
        if option is not None and not isinstance(option, dict):
            option = None
        opts = {text(k): v for k, v in (option or {}).items() if isinstance(k, bytes | str)}
        chunk = opts.get("chunk")
        out = DecodedRequest(tag=tag, records=[])
        if isinstance(chunk, bytes | str):
            out.chunk = chunk.encode("utf-8", "surrogateescape") if isinstance(chunk, str) else chunk
        signal = opts.get("fluent_signal", 0)
        if isinstance(signal, int) and signal != 0:
            out.skipped["non_log_signal"] += max(1, _option_size(opts))
            return out
        if mode == "packed":
            payload = entries.encode("utf-8", "surrogateescape") if isinstance(entries, str) else entries
            if opts.get("compressed") in (b"gzip", "gzip"):
                try:
                    payload = gunzip_members(payload, self.max_frame_bytes)
                except ForwardProtocolError:
                    out.skipped["bad_gzip"] += max(1, _option_size(opts))
                    return out
            entries = self._unpack_stream(payload, out)
        for entry in entries:
            self._add_entry(entry, out, received_at)
        return out

    def _unpack_stream(self, payload: bytes, out: DecodedRequest) -> list[Any]:
        unpacker = new_unpacker(max(len(payload), 1024))
        try:
            unpacker.feed(payload)
        except msgpack.BufferFull:  # cannot happen with the size above; be safe anyway
            out.skipped["frame_too_large"] += 1
            return []
        items: list[Any] = []
        try:
            items.extend(unpacker)
        except (ValueError, TypeError, msgpack.UnpackException, msgpack.ExtraData):
            out.skipped["malformed_entries"] += 1
        return items

    def _add_entry(self, entry: Any, out: DecodedRequest, received_at: float) -> None:
        if not isinstance(entry, list | tuple) or len(entry) != 2:
            out.skipped["bad_entry"] += 1
            return
        time, ok = _entry_time(entry[0])
        if not ok:
            reason = "group_marker" if _is_marker(entry[0]) else "bad_time"
            out.skipped[reason] += 1
            return
        record = entry[1]
        if not isinstance(record, dict):
            out.skipped["non_map_record"] += 1
            return
        result = record_from_map(record, self.fields, self.source, received_at, time)
        if isinstance(result, str):
            out.skipped[result] += 1
        else:
            result, cut = cap_record(result, self.max_record_bytes)
            out.truncated += cut
            # The Fluentd tag names the stream (Fluent Bit's tail: one tag per file).
            out.records.append(replace(result, fields=(*result.fields, (TAG_FIELD, out.tag[:256]))))


def _is_marker(raw_time: Any) -> bool:
    if isinstance(raw_time, list | tuple) and raw_time:
        raw_time = raw_time[0]
    return isinstance(raw_time, int) and raw_time in (-1, -2)


def _option_size(opts: dict[str, Any]) -> int:
    size = opts.get("size")
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 0


class ChunkWindow:
    """The chunk ids acked recently: a retried chunk is acked again but not processed twice."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def seen(self, chunk: bytes) -> bool:
        """Whether this chunk id arrived recently (a retransmission)."""
        return chunk in self._seen

    def add(self, chunk: bytes) -> None:
        """Remember a chunk id, forgetting the oldest beyond the window."""
        self._seen[chunk] = None
        self._seen.move_to_end(chunk)
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)


# --- shared-key handshake (HELO / PING / PONG) ---


def sha512_hex(*parts: bytes) -> str:
    """Hex SHA-512 of the parts in order (the Forward handshake digests)."""
    digest = hashlib.sha512()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Handshake:
    """Server side of the shared-key handshake for one connection."""

    shared_key: bytes
    hostname: bytes
    nonce: bytes = field(default_factory=lambda: secrets.token_bytes(16))

    def helo(self) -> bytes:
        """The HELO message that opens a handshake, with this connection's nonce."""
        # nonce as bin (Fluent Bit and @fluent-org/logger accept str or bin); auth "" = no users.
        return _pack_helo(self.nonce)

    def check_ping(self, message: Any) -> tuple[bool, bytes]:
        """(accepted, PONG bytes) for a decoded PING."""
        if (
            not isinstance(message, list | tuple)
            or len(message) < 4
            or message[0] not in (b"PING", "PING")
            or not all(isinstance(p, bytes | str) for p in message[1:4])
        ):
            return False, self._pong(False, b"malformed PING", b"")
        client_host, salt, digest = (_raw(p) for p in message[1:4])
        expected = sha512_hex(salt, client_host, self.nonce, self.shared_key)
        if client_host == self.hostname:
            return False, self._pong(False, b"same hostname on both sides", b"")
        if digest.decode("ascii", errors="replace").lower() != expected:
            return False, self._pong(False, b"shared key mismatch", b"")
        return True, self._pong(True, b"", salt)

    def _pong(self, ok: bool, reason: bytes, salt: bytes) -> bytes:
        digest = sha512_hex(salt, self.hostname, self.nonce, self.shared_key).encode() if ok else b""
        packed: bytes = msgpack.packb([b"PONG", ok, reason, self.hostname, digest], use_bin_type=False)
        return packed


def _pack_helo(nonce: bytes) -> bytes:
    packer = msgpack.Packer(use_bin_type=True)
    # Keys and strings as msgpack str, the nonce as bin.
    packed: bytes = (
        packer.pack_array_header(2)
        + packer.pack("HELO")
        + packer.pack_map_header(3)
        + packer.pack("nonce")
        + packer.pack(nonce)
        + packer.pack("auth")
        + packer.pack("")
        + packer.pack("keepalive")
        + packer.pack(True)
    )
    return packed


def _raw(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
