"""Ingest benchmark: Forward and ZeroMQ sources, and forward-send → sink latency.

    .venv/bin/python bench/forward_ingest.py [--model BUNDLE] [--records 200000] [--json]

1. Forward decode, records/s: our Forward decoder (stream unpacker + request decoding into
   `Record`s) against bare `msgpack.Unpacker` unpacking the same bytes (PackedForward requests
   of 1000 entries, both levels unpacked) in the same run — the cost of our decoding on top of
   msgpack itself.
2. Forward server, records/s: the same requests over a real TCP connection into the `forward`
   source, each chunk acked after a stand-in consumer finished it (no pipeline).
3. ZeroMQ ingest, records/s: a pyzmq PUSH producer (100 lines per message, sequence header)
   into the `zmq` source, consumed the same way.
4. Latency, forward send → event written: the in-process daemon with a file sink, one Message-
   mode record with a chunk id at a steady rate; latency = send → ack, and the ack is sent only
   after the record's event was written to the sink. With --model the real pipeline runs;
   without, a pass-through pipeline (one event per record) measures the I/O path alone. The
   default durable path is measured: the file sink fsyncs each batch, and the delivery journal
   (state_dir) records each Forward chunk before its ack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgpack
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.components import BatchQueue
from agent.config import parse_config
from agent.daemon import Daemon
from agent.types import Level, LineResult, Output, ParsedLine, Record, TemplatedLine, Verdict
from plugins.forward_codec import RequestDecoder, new_unpacker
from plugins.forward_source import ForwardSource, ForwardSourceOptions
from plugins.zmq_source import ZmqSource, ZmqSourceOptions

LINE = "2026-11-23T10:00:00.{ms:03d}Z INFO web-{w}: GET /api/items/{n} 200 in {t}ms"


def make_requests(records: int, per_chunk: int = 1000) -> tuple[bytes, int]:
    """PackedForward requests (bin entries, int time), each with a chunk id."""
    out = bytearray()
    n = 0
    chunk_no = 0
    while n < records:
        entries = b"".join(
            msgpack.packb(
                [
                    1_795_000_000 + i,
                    {"log": LINE.format(ms=i % 1000, w=i % 7, n=i, t=i % 50), "stream": "stdout"},
                ]
            )
            for i in range(n, min(records, n + per_chunk))
        )
        count = min(per_chunk, records - n)
        out += msgpack.packb(
            ["app", entries, {"chunk": f"c{chunk_no:08d}", "size": count}], use_bin_type=True
        )
        n += count
        chunk_no += 1
    return bytes(out), chunk_no


def bench_decode(data: bytes, records: int, repeat: int = 3) -> dict[str, float]:
    """Records/s of decoding Forward requests: bare msgpack against our decoder, best of `repeat`."""
    def bare() -> int:
        unpacker = msgpack.Unpacker(raw=True, max_buffer_size=len(data))
        unpacker.feed(data)
        count = 0
        for request in unpacker:
            inner = msgpack.Unpacker(raw=True, max_buffer_size=len(request[1]))
            inner.feed(request[1])
            count += sum(1 for _ in inner)
        return count

    def ours() -> int:
        unpacker = new_unpacker(len(data))
        unpacker.feed(data)
        decoder = RequestDecoder("bench")
        return sum(len(decoder.decode(obj, 0.0).records) for obj in unpacker)

    result: dict[str, float] = {}
    for name, fn in (("bare_msgpack", bare), ("forward_decoder", ours)):
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            count = fn()
            best = min(best, time.perf_counter() - started)
        if count != records:
            raise RuntimeError(f"{name} decoded {count} of {records}")
        result[name] = records / best
    return result


async def _consume(queue: BatchQueue, counter: list[int]) -> None:
    while True:
        for batch in await queue.get_many(100_000, 0.05):
            counter[0] += len(batch.records)
            batch.finish(True)


async def bench_forward_server(data: bytes, records: int, chunks: int) -> float:
    """Records/s through a real Forward source on 127.0.0.1, from send to queue."""
    source = ForwardSource(
        "bench-fw", ForwardSourceOptions(listen="tcp:127.0.0.1:0", max_frame_bytes=64 << 20)
    )
    queue = BatchQueue(50_000)
    await source.start(queue)
    counter = [0]
    consumer = asyncio.get_running_loop().create_task(_consume(queue, counter))
    port = source.address.port  # type: ignore[union-attr]

    def client() -> float:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            started = time.perf_counter()
            sender = threading.Thread(target=sock.sendall, args=(data,))
            sender.start()
            unpacker = msgpack.Unpacker(raw=True)
            acks = 0
            while acks < chunks:
                unpacker.feed(sock.recv(65536))
                acks += sum(1 for _ in unpacker)
            sender.join()
            return time.perf_counter() - started

    elapsed = await asyncio.to_thread(client)
    consumer.cancel()
    await source.stop()
    if counter[0] != records:
        raise RuntimeError(f"forward server delivered {counter[0]} of {records}")
    return records / elapsed


async def bench_zmq(records: int, per_message: int = 100) -> float:
    """Records/s through a real ZeroMQ source, `per_message` lines per message."""
    source = ZmqSource("bench-zmq", ZmqSourceOptions(listen="tcp://127.0.0.1:*"))
    queue = BatchQueue(50_000)
    await source.start(queue)
    counter = [0]
    consumer = asyncio.get_running_loop().create_task(_consume(queue, counter))
    payloads = [
        "\n".join(
            LINE.format(ms=i % 1000, w=i % 7, n=i, t=i % 50) for i in range(m, m + per_message)
        ).encode()
        for m in range(0, records, per_message)
    ]

    def produce() -> None:
        ctx: zmq.Context[Any] = zmq.Context()
        push = ctx.socket(zmq.PUSH)
        push.connect(source.endpoint)
        for seq, payload in enumerate(payloads):
            push.send_multipart([msgpack.packb({"producer": "bench", "epoch": 1, "seq": seq}), payload])
        push.close(linger=5000)
        ctx.term()

    started = time.perf_counter()
    await asyncio.to_thread(produce)
    while counter[0] < records:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    consumer.cancel()
    await source.stop()
    return records / elapsed


class PassThrough:
    """Stand-in pipeline: one unscored line event per record, so only the I/O path is measured."""

    provider = "none"

    def process(self, records: Sequence[Record], now: float) -> list[Output]:
        """Each record as an unscored line result."""
        out: list[Output] = []
        for r in records:
            parsed = ParsedLine(r.line, r.line, None, Level.UNKNOWN, r.source, r.source)
            out.append(LineResult(TemplatedLine(parsed, 0, r.line, (), 0, False, now), (), 0.0, Verdict.NORMAL))
        return out

    def tick(self, now: float) -> list[Output]:
        """Nothing: no timers."""
        return []

    def close(self, now: float) -> list[Output]:
        """Nothing to close."""
        return []

    def pending_records(self) -> int:
        """None held: no stitching."""
        return 0

    def flush_pending(self, now: float) -> list[Output]:
        """Nothing held to flush."""
        return []

    def take_rejected(self) -> list[Any]:
        """Nothing is ever rejected."""
        return []

    def held_by_source(self) -> dict[str, int]:
        """Nothing is held back."""
        return {}


async def bench_latency(model: str | None, rate: float, seconds: float) -> dict[str, float]:
    """Send-to-sink latency percentiles through the daemon at a steady record rate."""
    work = Path(tempfile.mkdtemp(prefix="logdetect-bench-"))
    text = f"""
