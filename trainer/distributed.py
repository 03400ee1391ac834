"""The data half of training on Dask: reading, header parsing, template mining, matching,
per-entity sequences, features and the explanation profile spread over the workers of a Dask
cluster (`logdetect train --dask local:N | ADDRESS`). Only counts, columns and the sampled
training set reach the driver; no parsed line does.

    files (fsspec: local paths, s3://…, gs://… when their fsspec package is installed)
      ─► blocks of whole lines, equal in size within a file ─► round 1, one task per block:
         read, stitch + parse; each line's masked key (`ParsedBlock`, kept on the worker); its
         `BlockKeys` (the first line of every masked key, the line count) and its history columns
         (time, masked-key code, level, actor: `HistoryLines`) to the driver
      ─► driver: the split point (held-back part = the last val_fraction of the lines, as in one
         process); the keys of all blocks merged (the earliest occurrence wins: the same result
         whatever the partitioning and whatever order the blocks finish in); one miner mined on
         the first occurrences that are training lines, in line order, then consolidated; each
         distinct key matched once against it ─► each block's key → template id table
      ─► round 2, per block (submitted with the merge; `MatchedBlock`, kept on the worker):
         every line matched (params) and cut by entity owner (`Owners`: the busiest entities
         spread evenly by their feature lines over the partitions, one per worker, the heavier
         partition on the worker with less block work); meanwhile the driver names each line's
         key in round 1's history columns by the served miner (learnt from each key's first
         held-back line, the block the split point cuts asked first for its own) and runs the
         history check; and each owner's pieces of every block grouped by entity
         (trainer/entity_shuffle.py)
      ─► round 3, once the vocabulary is known: per owner the feature extractor's first pass over
         its training lines (`FeatureCounts`) and its sequences to the driver, which takes the
         held-back split from them, then the feature rows of its training and held-back lines
         before the merged statistics (`RawRows`: the driver fills the columns that read them);
         per block the partial explanation profile(s) of its lines (`ProfileBuilder`) and its
         lines of operator-labelled problem templates, merged pairwise in line order on the
         workers and finished at the root
      ─► round 4: per block the held-back lines the vote is judged and calibrated on (raw text)

Tasks run on the worker that holds their block (blocks parsed in runs, `runs_of`):
Dask's queuing would otherwise move parsed blocks between workers. Task priorities
(`_PRIORITY`) order each worker's queue. The tasks and the driver's assembly run with the cyclic
garbage collector paused (`paused_gc`): the data half allocates many small objects beside large live
heaps, and each full collection walked all of them.

Why the first occurrence per masked key: the miner learns lines with the same masked key alike
(a memo hit only counts them), so one process and the merged run see the same sequence of
distinct keys in the same order; what can differ is only what the counts influence (template
sizes in the state, and forms evicted by `max_clusters`). Matching per key holds for the same
reason (the frozen miner's memo is keyed by it). Multi-line records are stitched within a
block; a stack trace cut by a block boundary becomes two records (blocks are `blocksize` bytes,
64 MiB by default, so this is rare).

What reaches the driver: per block its keys, its history columns (~21 bytes a line) and its
judged lines' text (the second half of the held-back part, what the pipeline runs over to
calibrate); one finished profile; per owner its feature counts, its sequences (17 bytes a line)
and its feature rows (52 bytes and two previous tokens a training or held-back line, what the
Isolation Forest fits).
No miner is shipped except as state, broadcast once (with the owners) for round 2, and the
served miner's once for round 3 when held-back-only templates are served.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, TypeVar

import numpy as np

from agent.errors import UserError
from agent.features import (
    N_FEATURES,
    FeatureConfig,
    FeatureCounts,
    FeatureInput,
    FeatureStats,
    rows_before_stats,
    with_stats,
)
from agent.multiline import Stitcher
from agent.parsing import LineParser, ParserConfig
from agent.reader import decode_line
from agent.templates import MinerConfig, TemplateMiner, learn_templates
from agent.types import Level, ParsedLine, Record
from trainer.entity_shuffle import PLACED, EntitySequences, OwnedLines, Owners, Piece, entity_columns
from trainer.history import HistoryLines
from trainer.profile import ProfileBuilder
from trainer.templated import Match, templated_line

DEFAULT_BLOCKSIZE = 64 * 1024 * 1024
SAMPLE_LINES = 200  # what format detection reads (as agent.parsing.records.parse_records)


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
        # Its workers log at CRITICAL only: when the cluster stops, a worker's heartbeat that
        # meets the closing scheduler logs a CommClosedError traceback at ERROR (dask/distributed
        # #7105), which a user saw at the end of every `train --dask local:N`. Nothing is lost: a
        # task's error, or a worker's death, reaches this process as an exception.
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
            silence_logs=logging.CRITICAL)
        return Client(cluster)  # type: ignore[no-untyped-call]
    try:
        return Client(spec, timeout=30)  # type: ignore[no-untyped-call]
    except OSError as exc:
        raise UserError(f"--dask {spec}: cannot reach the scheduler: {exc}") from None


F = TypeVar("F", bound=Callable[..., Any])


def paused_gc(fn: F) -> F:
    """Run `fn` with Python's cyclic garbage collector paused (restored after): the tasks and the
    driver's assembly allocate many small objects while large heaps of parsed lines, miners and
    profiles are alive, and each full collection walks all of them (freed by reference counting
    all the same; the lines, matches and statistics hold no cycles)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        was = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was:
                gc.enable()

    return run  # type: ignore[return-value]


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
    has no training line at all; insertion order = the key codes of its `ParsedBlock`),
    and the digest of its raw lines. Small: grows with the block's distinct keys, not its lines."""

    count: int
    first: FirstKeys
    digest: bytes = b""
    entities: dict[str, int] = field(default_factory=dict)  # lines of its busiest entities (`PLACED`)


