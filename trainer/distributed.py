"""The data half of training on Dask: reading, header parsing, template mining and matching
spread over the workers of a Dask cluster (`logdetect train --dask local:N | ADDRESS`).

    files (fsspec: local paths, s3://…, gs://… when their fsspec package is installed)
      ─► blocks of whole lines (dask.bytes.read_bytes) ─► each worker: stitch + parse its blocks,
         and the first line of every masked key in them
      ─► driver: the split point (held-back part = the last val_fraction of the lines, as in one
         process); the keys of all blocks merged (the earliest occurrence wins: the same result
         whatever the partitioning and whatever order the blocks finish in), and one miner mined
         on the first occurrences that are training lines, in line order, then consolidated
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
from agent.types import Level, ParsedLine, Record

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
    import dask

    # The workers' statistical profiler samples every thread every 10 ms: CPU spent on every
    # worker for a dashboard nobody reads here (it cost ~1 CPU-second per worker per run).
    dask.config.set({"distributed.worker.profile.enabled": False})
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


FirstKeys = dict[str, tuple[int, str]]  # masked key -> (line index, message) of its first line


def _first_keys(parsed: list[ParsedLine], config: MinerConfig) -> tuple[int, FirstKeys]:
    """A block's line count and the first (index in the block, message) of every masked key.
    Over all its lines: a key whose first line is held back has no training line at all."""
    miner = TemplateMiner(config)
    out: FirstKeys = {}
    for i, p in enumerate(parsed):
        key = miner.masked_key(p.message)
        if key not in out:
            out[key] = (i, p.message)
    return len(parsed), out


def merge_first_keys(parts: Sequence[tuple[int, FirstKeys]], n_train: int) -> list[str]:
    """The training messages of all blocks' keys (`parts` in file order, as the driver lists the
    blocks whatever order they finished in), each key's earliest occurrence, in line order. The
    result does not depend on where the blocks were cut: the earliest line of a key is the same."""
    merged: FirstKeys = {}
    start = 0
    for count, part in parts:
        for key, (i, message) in part.items():
            seen = merged.get(key)
            if seen is None or start + i < seen[0]:
                merged[key] = (start + i, message)
        start += count
    return [message for index, message in sorted(merged.values()) if index < n_train]


Packed = tuple[Any, ...]  # a ParsedLine's fields as a plain tuple: pickles ~2.5x faster
_LEVELS = {int(level): level for level in Level}


def _pack(p: ParsedLine) -> Packed:
    return (p.raw, p.message, p.timestamp, int(p.level), p.entity, p.source, p.line_no, p.component, p.fields)


def _unpack(t: Packed) -> ParsedLine:
    return ParsedLine(t[0], t[1], t[2], _LEVELS[t[3]], t[4], t[5], t[6], t[7], t[8])


def _match(parsed: list[ParsedLine], state: dict[str, Any]) -> tuple[list[Packed], list[Match]]:
    """Every line of a block matched against the merged miner (frozen: match never learns),
    with the block's lines packed for the trip to the driver."""
    miner = TemplateMiner.from_state(state)
    out: list[Match] = []
    for p in parsed:
        m = miner.match(p.message)
        out.append(None if m is None else (m.template_id, m.template, m.params))
    return [_pack(p) for p in parsed], out


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
    from dask.distributed import as_completed

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
    keys = client.gather([client.submit(_first_keys, pf, miner_config, pure=False) for pf in parsed_futures])
    phase("read_parse_keys")
    total = sum(count for count, _ in keys)
    n_train = total - int(total * val_fraction)
    miner = learn_templates(merge_first_keys(keys, n_train), miner_config)
    phase("merge_mine")
    state = client.scatter(miner.to_state(), broadcast=True)
    match_futures = [client.submit(_match, pf, state, pure=False) for pf in parsed_futures]
    order = {f.key: i for i, f in enumerate(match_futures)}
    results: list[tuple[list[ParsedLine], list[Match]]] = [([], [])] * len(match_futures)
    for future, (packed, matched) in as_completed(match_futures, with_results=True):  # type: ignore[no-untyped-call]
        results[order[future.key]] = ([_unpack(t) for t in packed], matched)  # while the others still run
        future.release()
    h = hashlib.sha256()
    for d in client.gather(digests):
        h.update(d)
    phase("match_gather")
    return DataHalf(
        parsed=[p for lines, _ in results for p in lines],
        log_format=fmt,
        miner=miner,
        matches=[m for _, matched in results for m in matched],
        data_sha256=h.hexdigest(),
        workers=len(client.scheduler_info().get("workers", {})),
        blocks=len(parse_tasks),
        seconds=seconds,
    )
