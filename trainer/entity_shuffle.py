"""Per-entity sequences and feature rows built by a shuffle keyed by entity (the Dask data half,
trainer/distributed.py).

    each block's worker, once the driver's key → template tables are known: its lines as columns
        (`Piece`: entity, global line index, template id, level, and what the feature extractor
        reads: time, message length, parameter count) cut by entity owner (`Owners`: the busiest
        entities spread evenly by their line counts, the rest by a hash of the entity)
    each owner (one task per partition): its pieces of every block, sorted by (entity, line
        index) ─► `OwnedLines` (kept on the owner: its `EntitySequences` and feature columns);
        `feature_inputs` gives the extractor's input for its lines, in line order
    driver: the partitions' sequences concatenated (`EntitySequences.concat`); `select` then gives
        the sequences `trainer.train.sequences_by_entity` gives in one process: each entity's
        tokens and levels in line order, entities in the order of their first selected line

The owner of an entity does not depend on the process (a keyed hash, not Python's salted `hash`),
and the result does not depend on the number of partitions or on who owns what: every line is in exactly one piece,
and line indices are global (the block's first line's index in the whole input).
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from agent.features import FeatureInput
from agent.types import ParsedLine


def owner(entity: str, parts: int) -> int:
    """The partition that builds `entity`'s sequence when no `Owners` placed it: the same in
    every process and run (a keyed hash, not Python's salted `hash`; crc32's low bits are the
    same for names that differ in one digit, such as host-00 … host-07)."""
    digest = hashlib.blake2b(entity.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % parts


PLACED = 4096  # the busiest entities are placed by their line counts; the others hashed


@dataclass(frozen=True)
class Owners:
    """Which partition owns each entity: the `PLACED` busiest entities spread by their line counts
    (the busiest first, each to the partition with the fewest lines so far: a fleet of a few
    hosts, one entity each, gives the owners equal work), every other entity by `owner`. The
    result of a run does not depend on it (see the module docstring), only how evenly the
    owners work."""

    parts: int
    placed: dict[str, int]

    @classmethod
    def balanced(cls, counts: Mapping[str, float], parts: int, base: Sequence[float] = ()) -> Owners:
        """Owners for entities with these line counts (approximate counts do: they only balance).
        `base`: the work each partition's worker has besides its entities, in the same unit (its
        blocks' work in `trainer/distributed.py`): the entities even out the total."""
        busiest = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:PLACED]
        load = [float(b) for b in base] if len(base) == parts else [0.0] * parts
        for entity, n in counts.items():
            if len(counts) > PLACED:  # the hashed ones' share, so the placed ones even it out
                load[owner(entity, parts)] += n
        placed: dict[str, int] = {}
        for entity, n in busiest:
            if len(counts) > PLACED:
                load[owner(entity, parts)] -= n
            k = min(range(parts), key=lambda j: (load[j], j))
            placed[entity] = k
            load[k] += n
        return cls(parts, placed)

    def of(self, entity: str) -> int:
        """The partition that owns `entity`."""
        k = self.placed.get(entity)
        return owner(entity, self.parts) if k is None else k

    def loads(self, counts: Mapping[str, float]) -> list[float]:
        """Each partition's share of these line counts."""
        out = [0.0] * self.parts
        for entity, n in counts.items():
            out[self.of(entity)] += n
        return out


