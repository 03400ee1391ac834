"""The data half of training on Dask: reading, header parsing, template mining and matching
spread over the workers of a Dask cluster (`logdetect train --dask local:N | ADDRESS`).

    files (fsspec: local paths, s3://…, gs://… when their fsspec package is installed)
      ─► blocks of whole lines (dask.bytes.read_bytes) ─► each worker: stitch + parse its blocks
      ─► the split point (held-back part = the last val_fraction of the lines, as in one process)
      ─► each worker: the first line of every masked key in its blocks' training part
      ─► driver: the keys of all blocks merged (the earliest occurrence wins: the same result
         whatever the partitioning and whatever order the blocks finish in), and one miner mined
         on those first occurrences in line order, then consolidated
      ─► each worker: every line of its blocks matched against the merged, frozen miner
      ─► driver: the parsed lines and their matches, in line order, for the rest of `train`

Why the first occurrence per masked key: the miner learns lines with the same masked key alike
(a memo hit only counts them), so one process and the merged run see the same sequence of
distinct keys in the same order; what can differ is only what the counts influence (template
sizes in the state, and forms evicted by `max_clusters`). Multi-line records are stitched within
a block; a stack trace cut by a block boundary becomes two records (blocks are `blocksize` bytes,
64 MiB by default, so this is rare).

The driver then holds every parsed line: the features, the models and the calibration that
follow run in the driver process, as in a single-process run (see ARCHITECTURE.md, "Beyond one
machine", for where that limits a fleet's history).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from agent.errors import UserError
from agent.multiline import Stitcher
from agent.parsing import LineParser, ParserConfig
from agent.reader import decode_line
from agent.templates import MinerConfig, TemplateMiner, learn_templates
from agent.types import ParsedLine, Record

DEFAULT_BLOCKSIZE = 64 * 1024 * 1024
SAMPLE_LINES = 200  # what format detection reads (as agent.parsing.records.parse_records)

# (template id, template text, params) of a line; None: no template. A block's matches of one
# form share one text object, which pickle sends once.
Match = tuple[int, str, tuple[str, ...]] | None


@dataclass(frozen=True)
class DataHalf:
    """What the cluster hands back to `train`: every line parsed, the merged miner, each line's
    match against it, and how the run went."""

    parsed: list[ParsedLine]
    log_format: str
    miner: TemplateMiner
    matches: list[Match]
    data_sha256: str
    workers: int
    blocks: int
    seconds: dict[str, float] = field(default_factory=dict)  # per phase

    def facts(self) -> dict[str, Any]:
        """What the manifest records of the distributed run."""
        return {"workers": self.workers, "blocks": self.blocks, "seconds": self.seconds}


def connect(spec: str) -> Any:
    """A Dask client: `local:N` starts a local cluster of N one-thread worker processes; anything
    else is a scheduler address (tcp://HOST:8786)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise UserError("--dask needs dask[distributed]: pip install 'logdetect[fleet]'") from None
    for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core",
                 "distributed.http.proxy", "distributed.worker"):
        logging.getLogger(name).setLevel(logging.ERROR)  # their INFO chatter is not ours to print
    if spec.startswith("local:"):
        try:
            n = int(spec.removeprefix("local:"))
        except ValueError:
            n = 0
        if n < 1:
            raise UserError(f"--dask {spec}: use local:N with N >= 1 workers, or a scheduler address")
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                               silence_logs=logging.ERROR)
        return Client(cluster)  # type: ignore[no-untyped-call]
    try:
        return Client(spec, timeout=30)  # type: ignore[no-untyped-call]
    except OSError as exc:
        raise UserError(f"--dask {spec}: cannot reach the scheduler: {exc}") from None


def _lines(data: bytes) -> list[str]:
    return [decode_line(raw) for raw in data.splitlines(keepends=True)]


def _parse(data: bytes, source: str, parser: ParserConfig, sample: list[str]) -> list[ParsedLine]:
    """One block: lines → records → stitched → parsed (the agent's parser, detecting the format
    from the same sample lines a single-process run reads)."""
    records = [Record(line, source) for line in _lines(data)]
    if parser.multiline:
        stitcher = Stitcher()
        stitched: list[Record] = []
        for r in records:
            stitched.extend(stitcher.feed(r))
        stitched.extend(stitcher.flush())
        records = stitched
    line_parser = LineParser(parser, sample)
    return [line_parser.parse(r, i + 1) for i, r in enumerate(records)]