@dataclass(frozen=True)
class BlockFacts:
    """What the driver gathers of each parsed block in round 1: its `BlockKeys` and its history
    columns (each line's masked-key code as its template: the driver names them with the served
    miner's key table), so that the history check runs in the driver while round 2 runs."""

    keys: BlockKeys
    history: HistoryLines


@dataclass(frozen=True)
class ParsedBlock:
    """A parsed block on its worker: its `BlockKeys` (gathered by the driver), each line's
    masked-key code (an index into its keys), its parsed lines and its source."""

    keys: BlockKeys
    codes: np.ndarray  # int32, per line
    parsed: list[ParsedLine]
    source: str


def _cut(parsed: list[ParsedLine], config: MinerConfig, source: str = "", data: bytes | None = None) -> ParsedBlock:
    """A block's `ParsedBlock` (`data`: its raw bytes, for the digest)."""
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
    entities = dict(Counter(p.entity for p in parsed).most_common(PLACED))
    keys = BlockKeys(len(parsed), out, b"" if data is None else _digest(data), entities)
    return ParsedBlock(keys, codes, parsed, source)


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


@paused_gc
def _parse_block(block: Block, parser: ParserConfig, sample: list[str], config: MinerConfig) -> ParsedBlock:
    """Round 1: one block read, parsed and keyed."""
    data = block.read()
    return _cut(_parse(data, block.source, parser, sample), config, block.source, data)


@paused_gc
def _facts_of(block: ParsedBlock) -> BlockFacts:
    return BlockFacts(block.keys, HistoryLines.of(block.parsed, block.codes))


@paused_gc
def _firsts_from(block: ParsedBlock, local: int) -> FirstKeys:
    """The first (index in the block, message) of every masked key among the block's lines from
    `local` on (the block the split point cuts: its held-back lines)."""
    keys = list(block.keys.first)
    codes = block.codes[local:]
    found, first = np.unique(codes, return_index=True)
    return {keys[c]: (local + int(i), block.parsed[local + int(i)].message)
            for c, i in zip(found.tolist(), first.tolist(), strict=True)}


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


def held_back_messages(parts: Sequence[BlockKeys], straddle: FirstKeys, at: int | None, n_train: int) -> list[str]:
    """The first held-back line (index >= n_train) of every masked key, in line order: what the
    served miner learns (`trainer/whole_history.extend_miner` learns a key's first message alike
    and only matches the others). `straddle`: the first keys of the held-back lines of the block
    the split point cuts (`_firsts_from`), whose first line is line `at`."""
    found: FirstKeys = {}
    start = 0
    for part in parts:
        first = straddle if start == at else part.first
        if start + part.count > n_train:
            for key, (i, message) in first.items():
                if start + i >= n_train and key not in found:
                    found[key] = (start + i, message)
        start += part.count
    return [message for _, message in sorted(found.values())]


Packed = tuple[Any, ...]  # a ParsedLine's fields as a plain tuple: pickles ~2.5x faster
_LEVELS = {int(level): level for level in Level}


