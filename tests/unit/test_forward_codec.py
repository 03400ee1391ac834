r"""Forward protocol decoding: every mode, Fluent Bit / Fluentd wire quirks as byte fixtures,
the handshake digests, and random input that must never escape as anything but a protocol error.

The fixtures are built from the protocol facts (ecosystem.md §1), byte by byte where the
quirk is about bytes (str32-packed binary, fixext8 vs ext8 EventTime, chunk ids ending in \n).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugins.forward_codec import (
    ChunkWindow,
    ForwardProtocolError,
    Handshake,
    RequestDecoder,
    encode_ack,
    gunzip_members,
    new_unpacker,
)
from plugins.records import FieldMap

T0 = 1_795_000_000


def fixext8_time(sec: int, nsec: int) -> bytes:
    """EventTime as Fluent Bit writes it: fixext8 (0xd7), type 0, uint32 BE sec + nsec."""
    return b"\xd7\x00" + struct.pack(">II", sec, nsec)


def ext8_time(sec: int, nsec: int) -> bytes:
    """The other legal EventTime encoding: ext8 (0xc7) with length 8."""
    return b"\xc7\x08\x00" + struct.pack(">II", sec, nsec)


def pack(obj: Any) -> bytes:
    """msgpack with bin types, as Fluent Bit packs."""
    return msgpack.packb(obj, use_bin_type=True)


def str32(data: bytes) -> bytes:
    """Ruby msgpack's encoding of a binary String in Fluentd's out_forward: str32 (0xdb)."""
    return b"\xdb" + struct.pack(">I", len(data)) + data


def decode_bytes(raw: bytes, fields: FieldMap | None = None) -> list[Any]:
    """Unpack a byte stream as the server does and decode every request in it."""
    unpacker = new_unpacker()
    unpacker.feed(raw)
    decoder = RequestDecoder("fw", fields)
    return [decoder.decode(obj, 1.0) for obj in unpacker]


def test_message_mode_with_int_time_and_option_chunk() -> None:
    """Message mode `[tag, int, record, {chunk}]` yields one record and the chunk to ack."""
    raw = pack(["app.web", T0, {"log": "GET / 200", "level": "INFO"}, {"chunk": "abc="}])
    (req,) = decode_bytes(raw)
    assert req.tag == "app.web"
    assert [r.line for r in req.records] == ["GET / 200"]
    assert req.records[0].time == float(T0)
    assert req.records[0].field("level") == "INFO"
    assert req.records[0].field("fluent.tag") == "app.web"
    assert req.chunk == b"abc="


@pytest.mark.parametrize("encode", [fixext8_time, ext8_time])
def test_event_time_fixext8_and_ext8(encode: Any) -> None:
    """EventTime in both ext encodings gives nanosecond-precise float seconds."""
    raw = b"\x93" + pack("t") + encode(T0, 250_000_000) + pack({"log": "x"})
    (req,) = decode_bytes(raw)
    assert req.records[0].time == pytest.approx(T0 + 0.25)


def test_forward_mode_fluent_bit_v2_entries_and_group_markers() -> None:
    """Fluent Bit ≥5.0.4 sends `[[EventTime, meta], record]`; group markers −1/−2 are skipped."""
    entries = [
        b"\x92" + b"\x92" + pack(-1) + pack({"group": "start"}) + pack({"resource": "x"}),
        b"\x92" + b"\x92" + fixext8_time(T0, 5) + pack({}) + pack({"log": "first"}),
        b"\x92" + b"\x92" + fixext8_time(T0 + 1, 0) + pack({"otlp": {"a": 1}}) + pack({"log": "second"}),
        b"\x92" + b"\x92" + pack(-2) + pack({}) + pack({}),
    ]
    # Forward mode as Fluent Bit writes it: array header, then the raw chunk bytes, then options.
    chunk_id = base64.b64encode(hashlib.sha512(b"".join(entries)).digest()[:16])
    raw = (
        b"\x93"
        + pack("app")
        + b"\x94"
        + b"".join(entries)
        + pack({"size": 4, "chunk": chunk_id.decode(), "fluent_signal": 0})
    )
    (req,) = decode_bytes(raw)
    assert [r.line for r in req.records] == ["first", "second"]
    assert req.skipped["group_marker"] == 2
    assert req.chunk == chunk_id


def test_forward_mode_time_as_integer() -> None:
    """`time_as_integer on`: plain `[int, record]` entries."""
    raw = pack(["app", [[T0, {"log": "a"}], [T0 + 1, {"log": "b"}]]])
    (req,) = decode_bytes(raw)
    assert [r.time for r in req.records] == [float(T0), float(T0 + 1)]


def test_non_log_signal_is_skipped_not_decoded() -> None:
    """Metrics/traces (`fluent_signal` ≠ 0) look like PackedForward but are not records."""
    raw = pack(["m", b"\x01\x02cmetrics-blob", {"fluent_signal": 1, "size": 3, "chunk": "q=="}])
    (req,) = decode_bytes(raw)
    assert req.records == []
    assert req.skipped["non_log_signal"] == 3
    assert req.ack_bytes() == encode_ack(b"q==")  # still acked, or Fluent Bit retries forever


def test_fluentd_packed_forward_str32_binary_text_compression_and_newline_chunk() -> None:
    r"""Fluentd: entries in str32 holding non-UTF-8 bytes, `"compressed":"text"`, chunk ending in \n."""
    entries = pack([T0, {"message": "caf\xe9".encode("latin-1"), "log": "plain"}]) + pack(
        [T0 + 1, {"log": b"\xff\xfe broken utf-8"}]
    )
    chunk = base64.encodebytes(b"0123456789abcdef")  # Ruby Base64.encode64: ends in "\n"
    assert chunk.endswith(b"\n")
    option = (
        b"\x83" + pack("chunk") + str32(chunk) + pack("size") + pack(2) + pack("compressed") + pack("text")
    )
    raw = b"\x93" + pack("fluentd.tag") + str32(entries) + option
    (req,) = decode_bytes(raw)
    assert [r.line for r in req.records] == ["plain", "\ufffd\ufffd broken utf-8"]
    assert req.records[0].field("message") == "caf\ufffd"
    assert req.chunk == chunk
    ack = req.ack_bytes()
    # {"ack": <str with the same bytes>}: fixmap(1), fixstr "ack", fixstr with the chunk verbatim.
    assert len(chunk) == 25
    assert ack == b"\x81\xa3ack" + bytes([0xA0 | 25]) + chunk
    assert msgpack.unpackb(ack, raw=True) == {b"ack": chunk}


def test_compressed_packed_forward_multi_member_gzip() -> None:
    """CompressedPackedForward may hold several concatenated gzip members."""
    part1 = gzip.compress(pack([T0, {"log": "one"}]))
    part2 = gzip.compress(pack([T0, {"log": "two"}]) + pack([T0, {"log": "three"}]))
    raw = pack(["app", part1 + part2, {"compressed": "gzip", "size": 3}])
    (req,) = decode_bytes(raw)
    assert [r.line for r in req.records] == ["one", "two", "three"]


def test_gzip_bomb_is_refused() -> None:
    """Decompression is bounded: a payload expanding past the limit is refused."""
    bomb = gzip.compress(b"\0" * 1_000_000)
    with pytest.raises(ForwardProtocolError):
        gunzip_members(bomb, limit=10_000)
    raw = pack(["app", bomb, {"compressed": "gzip"}])
    unpacker = new_unpacker()
    unpacker.feed(raw)
    req = RequestDecoder("fw", max_frame_bytes=10_000).decode(next(unpacker), 0.0)
    assert req.records == [] and req.skipped["bad_gzip"] == 1


def test_wrong_types_in_every_field_are_counted_not_raised() -> None:
    """Non-map records, bad entries, bad times, missing message: each skipped with a reason."""
    raw = pack(
        [
            "app",
            [
                [T0, "not a map"],
                [T0, [1, 2]],
                ["yesterday", {"log": "bad time"}],
                [T0, {"no_log_field": 1}],
                [T0],
                "not an entry",
                [T0, {"log": 42}],
                [T0, {"log": None, "message": "x"}],
                [None, {"log": "nil time means now"}],
            ],
        ]
    )
    (req,) = decode_bytes(raw)
    assert [r.line for r in req.records] == ["42", "nil time means now"]
    assert req.records[1].time is None
    assert req.skipped == {
        "non_map_record": 2,
        "bad_time": 1,
        "missing_message_field": 2,
        "bad_entry": 2,
    }


def test_field_map_level_entity_time_and_nested_fields() -> None:
    """Configured fields feed level/entity/time; nested maps flatten to dotted names."""
    record = {
        "msg": "started",
        "severity": "ERROR",
        "kubernetes": {"pod_name": "web-1", "labels": {"app": "web"}},
        "ts": "2026-11-23T10:00:00Z",
    }
    fields = FieldMap(message=("log", "msg"), level="severity", entity="kubernetes.pod_name", time="ts")
    (req,) = decode_bytes(pack(["k8s", T0, record]), fields)
    (rec,) = req.records
    assert rec.line == "started"
    assert rec.field("level") == "ERROR"
    assert rec.field("entity") == "web-1"
    assert rec.field("kubernetes.labels.app") == "web"
    assert rec.time == pytest.approx(1_795_428_000.0)


def test_heartbeat_and_non_requests() -> None:
    """`nil` is a heartbeat; a non-array value is a protocol error (the server ignores it)."""
    decoder = RequestDecoder("fw")
    assert decoder.decode(None, 0.0).heartbeat
    for bad in [{"a": 1}, 5, [b"only-tag"], [5, T0, {}], [b"t", True, {}], [b"t", {"x": 1}]]:
        with pytest.raises(ForwardProtocolError):
            decoder.decode(bad, 0.0)


def test_chunk_window_forgets_oldest() -> None:
    """The chunk window remembers only the most recent `size` chunk ids."""
    window = ChunkWindow(size=2)
    for chunk in (b"a", b"b", b"c"):
        window.add(chunk)
    assert not window.seen(b"a") and window.seen(b"b") and window.seen(b"c")


def test_handshake_digests_match_the_spec_formula() -> None:
    """PING digest = sha512_hex(salt + client_host + nonce + key); PONG uses the server host."""
    shake = Handshake(shared_key=b"k3y", hostname=b"agent-host", nonce=b"\x00\xffnonce-bytes-16!")
    helo = msgpack.unpackb(shake.helo(), raw=True)
    assert helo[0] == b"HELO" and helo[1][b"nonce"] == shake.nonce and helo[1][b"auth"] == b""
    salt = b"\x81\x82 not utf-8 salt"  # Fluent Bit packs 16 random bytes as msgpack str
    digest = hashlib.sha512(salt + b"fluent-bit" + shake.nonce + b"k3y").hexdigest()
    ok, pong = shake.check_ping([b"PING", b"fluent-bit", salt, digest.encode(), b"", b""])
    assert ok
    answer = msgpack.unpackb(pong, raw=True)
    assert answer[:4] == [b"PONG", True, b"", b"agent-host"]
    assert answer[4] == hashlib.sha512(salt + b"agent-host" + shake.nonce + b"k3y").hexdigest().encode()
    bad_ok, bad_pong = shake.check_ping([b"PING", b"fluent-bit", salt, b"0" * 128, b"", b""])
    assert not bad_ok
    assert msgpack.unpackb(bad_pong, raw=True)[:2] == [b"PONG", False]
    assert not shake.check_ping([b"PING", b"agent-host", salt, digest.encode(), b"", b""])[0]
    assert not shake.check_ping("garbage")[0]


odd_msgpack = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=5) | st.binary(max_size=5), children, max_size=5)
    ),
    max_leaves=25,
)

request_like = st.tuples(
    st.text(max_size=8) | st.binary(max_size=8),
    odd_msgpack | st.lists(st.lists(odd_msgpack, max_size=3), max_size=4),
    odd_msgpack,
    odd_msgpack,
).map(list)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_random_bytes_never_escape(data: bytes) -> None:
    """Random bytes: the stream unpacker raises only msgpack/ValueError (connection closed),
    and anything it does decode goes through the decoder without an unexpected exception."""
    unpacker = new_unpacker(4096)
    unpacker.feed(data)
    decoder = RequestDecoder("fw", max_frame_bytes=4096)
    try:
        for obj in unpacker:
            with contextlib.suppress(ForwardProtocolError):
                decoder.decode(obj, 0.0)
    except (ValueError, TypeError, msgpack.UnpackException, msgpack.ExtraData):
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request_like)
def test_odd_but_valid_msgpack_requests(request: list[Any]) -> None:
    """Valid msgpack of odd shapes: records or ForwardProtocolError, and every record is text."""
    unpacker = new_unpacker()
    unpacker.feed(msgpack.packb(request, use_bin_type=True))
    obj = next(unpacker)
    try:
        out = RequestDecoder("fw", FieldMap(message=("log", "")), max_frame_bytes=4096).decode(obj, 0.0)
    except ForwardProtocolError:
        return
    for record in out.records:
        assert isinstance(record.line, str)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in record.fields)


def test_a_10_mb_record_is_cut_at_max_record_bytes_and_counted() -> None:
    """Issue 14, defect 2: a 10 MB Forward record became a 10 MB event; now every record, its
    fields included, is cut at `max_record_bytes` (64 KiB by default) and counted."""
    decoder = RequestDecoder("fb", FieldMap(message=("log",)))
    huge = "x" * (10 * 1024 * 1024)
    request = ["app", [[1_700_000_000, {"log": huge, "kubernetes": {"labels": huge}}]], {"chunk": "c"}]
    out = decoder.decode(msgpack.unpackb(msgpack.packb(request), raw=True), 1_700_000_001.0)
    (record,) = out.records
    assert len(record.line) == 64 * 1024
    assert all(len(value) <= 64 * 1024 for _, value in record.fields)
    assert out.truncated == 1