@dataclass(frozen=True)
class Piece:
    """Lines of one block as columns (codes index `entities`): a whole block's lines on its
    worker, or (`cut`) the ones of one partition's entities, which go to that partition's owner.
    Besides what the sequences need, what the feature extractor reads of a line."""

    entities: tuple[str, ...]
    codes: np.ndarray  # int32, per line: index into `entities`
    lines: np.ndarray  # int64, per line: index in the whole input
    template_ids: np.ndarray  # int64, per line: -1 when no template matched
    levels: np.ndarray  # int8, per line
    times: np.ndarray  # float64, per line: its timestamp, else 0.0 (`TemplatedLine.time`)
    lengths: np.ndarray  # int32, per line: message length in characters
    params: np.ndarray  # int32, per line: parameter count of its match
    own_stream: np.ndarray  # bool, per line: its entity is its source (the whole stream)

    def cut(self, owners: Owners) -> tuple[Piece, ...]:
        """This block's lines cut into one piece per partition."""
        if owners.parts == 1:
            return (self,)
        of = np.array([owners.of(e) for e in self.entities], dtype=np.int32)
        line_owner = of[self.codes] if len(self.codes) else self.codes
        return tuple(self._select(line_owner == k) for k in range(owners.parts))

    def _select(self, mask: np.ndarray) -> Piece:
        return Piece(self.entities, self.codes[mask], self.lines[mask], self.template_ids[mask], self.levels[mask],
                     self.times[mask], self.lengths[mask], self.params[mask], self.own_stream[mask])


def entity_columns(parsed: Sequence[ParsedLine]) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """A block's entities (first appearance order), each line's entity code and level."""
    codes = np.empty(len(parsed), dtype=np.int32)
    levels = np.empty(len(parsed), dtype=np.int8)
    names: dict[str, int] = {}
    for i, p in enumerate(parsed):
        code = names.get(p.entity)
        if code is None:
            code = names[p.entity] = len(names)
        codes[i] = code
        levels[i] = int(p.level)
    return tuple(names), codes, levels


def _grouped(pieces: Sequence[Piece]) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """The pieces' lines grouped by entity, in line order: the entities (in order of their
    first piece), the offsets of each one's run, and the order of the concatenated lines."""
    names: dict[str, int] = {}
    codes = []
    for piece in pieces:
        remap = np.array([names.setdefault(e, len(names)) for e in piece.entities], dtype=np.int64)
        codes.append(remap[piece.codes] if len(piece.codes) else np.empty(0, dtype=np.int64))
    code = np.concatenate(codes) if codes else np.empty(0, dtype=np.int64)
    lines = _joined([p.lines for p in pieces], np.int64)
    order = np.lexsort((lines, code))
    counts = np.bincount(code[order], minlength=len(names))
    present = counts > 0  # an entity of a block may own no line of this partition
    entities = tuple(e for e, keep in zip(names, present, strict=True) if keep)
    offsets = np.concatenate([[0], np.cumsum(counts[present])]).astype(np.int64)
    return entities, offsets, order