def _pack(p: ParsedLine) -> Packed:
    return (p.raw, p.message, p.timestamp, int(p.level), p.entity, p.source, p.line_no, p.component, p.fields)


def _unpack(t: Packed) -> ParsedLine:
    return ParsedLine(t[0], t[1], t[2], _LEVELS[t[3]], t[4], t[5], t[6], t[7], t[8])


@dataclass(frozen=True)
class MatchedBlock:
    """Round 2's block on its worker: every line's match against the training miner (the
    template from the driver's key table, the text and params from matching the line), and its
    lines cut by entity owner (`pieces`, which go only to their owners)."""

    start: int  # the block's first line's index in the whole input
    parsed: list[ParsedLine]
    source: str
    codes: np.ndarray  # per line: masked-key code
    matches: list[Match]
    pieces: tuple[Piece, ...]


@paused_gc
def _match_block(
    block: ParsedBlock, start: int, table: np.ndarray, shared: tuple[dict[str, Any], Owners],
) -> MatchedBlock:
    """Round 2: a block's lines matched and cut by owner (`table`: the block's key → template
    table of the training miner; `shared`: the miner's state and the owners)."""
    state, owners = shared
    miner = TemplateMiner.from_state(state)
    parsed, codes = block.parsed, block.codes
    ids = table[codes] if len(codes) else np.empty(0, dtype=np.int64)
    matches: list[Match] = []
    for p, tid in zip(parsed, ids.tolist(), strict=True):
        if tid < 0:
            matches.append(None)
            continue
        found = miner.match(p.message)
        matches.append((tid, miner.template(tid) or p.message, ()) if found is None else
                       (tid, found.template, found.params))
    entities, entity_codes, levels = entity_columns(parsed)
    times = np.fromiter((p.timestamp if p.timestamp is not None else 0.0 for p in parsed), dtype=np.float64,
                        count=len(parsed))
    lengths = np.fromiter((len(p.message) for p in parsed), dtype=np.int32, count=len(parsed))
    n_params = np.fromiter((0 if m is None else len(m[2]) for m in matches), dtype=np.int32, count=len(parsed))
    own = np.array([e == block.source for e in entities], dtype=np.bool_)
    piece = Piece(entities, entity_codes, np.arange(start, start + len(parsed), dtype=np.int64), ids, levels,
                  times, lengths, n_params, own[entity_codes] if len(entity_codes) else np.empty(0, dtype=np.bool_))
    return MatchedBlock(start, parsed, block.source, codes, matches, piece.cut(owners))


def _pieces_of(k: int, *blocks: tuple[int, MatchedBlock]) -> list[tuple[int, Piece]]:
    """Partition k's pieces of the (block index, block)s one worker holds: one task per worker
    and partition, not per block and partition."""
    return [(i, block.pieces[k]) for i, block in blocks]


@dataclass(frozen=True)
class Owned:
    """Round 3's partition on its owner: its lines, and its training lines' feature input and
    counts (`train_index`: their line indices)."""

    lines: OwnedLines
    train_index: np.ndarray
    train_inputs: list[FeatureInput]
    prevs: list[int | None]
    counts: FeatureCounts


@paused_gc
def _own(*held: list[tuple[int, Piece]]) -> OwnedLines:
    """Round 3 (submitted with round 2): partition k's owner: its pieces of every block (from
    each worker's `_pieces_of`; put in block order) grouped by entity."""
    return OwnedLines.assemble([piece for _, piece in sorted((p for part in held for p in part), key=lambda p: p[0])])


@paused_gc
def _count(lines: OwnedLines, n_train: int, suspect: frozenset[int], vocab: dict[int, int]) -> Owned:
    """Round 3, once the vocabulary is known: the first pass of the feature extractor over the
    owner's training lines."""
    index, inputs = lines.feature_inputs(0, n_train, suspect, vocab)
    counts, prevs = FeatureCounts.count(inputs)
    return Owned(lines, index, inputs, prevs, counts)


def _counts_of(owned: Owned) -> FeatureCounts:
    return owned.counts


def _sequences_of(lines: OwnedLines) -> EntitySequences:
    return lines.sequences


@dataclass(frozen=True)
class RawRows:
    """An owner's feature rows before the merged statistics (`rows_before_stats`): its training
    lines' and its held-back lines' (the threshold lines are the first of these, up to the
    judged split the driver takes later), with their line indices and previous tokens."""

    train_index: np.ndarray
    train: np.ndarray
    train_prevs: np.ndarray  # from the extractor
    counted_prevs: np.ndarray  # from `FeatureCounts.count` (-1: none)
    held_index: np.ndarray
    held: np.ndarray
    held_prevs: np.ndarray