def _first_keys(parsed: list[ParsedLine], start: int, limit: int, config: MinerConfig) -> dict[str, tuple[int, str]]:
    """The first (global line index, message) of every masked key among this block's training lines."""
    miner = TemplateMiner(config)
    out: dict[str, tuple[int, str]] = {}
    for i, p in enumerate(parsed[: max(0, limit - start)]):
        key = miner.masked_key(p.message)
        if key not in out:
            out[key] = (start + i, p.message)
    return out


def merge_first_keys(parts: Sequence[dict[str, tuple[int, str]]]) -> list[str]:
    """The messages of all blocks' keys, each key's earliest occurrence, in line order.
    Order-independent: the earliest index wins whatever order the parts come in."""
    merged: dict[str, tuple[int, str]] = {}
    for part in parts:
        for key, first in part.items():
            seen = merged.get(key)
            if seen is None or first[0] < seen[0]:
                merged[key] = first
    return [message for _, message in sorted(merged.values())]


def _match(parsed: list[ParsedLine], state: dict[str, Any]) -> list[Match]:
    """Every line of a block matched against the merged miner (frozen: match never learns)."""
    miner = TemplateMiner.from_state(state)
    out: list[Match] = []
    for p in parsed:
        m = miner.match(p.message)
        out.append(None if m is None else (m.template_id, m.template, m.params))
    return out


def _digest(data: bytes) -> bytes:
    h = hashlib.sha256()
    for line in _lines(data):
        h.update(line.encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.digest()


def prepare(
    paths: Sequence[str],
    parser: ParserConfig,
    miner_config: MinerConfig,
    val_fraction: float,
    client: Any,
    blocksize: int = DEFAULT_BLOCKSIZE,
) -> DataHalf:
    """Run the data half on the cluster behind `client` (see the module docstring)."""
    from dask.bytes.core import read_bytes

    clock = time.monotonic()
    seconds: dict[str, float] = {}

    def phase(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        seconds[name] = round(now - clock, 3)
        clock = now

    try:
        sample_bytes, blocks_per_file, names = read_bytes(  # type: ignore[no-untyped-call]
            list(paths), delimiter=b"\n", blocksize=blocksize, sample="256 KiB", include_path=True)
    except (OSError, ValueError) as exc:
        raise UserError(f"--input: cannot read {', '.join(paths)}: {exc}") from None
    sample = [line for line in _lines(sample_bytes or b"")[:SAMPLE_LINES] if line.strip()]
    sample_parser = LineParser(parser, sample)
    fmt = sample_parser.format
    parse_tasks = []
    for name, blocks in zip(names, blocks_per_file, strict=True):
        source = PurePosixPath(str(name)).name
        parse_tasks += [(block, source) for block in blocks]
    data_futures = client.compute([block for block, _ in parse_tasks])
    parsed_futures = [client.submit(_parse, data, source, parser, sample, pure=False)
                      for data, (_, source) in zip(data_futures, parse_tasks, strict=True)]
    digests = client.map(_digest, data_futures)
    counts = client.gather(client.map(len, parsed_futures))
    phase("read_parse")
    total = sum(counts)
    n_train = total - int(total * val_fraction)
    starts = [sum(counts[:i]) for i in range(len(counts))]
    keys = client.gather([client.submit(_first_keys, pf, start, n_train, miner_config, pure=False)
                          for pf, start in zip(parsed_futures, starts, strict=True)])
    messages = merge_first_keys(keys)
    miner = learn_templates(messages, miner_config)
    phase("mine_merge")
    state = client.scatter(miner.to_state(), broadcast=True)
    matches_per_block = client.gather([client.submit(_match, pf, state, pure=False) for pf in parsed_futures])
    phase("match")
    parsed = [p for block in client.gather(parsed_futures) for p in block]
    h = hashlib.sha256()
    for d in client.gather(digests):
        h.update(d)
    phase("gather")
    return DataHalf(
        parsed=parsed,
        log_format=fmt,
        miner=miner,
        matches=[m for block in matches_per_block for m in block],
        data_sha256=h.hexdigest(),
        workers=len(client.scheduler_info().get("workers", {})),
        blocks=len(parse_tasks),
        seconds=seconds,
    )