def _joined(arrays: Sequence[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(arrays) if len(arrays) else np.empty(0, dtype=dtype)


@dataclass(frozen=True)
class EntitySequences:
    """Every line's template id and level grouped by entity: entity j's lines are
    `[offsets[j], offsets[j + 1])` of the arrays, in line order."""

    entities: tuple[str, ...]
    offsets: np.ndarray  # int64, len(entities) + 1
    lines: np.ndarray  # int64
    template_ids: np.ndarray  # int64
    levels: np.ndarray  # int8

    @classmethod
    def assemble(cls, pieces: Sequence[Piece]) -> EntitySequences:
        """An owner's partition: the pieces of every block, grouped by entity, in line order."""
        return OwnedLines.assemble(pieces).sequences

    @classmethod
    def concat(cls, parts: Sequence[EntitySequences]) -> EntitySequences:
        """The partitions side by side (what the driver does: arrays concatenated)."""
        entities = tuple(e for p in parts for e in p.entities)
        shifts = np.cumsum([0] + [len(p.lines) for p in parts])
        offsets = np.concatenate([[0]] + [p.offsets[1:] + s for p, s in zip(parts, shifts, strict=False)])
        return cls(entities, offsets.astype(np.int64),
                   np.concatenate([p.lines for p in parts]) if parts else np.empty(0, dtype=np.int64),
                   np.concatenate([p.template_ids for p in parts]) if parts else np.empty(0, dtype=np.int64),
                   np.concatenate([p.levels for p in parts]) if parts else np.empty(0, dtype=np.int8))

    def __len__(self) -> int:
        return len(self.lines)

    def select(
        self, lo: int, hi: int, exclude: frozenset[int], vocab: dict[int, int]
    ) -> tuple[list[list[int]], list[list[int]]]:
        """Each entity's tokens and levels over its lines with index in [lo, hi) whose template is
        not in `exclude` (token = vocab[template id], 0 when absent), entities in the order of
        their first such line: what `sequences_by_entity` gives for those lines in one process."""
        entity = np.repeat(np.arange(len(self.entities), dtype=np.int64), np.diff(self.offsets))
        mask = (self.lines >= lo) & (self.lines < hi)
        if exclude:
            mask &= ~np.isin(self.template_ids, np.fromiter(exclude, dtype=np.int64, count=len(exclude)))
        entity, lines, tids, levels = entity[mask], self.lines[mask], self.template_ids[mask], self.levels[mask]
        if not len(lines):
            return [], []
        keys = np.array(sorted(vocab), dtype=np.int64)
        values = np.array([vocab[k] for k in sorted(vocab)], dtype=np.int64)
        tokens = np.zeros(len(tids), dtype=np.int64)
        if len(keys):
            pos = np.minimum(np.searchsorted(keys, tids), len(keys) - 1)
            found = keys[pos] == tids
            tokens[found] = values[pos[found]]
        _, first = np.unique(entity, return_index=True)  # `entity` ascends: runs of one entity
        order = np.argsort(lines[first], kind="stable")
        token_runs = np.split(tokens, first[1:])
        level_runs = np.split(levels.astype(np.int64), first[1:])
        return [token_runs[j].tolist() for j in order], [level_runs[j].tolist() for j in order]


@dataclass(frozen=True)
class OwnedLines:
    """An owner's partition with what the feature extractor reads of each line, in the
    sequences' order (by entity, then line)."""

    sequences: EntitySequences
    times: np.ndarray  # float64
    lengths: np.ndarray  # int32
    params: np.ndarray  # int32
    own_stream: np.ndarray  # bool

    @classmethod
    def assemble(cls, pieces: Sequence[Piece]) -> OwnedLines:
        """The pieces of every block, grouped by entity, in line order."""
        entities, offsets, order = _grouped(pieces)

        def column(name: str, dtype: type) -> np.ndarray:
            picked: np.ndarray = _joined([getattr(p, name) for p in pieces], dtype)[order]
            return picked

        sequences = EntitySequences(entities, offsets, column("lines", np.int64), column("template_ids", np.int64),
                                    column("levels", np.int8))
        return cls(sequences, column("times", np.float64), column("lengths", np.int32), column("params", np.int32),
                   column("own_stream", np.bool_))

    def feature_inputs(
        self, lo: int, hi: int, exclude: frozenset[int], vocab: dict[int, int],
    ) -> tuple[np.ndarray, list[FeatureInput]]:
        """The lines with index in [lo, hi) whose template is not in `exclude`, in line order: their
        indices and their `FeatureInput`s (token = vocab[template id], 0 when absent), what
        `feature_input` gives for the same lines in one process."""
        seq = self.sequences
        entity = np.repeat(np.arange(len(seq.entities), dtype=np.int64), np.diff(seq.offsets))
        mask = (seq.lines >= lo) & (seq.lines < hi)
        if exclude:
            mask &= ~np.isin(seq.template_ids, np.fromiter(exclude, dtype=np.int64, count=len(exclude)))
        idx = np.flatnonzero(mask)
        idx = idx[np.argsort(seq.lines[idx], kind="stable")]
        names = seq.entities
        out: list[FeatureInput] = []
        columns = zip(entity[idx].tolist(), self.own_stream[idx].tolist(), self.times[idx].tolist(),
                      seq.template_ids[idx].tolist(), seq.levels[idx].tolist(), self.lengths[idx].tolist(),
                      self.params[idx].tolist(), strict=True)
        for e, own, now, tid, level, length, n_params in columns:
            ent = names[e]
            token = vocab.get(tid, 0)
            out.append((ent, ent if own else "", now, token, level, length, n_params, token == 0, tid))
        return seq.lines[idx], out