@paused_gc
def _raw_rows(
    owned: Owned, lo: int, hi: int, suspect: frozenset[int], vocab: dict[int, int], config: FeatureConfig,
) -> RawRows:
    """Round 3, per owner, once its counts are in: the feature rows of its training lines and of
    its held-back lines [lo, hi) (a fresh extractor, as one process serves the threshold lines),
    without the statistics: the driver fills the columns that read them (`with_stats`), so no
    round waits for the merged statistics."""
    train, train_prevs = rows_before_stats(owned.train_inputs, config)
    counted = np.fromiter((-1 if p is None else p for p in owned.prevs), dtype=np.int64, count=len(owned.prevs))
    index, inputs = owned.lines.feature_inputs(lo, hi, suspect, vocab)
    held, held_prevs = rows_before_stats(inputs, config)
    return RawRows(owned.train_index, train, train_prevs, counted, index, held, held_prevs)


@dataclass(frozen=True)
class BlockOutputs:
    """Round 3, per block, once the vocabulary is known: what the driver reads of the block's
    lines besides the judged ones."""

    profile: ProfileBuilder  # partial: its training lines (suspect templates left out)
    problem: list[Packed]  # its lines of operator-labelled problem templates
    whole: ProfileBuilder | None  # partial: its normal lines with the served miner's templates


@dataclass(frozen=True)
class BlockAsk:
    """What round 3 asks of each block (the same for all)."""

    n_train: int
    suspect: frozenset[int]
    vocab: dict[int, int]
    problem: frozenset[int]
    served: dict[str, Any] | None  # the served miner's state, when its templates are served
    served_suspect: frozenset[int]
    served_vocab: dict[int, int]


@paused_gc
def _outputs(block: MatchedBlock, served_table: np.ndarray, ask: BlockAsk) -> BlockOutputs:
    """A block's partial profiles and problem lines."""
    start, n_train, suspect = block.start, ask.n_train, ask.suspect
    ids = [-1 if m is None else m[0] for m in block.matches]
    train_end = max(0, min(len(ids), n_train - start))
    profile = ProfileBuilder(partial=True)
    profile.add_all(templated_line(block.parsed[i], block.matches[i], ask.vocab)
                    for i in range(train_end) if ids[i] not in suspect)
    problem = [_pack(p) for p, t in zip(block.parsed, ids, strict=True) if t in ask.problem] if ask.problem else []
    whole = None
    if ask.served is not None:
        served = TemplateMiner.from_state(ask.served)
        whole = ProfileBuilder(partial=True)
        normal = (i for i in range(len(ids)) if i < train_end or ids[i] not in suspect)
        tids = served_table[block.codes] if len(block.codes) else np.empty(0, dtype=np.int64)
        lines = (templated_line(block.parsed[i], _served_match(served, block.parsed[i].message, int(tids[i])),
                                ask.served_vocab) for i in normal)
        whole.add_all(tl for tl in lines if tl.template_id >= 0 and tl.template_id not in ask.served_suspect)
    return BlockOutputs(profile, problem, whole)


@paused_gc
@paused_gc
def _joined_outputs(first: BlockOutputs, then: BlockOutputs) -> BlockOutputs:
    """Two consecutive runs of blocks' outputs as one (a tree of these merges the blocks'
    partial profiles on the workers, in line order, so the driver merges one)."""
    first.profile.merge(then.profile)
    if first.whole is not None and then.whole is not None:
        first.whole.merge(then.whole)
    return BlockOutputs(first.profile, first.problem + then.problem, first.whole)


@dataclass(frozen=True)
class FinishedOutputs:
    """The root of the blocks' profile tree, finished on its worker: the profiles as the driver
    serves them (`ProfileBuilder.result`) and the problem lines."""

    profile: dict[str, Any]
    problem: list[Packed]
    whole: dict[str, Any] | None


@paused_gc
def _finished(out: BlockOutputs | None, served: bool) -> FinishedOutputs:
    """The merged partial profiles finished where they were merged: what the driver did with the
    tree's root, but the result (~0.15 MB on 128,000 BGL lines) is shipped instead of the
    uncapped partial tables (~1 MB of small objects, 0.1-0.3 s to unpickle in the driver)."""
    profile = ProfileBuilder()
    whole = ProfileBuilder() if served else None
    if out is not None:
        profile.merge(out.profile)
        if whole is not None and out.whole is not None:
            whole.merge(out.whole)
    return FinishedOutputs(profile.result(), [] if out is None else out.problem,
                           None if whole is None else whole.result())


