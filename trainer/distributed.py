"""The data half of training on Dask: reading, header parsing, template mining, matching and
per-entity sequences spread over the workers of a Dask cluster (`logdetect train --dask local:N | ADDRESS`).

    files (fsspec: local paths, s3://…, gs://… when their fsspec package is installed)
      ─► blocks of whole lines, equal in size within a file ─► each block's task (one round):
         read, stitch + parse, and reduce to columns: its `BlockKeys` (the first line of every
         masked key, the line count) for the driver, and its lines cut by owner =
         crc32(entity) % partitions into `KeyPiece`s (line, masked-key code, level, entity) that
         stay on the worker; the parsed lines stay there too only when the driver will ask for
         them (lines=True)
      ─► driver: the split point (held-back part = the last val_fraction of the lines, as in one
         process); the keys of all blocks merged (the earliest occurrence wins: the same result
         whatever the partitioning and whatever order the blocks finish in), and one miner mined
         on the first occurrences that are training lines, in line order, then consolidated;
         each distinct key matched once against it ─► each block's key → template id table
      ─► each partition's owner (second round): its pieces of every block, key codes turned into
         template ids by their block's table, sorted into per-entity sequences
         (trainer/entity_shuffle.py) ─► driver: the partitions' arrays concatenated
      ─► (lines=True) every parsed line and its match, in line order, for the rest of `train`

Why the first occurrence per masked key: the miner learns lines with the same masked key alike
(a memo hit only counts them), so one process and the merged run see the same sequence of
distinct keys in the same order; what can differ is only what the counts influence (template
sizes in the state, and forms evicted by `max_clusters`). Matching per key holds for the same
reason (the frozen miner's memo is keyed by it). Multi-line records are stitched within a
block; a stack trace cut by a block boundary becomes two records (blocks are `blocksize` bytes,
64 MiB by default, so this is rare).

The driver's own work up to the sequences grows with blocks × keys, templates and entities, not
lines. `train` then still reads every parsed line (history check, features, profile,
calibration) and fits the models in the driver process, as in a single-process run (see
ARCHITECTURE.md, "Beyond one machine", for where that limits a fleet's history). Nothing
but numpy columns and the small per-block key tables crosses between the processes: no miner
is shipped to the workers (unless lines=True, where they match every line with its params).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from agent.errors import UserError
from agent.multiline import Stitcher
from agent.parsing import LineParser, ParserConfig
from agent.reader import decode_line
from agent.templates import MinerConfig, TemplateMiner, learn_templates
from agent.types import Level, ParsedLine, Record
from trainer.entity_shuffle import EntitySequences, KeyPiece, cut_block, entity_columns

DEFAULT_BLOCKSIZE = 64 * 1024 * 1024
SAMPLE_LINES = 200  # what format detection reads (as agent.parsing.records.parse_records)

# (template id, template text, params) of a line; None: no template. A block's matches of one
# form share one text object, which pickle sends once.
Match = tuple[int, str, tuple[str, ...]] | None


@dataclass(frozen=True)
class DataHalf:
    """What the cluster hands back to `train`: every line parsed, the merged miner, each line's
    match against it, and how the run went."""

    parsed: list[ParsedLine]  # empty unless `prepare(lines=True)`
    log_format: str
    miner: TemplateMiner
    matches: list[Match]  # as `parsed`
    sequences: EntitySequences  # every line's template id and level, by entity (the shuffle)
    data_sha256: str
    workers: int
    blocks: int
    seconds: dict[str, float] = field(default_factory=dict)  # per phase

    def facts(self) -> dict[str, Any]:
        """What the manifest records of the distributed run."""
        return {"workers": self.workers, "blocks": self.blocks, "partitions": self.workers,
                "entities": len(self.sequences.entities), "seconds": self.seconds}


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
    # worker for a dashboard nobody reads here (it cost ~1 CPU-second per worker per run). The
    # event-loop health tick (every 20 ms), the system monitor (500 ms) and the memory monitor
    # (100 ms) likewise wake every process for dashboards; slower here, they cost less of the
    # cores the tasks need (local clusters only: a remote cluster keeps its own settings).
    dask.config.set({"distributed.worker.profile.enabled": False,
                     "distributed.admin.tick.interval": "500ms",
                     "distributed.admin.system-monitor.interval": "2s",
                     "distributed.worker.memory.monitor-interval": "500ms"})
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


@dataclass(frozen=True)
class BlockKeys:
    """What the driver needs of a parsed block: its line count, the first (index in the block,
    message) of every masked key in it (over all its lines: a key whose first line is held back
    has no training line at all; insertion order = the key codes of the block's `KeyPiece`s),
    and the digest of its raw lines. Small: grows with the block's distinct keys, not its lines."""

    count: int
    first: FirstKeys
    digest: bytes = b""


@dataclass(frozen=True)
class CutBlock:
    """A parsed block reduced to columns on its worker: its `BlockKeys` (gathered by the driver)
    and its lines cut by entity owner (`KeyPiece`s, which go only to their owners)."""

    keys: BlockKeys
    pieces: tuple[KeyPiece, ...]


def _cut(parsed: list[ParsedLine], config: MinerConfig, parts: int, data: bytes | None = None) -> CutBlock:
    """A block's `CutBlock` for `parts` owners (`data`: its raw bytes, for the digest)."""
    miner = TemplateMiner(config)
    out: FirstKeys = {}
    index: dict[str, int] = {}
    codes = np.empty(len(parsed), dtype=np.int32)
    for i, p in enumerate(parsed):
        key = miner.masked_key(p.message)
        code = index.get(key)
        if code is None:
            code = index[key] = len(index)
            out[key] = (i, p.message)
        codes[i] = code
    entities, entity_codes, levels = entity_columns(parsed)
    keys = BlockKeys(len(parsed), out, b"" if data is None else _digest(data))
    return CutBlock(keys, cut_block(entities, entity_codes, levels, codes, parts))


@dataclass(frozen=True)
class Block:
    """`length` bytes of a file from `offset`, widened to whole lines (fsspec's read_block: a
    block starts after the first newline at or past its offset and ends at the first past its
    end), as dask.bytes.read_bytes cuts them."""

    fs: Any  # an fsspec file system (pickles to the workers)
    path: str
    offset: int
    length: int

    @property
    def source(self) -> str:
        """The file's name: what one process records as the lines' source."""
        return PurePosixPath(self.path).name

    def read(self) -> bytes:
        """The block's bytes (on the worker that parses it)."""
        from fsspec.utils import read_block

        with self.fs.open(self.path, "rb") as f:
            return bytes(read_block(f, self.offset, self.length, b"\n"))


def list_blocks(paths: Sequence[str], blocksize: int) -> tuple[list[Block], bytes]:
    """The blocks of every input file (fsspec: local paths, s3://…) and the first 256 KiB of
    whole lines of the first file (what format detection samples). A file is cut into the fewest
    blocks of at most `blocksize` bytes, all of the same size (as dask.bytes.read_bytes does):
    equal tasks keep the workers equally busy up to the merge."""
    from fsspec.core import get_fs_token_paths
    from fsspec.utils import read_block

    fs, _, expanded = get_fs_token_paths(list(paths), mode="rb")
    if not expanded:
        raise FileNotFoundError(", ".join(paths))
    blocks = []
    for path in expanded:
        size = int(fs.info(path)["size"])
        n = max(1, -(-size // blocksize))
        cuts = [size * i // n for i in range(n + 1)]
        blocks += [Block(fs, path, cuts[i], max(cuts[i + 1] - cuts[i], 1)) for i in range(n)]
    with fs.open(expanded[0], "rb") as f:
        sample = bytes(read_block(f, 0, 256 * 1024, b"\n"))
    return blocks, sample


# A block's task result: its columns, and its parsed lines (kept on the worker only when the
# driver will ask for them, `prepare(lines=True)`; else empty).
ParsedBlock = tuple[CutBlock, list[ParsedLine]]


def _parse_block(
    block: Block, parser: ParserConfig, sample: list[str], config: MinerConfig, parts: int, keep: bool,
) -> ParsedBlock:
    """One block read, parsed and cut by entity owner (`keep`: also keep the parsed lines)."""
    data = block.read()
    parsed = _parse(data, block.source, parser, sample)
    return _cut(parsed, config, parts, data), parsed if keep else []


def _keys_of(block: ParsedBlock) -> BlockKeys:
    return block[0].keys


def _piece_of(block: ParsedBlock, k: int) -> KeyPiece:
    return block[0].pieces[k]


def earliest_keys(parts: Sequence[BlockKeys]) -> FirstKeys:
    """Every masked key's earliest (line index, message) over all blocks (`parts` in file order,
    as the driver lists the blocks whatever order they finished in). It does not depend on where
    the blocks were cut: the earliest line of a key is the same."""
    merged: FirstKeys = {}
    start = 0
    for part in parts:
        for key, (i, message) in part.first.items():
            seen = merged.get(key)
            if seen is None or start + i < seen[0]:
                merged[key] = (start + i, message)
        start += part.count
    return merged


def training_messages(earliest: FirstKeys, n_train: int) -> list[str]:
    """What the merged miner mines: each key's earliest message (`earliest_keys`) that is a
    training line (index < n_train), in line order."""
    return [message for index, message in sorted(earliest.values()) if index < n_train]


def merge_first_keys(parts: Sequence[BlockKeys], n_train: int) -> list[str]:
    """The training messages of all blocks' keys (`training_messages` of `earliest_keys`)."""
    return training_messages(earliest_keys(parts), n_train)


def key_templates(parts: Sequence[BlockKeys], earliest: FirstKeys, miner: TemplateMiner) -> list[np.ndarray]:
    """Each block's key → template id table (-1: no template) against the merged, frozen miner
    (`earliest`: `earliest_keys(parts)`). Lines with one masked key match alike (the miner's memo
    is keyed by it), so each distinct key is matched once, on its earliest message, in line
    order, as one process matching every line in order meets it first: O(distinct keys) in the
    driver, nothing per line."""
    found: dict[str, int] = {}
    for key, (_, message) in sorted(earliest.items(), key=lambda item: item[1][0]):
        m = miner.match(message)
        found[key] = -1 if m is None else m.template_id
    return [np.fromiter((found[key] for key in part.first), dtype=np.int64, count=len(part.first))
            for part in parts]


Packed = tuple[Any, ...]  # a ParsedLine's fields as a plain tuple: pickles ~2.5x faster
_LEVELS = {int(level): level for level in Level}


def _pack(p: ParsedLine) -> Packed:
    return (p.raw, p.message, p.timestamp, int(p.level), p.entity, p.source, p.line_no, p.component, p.fields)


def _unpack(t: Packed) -> ParsedLine:
    return ParsedLine(t[0], t[1], t[2], _LEVELS[t[3]], t[4], t[5], t[6], t[7], t[8])


def _own(k: int, templates: list[np.ndarray], starts: list[int], *pieces: KeyPiece) -> EntitySequences:
    """Partition k's owner: its pieces of every block (`pieces`, in block order) matched by their
    block's key → template table, grouped by entity, in line order."""
    return EntitySequences.assemble([p.matched(t, s) for p, t, s in zip(pieces, templates, starts, strict=True)])


def _packed(block: ParsedBlock, state: dict[str, Any]) -> tuple[list[Packed], list[Match]]:
    """A block's lines packed for the trip to the driver, with their matches (params included)."""
    parsed = block[1]
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
    lines: bool = True,
) -> DataHalf:
    """Run the data half on the cluster behind `client` (see the module docstring). `lines`:
    also bring every parsed line and its match to the driver (what `train`'s features, history
    check, profile and calibration still read); without it, only the merged miner and the
    per-entity sequences come back."""
    from dask.distributed import as_completed

    clock = time.monotonic()
    seconds: dict[str, float] = {}

    def phase(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        seconds[name] = round(now - clock, 3)
        clock = now

    try:
        blocks, sample_bytes = list_blocks(paths, blocksize)
    except (OSError, ValueError) as exc:
        raise UserError(f"--input: cannot read {', '.join(paths)}: {exc}") from None
    sample = [line for line in _lines(sample_bytes)[:SAMPLE_LINES] if line.strip()]
    fmt = LineParser(parser, sample).format
    parts = max(1, len(client.scheduler_info().get("workers", {})))  # one entity partition per worker
    block_futures = [client.submit(_parse_block, block, parser, sample, miner_config, parts, lines, pure=False)
                     for block in blocks]
    keys: list[BlockKeys] = client.gather([client.submit(_keys_of, f, pure=False) for f in block_futures])
    phase("read_parse_cut")
    total = sum(k.count for k in keys)
    n_train = total - int(total * val_fraction)
    earliest = earliest_keys(keys)
    miner = learn_templates(training_messages(earliest, n_train), miner_config)
    templates = key_templates(keys, earliest, miner)
    phase("merge_mine_match")
    starts = [int(s) for s in np.cumsum([0] + [k.count for k in keys])[:-1]]
    owners = [client.submit(_own, k, templates, starts, *(client.submit(_piece_of, f, k, pure=False)
                                                          for f in block_futures), pure=False)
              for k in range(parts)]
    sequences = EntitySequences.concat(client.gather(owners))
    h = hashlib.sha256()
    for k in keys:
        h.update(k.digest)
    phase("shuffle")
    parsed: list[ParsedLine] = []
    matches: list[Match] = []
    if lines:
        state = client.scatter(miner.to_state(), broadcast=True)
        packed_futures = [client.submit(_packed, f, state, pure=False) for f in block_futures]
        order = {f.key: i for i, f in enumerate(packed_futures)}
        results: list[tuple[list[ParsedLine], list[Match]]] = [([], [])] * len(packed_futures)
        for future, (packed, found) in as_completed(packed_futures, with_results=True):  # type: ignore[no-untyped-call]
            results[order[future.key]] = ([_unpack(t) for t in packed], found)  # while the others still run
            future.release()
        parsed = [p for block, _ in results for p in block]
        matches = [m for _, found in results for m in found]
        phase("lines_to_driver")
    return DataHalf(
        parsed=parsed,
        log_format=fmt,
        miner=miner,
        matches=matches,
        sequences=sequences,
        data_sha256=h.hexdigest(),
        workers=parts,
        blocks=len(blocks),
        seconds=seconds,
    )