model = "{model or work / "no-model"}"
state_dir = "{work / "state"}"  # the delivery journal is on, as in every deployment
[pipeline]
emit_all = true
[agent]
metrics_listen = ""
tick_interval_secs = 0.5
[sources.fw]
type = "forward"
listen = "tcp:127.0.0.1:0"
[sinks.events]
type = "file"
path = "{work / "events.jsonl"}"
"""
    config, problems = parse_config(text, work / "agent.toml")
    if config is None:
        raise RuntimeError(problems)
    daemon = Daemon(config) if model else Daemon(config, pipeline_factory=lambda _c: PassThrough())
    runner = asyncio.get_running_loop().create_task(daemon.run())
    while not daemon.sources or getattr(daemon.sources[0], "_server", None) is None:
        await asyncio.sleep(0.01)
    port = daemon.sources[0].address.port  # type: ignore[attr-defined]

    def client() -> list[float]:
        latencies: list[float] = []
        with socket.create_connection(("127.0.0.1", port)) as sock:
            unpacker = msgpack.Unpacker(raw=True)
            interval = 1.0 / rate
            next_send = time.perf_counter()
            n = 0
            end = next_send + seconds
            while next_send < end:
                time.sleep(max(0.0, next_send - time.perf_counter()))
                line = LINE.format(ms=n % 1000, w=n % 7, n=n, t=n % 50)
                sent = time.perf_counter()
                sock.sendall(msgpack.packb(["app", int(time.time()), {"log": line}, {"chunk": f"l{n}"}]))
                while True:
                    unpacker.feed(sock.recv(4096))
                    if any(True for _ in unpacker):
                        break
                latencies.append(time.perf_counter() - sent)
                n += 1
                next_send += interval
        return latencies

    latencies = await asyncio.to_thread(client)
    daemon.request_stop()
    await runner
    latencies.sort()
    return {
        "records": len(latencies),
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "max_ms": 1000 * latencies[-1],
    }


def main() -> int:
    """Run the ingest benchmarks and print their figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--model", default=None, help="bundle for the latency run (default: pass-through)")
    parser.add_argument("--rate", type=float, default=200.0, help="records/s for the latency run")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the latency run")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()

    import structlog

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=open(os.devnull, "w")))  # noqa: SIM115

    data, chunks = make_requests(args.records)
    decode = bench_decode(data, args.records)
    server = asyncio.run(bench_forward_server(data, args.records, chunks))
    zmq_rate = asyncio.run(bench_zmq(args.records))
    latency = asyncio.run(bench_latency(args.model, args.rate, args.seconds))
    results = {
        "records": args.records,
        "bare_msgpack_records_per_s": round(decode["bare_msgpack"]),
        "forward_decoder_records_per_s": round(decode["forward_decoder"]),
        "forward_server_acked_records_per_s": round(server),
        "zmq_source_records_per_s": round(zmq_rate),
        "latency_pipeline": "real" if args.model else "pass-through",
        "latency_rate_per_s": args.rate,
        **{f"latency_{k}": round(v, 3) if isinstance(v, float) else v for k, v in latency.items()},
    }
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"records per run: {args.records:,} (PackedForward, 1000 entries per chunk)")
    print(f"  bare msgpack.Unpacker           {results['bare_msgpack_records_per_s']:>12,} records/s")
    print(f"  Forward decoder (→ Record)      {results['forward_decoder_records_per_s']:>12,} records/s")
    print(f"  Forward server over TCP, acked  {results['forward_server_acked_records_per_s']:>12,} records/s")
    print(f"  ZeroMQ PULL source              {results['zmq_source_records_per_s']:>12,} records/s")
    print(
        f"latency forward send → event written ({results['latency_pipeline']} pipeline, "
        f"{args.rate:g} records/s, {latency['records']} records): p50 {latency['p50_ms']:.2f} ms, "
        f"p99 {latency['p99_ms']:.2f} ms, max {latency['max_ms']:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