@dataclass(frozen=True)
class JudgedLines:
    """A block's judged lines: their raw text, and the block's source. One object, pickled at
    once: Dask ships a plain list of tuples element by element (12,800 lines took 0.6-1.0 s
    to reach the driver, against 0.06 s as one object)."""

    raw: list[str]
    source: str


def _judged(block: MatchedBlock, judged_from: int, suspect: frozenset[int]) -> JudgedLines:
    """Round 4, per block: the raw text of its lines from `judged_from` on whose template is not
    suspect: the held-back lines the vote is judged and calibrated on."""
    first = max(0, judged_from - block.start)
    return JudgedLines([block.parsed[i].raw for i in range(first, len(block.matches))
                        if (-1 if (m := block.matches[i]) is None else m[0]) not in suspect], block.source)


def _served_match(served: TemplateMiner, message: str, tid: int) -> Match:
    """A line's match against the served miner: the template from the driver's key table, the
    text and params from matching the line."""
    if tid < 0:
        return None
    found = served.match(message)
    return (tid, served.template(tid) or message, ()) if found is None else (tid, found.template, found.params)


def _digest(data: bytes) -> bytes:
    h = hashlib.sha256()
    for line in _lines(data):
        h.update(line.encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.digest()


@dataclass(frozen=True)
class TrainingOutputs:
    """What round 4 brings to the driver (see `ClusterData.outputs`)."""

    x_train: np.ndarray  # training rows in line order (burst ratio not yet set)
    x_val: np.ndarray  # threshold rows in line order (burst ratio not yet set)
    profile: dict[str, Any]
    judged: list[Record]
    problem: list[ParsedLine]
    whole: dict[str, Any] | None


@dataclass
class ClusterData:
    """The data half on a Dask cluster after round 1 and the merge: the merged miner and the
    cluster's handles on the parsed blocks; `train` asks for the rest round by round."""

    client: Any
    parsed: list[Any]  # round 1's futures, one per block, in file order
    keys: list[BlockKeys]
    earliest: FirstKeys
    log_format: str
    miner: TemplateMiner
    templates: list[np.ndarray]  # per block: key → training template id
    lines: int
    n_train: int
    data_sha256: str
    workers: int
    seconds: dict[str, float] = field(default_factory=dict)  # per phase
    entities: int = 0  # known after round 3
    matched: list[Any] = field(default_factory=list)  # round 2's futures
    served_tables: list[np.ndarray] = field(default_factory=list)
    histories: list[HistoryLines] = field(default_factory=list)  # round 1's, per block
    assembled: list[Any] = field(default_factory=list)  # round 3's futures: the owners' lines
    owners: list[Any] = field(default_factory=list)  # round 3's futures: the owners' feature counts
    raw: list[Any] = field(default_factory=list)  # round 3's futures: the owners' rows before the statistics
    outs: list[Any] = field(default_factory=list)  # round 3's futures: the blocks' profiles
    homes: dict[Any, list[str] | None] = field(default_factory=dict)  # future key -> the worker holding it
    straddle: Any = None  # the future of `_firsts_from` on the block the split point cuts
    straddle_at: int | None = None  # that block's first line
    _clock: float = field(default_factory=time.monotonic)

    @property
    def starts(self) -> list[int]:
        """Each block's first line's index in the whole input."""
        return [int(s) for s in np.cumsum([0] + [k.count for k in self.keys])[:-1]]

    def phase(self, name: str) -> None:
        """Record the seconds since the last phase under `name`."""
        now = time.monotonic()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._clock, 3)
        self._clock = now

    def facts(self) -> dict[str, Any]:
        """What the manifest records of the distributed run."""
        return {"workers": self.workers, "blocks": len(self.keys), "partitions": self.workers,
                "entities": self.entities, "seconds": self.seconds}

    def held_back_messages(self) -> list[str]:
        """The held-back part's first line of each masked key, in line order (the block the split
        point cuts was asked for its own by `prepare`)."""
        straddle = {} if self.straddle is None else self.straddle.result()
        return held_back_messages(self.keys, straddle, self.straddle_at, self.n_train)

    def _home(self, future: Any) -> str | None:
        """The worker holding `future`'s result, when known."""
        home = self.homes.get(future.key)
        return home[0] if home else None

    def _shared(self, value: Any, workers: Sequence[str]) -> dict[str | None, Any]:
        """`value` for many tasks, by worker: one task per worker carries it there. Unlike
        `client.scatter(broadcast=True)`, the driver does not wait for the workers to have it
        (a round trip while they sat idle between rounds), and unlike one shared future, no
        worker waits to fetch it from another."""
        out: dict[str | None, Any] = {w: self.client.submit(_same, value, workers=[w], pure=False, priority=3)
                                      for w in workers}
        out[None] = next(iter(out.values())) if out else self.client.submit(_same, value, pure=False, priority=3)
        return out

    def _on(self, where: Any, fn: Any, *args: Any) -> Any:
        """`fn(*args)` on the worker that holds `where`'s result: a block's lines stay where they
        were parsed (Dask's queuing would otherwise move them to whichever worker is free). Where
        each result lives is asked once, after round 1 (`homes`); later results are where their
        tasks were pinned."""
        home = self.homes.get(where.key)
        future = self.client.submit(fn, *args, workers=home, pure=False, priority=_PRIORITY.get(fn, 0))
        self.homes[future.key] = home
        return future

    def match(self) -> None:
        """Round 2 (submitted by `prepare`): every block's lines matched and cut by owner on its
        worker."""
        client = self.client
        workers = sorted(client.scheduler_info().get("workers", {}))  # owner k on the k-th worker
        homes = [h[0] if (h := self.homes.get(f.key)) else None for f in self.parsed]
        weights, base = owner_work(self.keys, self.starts, homes, workers, self.n_train)
        owners = Owners.balanced(weights, self.workers, base)  # partition k on the k-th worker
        shared = self._shared((self.miner.to_state(), owners), workers)
        self.matched = [self._on(f, _match_block, f, s, t, shared[self._home(f)])
                        for f, s, t in zip(self.parsed, self.starts, self.templates, strict=True)]
        for f in self.parsed:
            f.release()
        self.parsed = []
        held = self._held()
        self.assembled = []
        for part in range(self.workers):
            home = [workers[part % len(workers)]] if workers else None
            pieces = [self._on(group[0][1], _pieces_of, part, *group) for group in held]
            self.assembled.append(client.submit(_own, *pieces, workers=home, pure=False, priority=_PRIORITY[_own]))
            self.homes[self.assembled[-1].key] = home

    def _held(self) -> list[list[tuple[int, Any]]]:
        """Round 2's (block index, future)s grouped by the worker holding them (in block order;
        a block whose home is not known alone)."""
        groups: dict[Any, list[tuple[int, Any]]] = {}
        for i, f in enumerate(self.matched):
            home = self.homes.get(f.key)
            groups.setdefault(i if home is None else tuple(home), []).append((i, f))
        return list(groups.values())

    def history_lines(self, served: TemplateMiner) -> HistoryLines:
        """Round 1's history columns, each line named by the served miner (each distinct key
        matched once, here), while the workers run round 2."""
        self.served_tables = key_templates(self.keys, self.earliest, served)
        out = HistoryLines.concat([dataclasses.replace(p, ids=table[p.ids] if len(p.ids) else p.ids.astype(np.int64))
                                   for p, table in zip(self.histories, self.served_tables, strict=True)])
        self.histories = []
        return out

    def sequences(
        self, ask: BlockAsk, config: FeatureConfig,
    ) -> tuple[EntitySequences, list[FeatureCounts]]:
        """Round 3, once the vocabulary is known: the feature counts of each owner's training lines
        (`ask.suspect` templates left out, tokens by `ask.vocab`) and the owners' sequences; the
        blocks' partial profiles start too (`outputs` collects them)."""
        self.phase("history_check")  # the served miner and the history check, while round 2 runs
        client = self.client
        self.owners = [self._on(o, _count, o, self.n_train, ask.suspect, ask.vocab) for o in self.assembled]
        counts_futures = [self._on(o, _counts_of, o) for o in self.owners]
        self.raw = [self._on(o, _raw_rows, o, self.n_train, self.lines, ask.suspect, ask.vocab, config)
                    for o in self.owners]
        shared = self._shared(ask, sorted(client.scheduler_info().get("workers", {})))
        level = [self._on(f, _outputs, f, t, shared[self._home(f)])
                 for f, t in zip(self.matched, self.served_tables, strict=True)]
        while len(level) > 1:  # merged pairwise on the workers, in line order, where the second half is
            joined = []
            for i in range(0, len(level) - 1, 2):
                first = level[i]
                if self.homes.get(first.key) != self.homes.get(level[i + 1].key):
                    # the two runs' merge: the first half moved as soon as it is done, while the
                    # second still works (Dask would fetch it only once both are done)
                    first = self._on(level[i + 1], _same, first)
                joined.append(self._on(level[i + 1], _joined_outputs, first, level[i + 1]))
            level = joined + level[len(joined) * 2 :]
        served = ask.served is not None
        self.outs = [self._on(level[0], _finished, level[0], served) if level else
                     client.submit(_finished, None, served, pure=False)]
        counts: list[FeatureCounts] = client.gather(counts_futures)
        sequences = EntitySequences.concat(client.gather([self._on(o, _sequences_of, o) for o in self.assembled]))
        self.entities = len(sequences.entities)
        self.phase("match_shuffle_count")
        return sequences, counts

    def outputs(
        self, stats: FeatureStats, config: FeatureConfig, judged_from: int, ask: BlockAsk,
    ) -> TrainingOutputs:
        """Round 4: the feature rows (training lines; threshold lines [n_train, judged_from)) and
        the judged lines; round 3's profiles (merged in line order and finished on the workers)
        and its problem lines."""
        client = self.client
        judged_futures = [self._on(f, _judged, f, judged_from, ask.suspect)  # the blocks past `judged_from`
                          for f, start, k in zip(self.matched, self.starts, self.keys, strict=True)
                          if start + k.count > judged_from]
        # the rows and the judged lines first: the driver finishes them while the profile tree's
        # top merges run
        parts: list[RawRows] = client.gather(self.raw)
        self.raw = []
        for p in parts:
            with_stats(p.train, p.train_prevs, stats, p.counted_prevs)
        threshold = [p.held_index < judged_from for p in parts]  # the threshold lines: up to the judged split
        held = [p.held[keep] for p, keep in zip(parts, threshold, strict=True)]
        for p, rows, keep in zip(parts, held, threshold, strict=True):
            with_stats(rows, p.held_prevs[keep], stats)
        x_train = _in_line_order([p.train_index for p in parts], [p.train for p in parts])
        x_val = _in_line_order([p.held_index[keep] for p, keep in zip(parts, threshold, strict=True)], held)
        parts_judged: list[JudgedLines] = client.gather(judged_futures)
        judged = [Record(raw, part.source) for part in parts_judged for raw in part.raw]
        finished: FinishedOutputs = self.outs[0].result()
        self.outs = []
        problem = [_unpack(t) for t in finished.problem]
        self.phase("features_profile")
        return TrainingOutputs(x_train, x_val, finished.profile, judged, problem, finished.whole)

    def close(self) -> None:
        """Release what the workers hold for this run."""
        for f in (*self.parsed, *self.matched, *self.assembled, *self.owners, *self.outs, *self.raw):
            f.release()
        self.parsed, self.matched, self.assembled, self.owners, self.outs, self.raw = [], [], [], [], [], []
        self.straddle = None


def _same(value: Any) -> Any:
    return value


# What the rest of a run costs a worker, per line, in microseconds (the task stream of a 2-worker
# run on 128,000 BGL lines): matching a line and cutting it by owner ~9, a block's partial profile
# ~8 per training line, an owner's feature counts and rows ~4.7 per training or threshold line.
MATCH_COST, PROFILE_COST, ROWS_COST = 9.0, 8.0, 4.7


def runs_of(blocks: Sequence[Block], workers: Sequence[str]) -> list[list[str] | None]:
    """Where each block is parsed (and so matched and profiled): consecutive runs of blocks of
    about equal bytes, one run per worker in order. A worker then holds a run of lines, so the
    partial profiles of its blocks merge where they are (only the two halves' merge crosses
    between 2 workers; blocks handed out by Dask's queue alternate between workers, and each
    merge moved a partial of ~0.1-1 MB of small objects, 0.05-0.3 s to unpickle), and a host's
    file mostly sits on one worker. None (anywhere) with one worker or none."""
    if len(workers) < 2:
        return [None] * len(blocks)
    total = sum(b.length for b in blocks) or 1
    out: list[list[str] | None] = []
    done = 0
    for b in blocks:
        out.append([workers[min(len(workers) - 1, (2 * done + b.length) * len(workers) // (2 * total))]])
        done += b.length
    return out


def owner_work(
    keys: Sequence[BlockKeys], starts: Sequence[int], homes: Sequence[str | None], workers: Sequence[str],
    n_train: int,
) -> tuple[dict[str, float], list[float]]:
    """Once round 1 is in, what `Owners.balanced` evens out: each busy entity's owner work (its
    lines up to about where the judged lines start, `ROWS_COST` each: the threshold lines are
    about the first half of the held-back part), on top of each worker's work on the blocks it
    holds (matching every line, profiling the training lines), `workers[k]` holding partition k.
    A worker holding the held-back tail's blocks (matched, not profiled) then owns more hosts."""
    total = starts[-1] + keys[-1].count if keys else 0
    rows_end = n_train + (total - n_train) // 2
    weights: dict[str, float] = {}
    base = dict.fromkeys(workers, 0.0)
    for k, start, home in zip(keys, starts, homes, strict=True):
        share = min(1.0, max(0.0, (rows_end - start) / k.count)) if k.count else 0.0
        for entity, n in k.entities.items():
            weights[entity] = weights.get(entity, 0.0) + n * share * ROWS_COST
        if home in base:
            base[home] += k.count * MATCH_COST + min(k.count, max(0, n_train - start)) * PROFILE_COST
    return weights, [base[w] for w in workers]


# Which tasks a worker runs first when several are ready (Dask's `priority`, higher first): what
# the driver waits for between rounds and the owners' chain to it (matching, pieces, owners,
# counts); then
# the blocks' profiles, their merges and the judged lines, which fill the workers' time while
# the driver works; the feature rows last (they need the driver's merged statistics): at the end
# both workers run their owner's rows side by side instead of one worker merging the top of the
# profile tree alone.
_PRIORITY: dict[Callable[..., Any], int] = {
    **dict.fromkeys((_match_block, _pieces_of, _own, _count, _counts_of, _sequences_of, _firsts_from), 2),
    **dict.fromkeys((_outputs, _joined_outputs, _same, _finished, _judged), 1),
}




def _in_line_order(index: list[np.ndarray], rows: list[np.ndarray]) -> np.ndarray:
    """The owners' rows put back in line order."""
    if not index:
        return np.zeros((0, N_FEATURES), dtype=np.float32)
    idx = np.concatenate(index)
    x = np.concatenate([r.reshape(-1, N_FEATURES) for r in rows])
    return x[np.argsort(idx, kind="stable")]


def prepare(
    paths: Sequence[str],
    parser: ParserConfig,
    miner_config: MinerConfig,
    val_fraction: float,
    client: Any,
    blocksize: int = DEFAULT_BLOCKSIZE,
) -> ClusterData:
    """Round 1 and the merge on the cluster behind `client` (see the module docstring): the
    merged miner and each block's key → template table; the parsed blocks stay on the workers."""
    started = time.monotonic()
    try:
        blocks, sample_bytes = list_blocks(paths, blocksize)
    except (OSError, ValueError) as exc:
        raise UserError(f"--input: cannot read {', '.join(paths)}: {exc}") from None
    sample = [line for line in _lines(sample_bytes)[:SAMPLE_LINES] if line.strip()]
    fmt = LineParser(parser, sample).format
    workers = sorted(client.scheduler_info().get("workers", {}))
    parts = max(1, len(workers))  # one entity partition per worker
    parsed = [client.submit(_parse_block, block, parser, sample, miner_config, pure=False, workers=home)
              for block, home in zip(blocks, runs_of(blocks, workers), strict=True)]
    facts: list[BlockFacts] = client.gather([client.submit(_facts_of, f, pure=False) for f in parsed])
    keys = [f.keys for f in facts]
    read = time.monotonic()
    total = sum(k.count for k in keys)
    n_train = total - int(total * val_fraction)
    earliest = earliest_keys(keys)
    miner = learn_templates(training_messages(earliest, n_train), miner_config)
    templates = key_templates(keys, earliest, miner)
    h = hashlib.sha256()
    for k in keys:
        h.update(k.digest)
    data = ClusterData(client, parsed, keys, earliest, fmt, miner, templates, total, n_train, h.hexdigest(), parts)
    data.histories = [f.history for f in facts]
    data.homes = {key: list(where) or None for key, where in client.who_has(parsed).items()}
    for future, k, start in zip(parsed, keys, data.starts, strict=True):  # asked first: the workers
        if start < n_train < start + k.count:  # run tasks in the order they were submitted
            data.straddle, data.straddle_at = data._on(future, _firsts_from, future, n_train - start), start
    data.match()
    data.seconds["read_parse_cut"] = round(read - started, 3)
    data._clock = read
    data.phase("merge_mine_match")
    return data
