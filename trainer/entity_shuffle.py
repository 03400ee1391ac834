"""Per-entity sequences built by a shuffle keyed by entity (the Dask data half, trainer/distributed.py).

    each block's worker, right after parsing (before any template is known): its lines cut by
        owner = crc32(entity) % parts into columns (line index in the block, masked-key code,
        level, entity code) — a `KeyPiece` per owner
    driver: one template id per masked key (the merged miner) ─► each block's key → template table
    each owner (one task per partition): the key pieces of all blocks for its entities, their key
        codes turned into template ids by the block's table and their line indices made global
        (`KeyPiece.matched` ─► `Piece`) ─► sorted by (entity, line index) ─► `EntitySequences`
    driver: the partitions' arrays concatenated (`EntitySequences.concat`); `select` then gives
        the sequences `trainer.train.sequences_by_entity` gives in one process: each entity's
        tokens and levels in line order, entities in the order of their first selected line

The owner of an entity does not depend on the process (crc32, not Python's salted `hash`), and
the result does not depend on the number of partitions: every line is in exactly one piece,
and line indices are global (the block's first line's index in the whole input).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.types import ParsedLine


def owner(entity: str, parts: int) -> int:
    """The partition that builds `entity`'s sequence: the same in every process and run."""
    return zlib.crc32(entity.encode("utf-8", "surrogatepass")) % parts


@dataclass(frozen=True)
class Piece:
    """One block's lines of one partition's entities, as columns (codes index `entities`)."""

    entities: tuple[str, ...]
    codes: np.ndarray  # int32, per line: index into `entities`
    lines: np.ndarray  # int64, per line: index in the whole input
    template_ids: np.ndarray  # int64, per line: -1 when no template matched
    levels: np.ndarray  # int8, per line


@dataclass(frozen=True)
class KeyPiece:
    """One block's lines of one partition's entities before matching: as `Piece`, with each
    line's masked-key code (an index into the block's keys) in place of its template id and its
    index in the block in place of its index in the whole input."""

    entities: tuple[str, ...]
    codes: np.ndarray  # int32, per line: index into `entities`
    lines: np.ndarray  # int32, per line: index in the block
    keys: np.ndarray  # int32, per line: the block's masked-key code
    levels: np.ndarray  # int8, per line

    def matched(self, templates: np.ndarray, start: int) -> Piece:
        """This piece with template ids (`templates[key code]`, the block's key → template table)
        and global line indices (`start`: the block's first line's index in the whole input)."""
        ids = templates[self.keys] if len(self.keys) else np.empty(0, dtype=np.int64)
        return Piece(self.entities, self.codes, self.lines.astype(np.int64) + start, ids, self.levels)


def cut_block(
    entities: tuple[str, ...], codes: np.ndarray, levels: np.ndarray, keys: np.ndarray, parts: int,
) -> tuple[KeyPiece, ...]:
    """A parsed block's lines (as `entity_columns`, and each line's masked-key code) cut into one
    `KeyPiece` per partition."""
    owners = np.array([owner(e, parts) for e in entities], dtype=np.int32)
    line_owner = owners[codes] if len(codes) else codes
    lines = np.arange(len(codes), dtype=np.int32)
    if parts == 1:
        return (KeyPiece(entities, codes, lines, keys, levels),)
    out = []
    for k in range(parts):
        mask = line_owner == k
        out.append(KeyPiece(entities, codes[mask], lines[mask], keys[mask], levels[mask]))
    return tuple(out)


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
        names: dict[str, int] = {}
        codes = []
        for piece in pieces:
            remap = np.array([names.setdefault(e, len(names)) for e in piece.entities], dtype=np.int64)
            codes.append(remap[piece.codes] if len(piece.codes) else np.empty(0, dtype=np.int64))
        code = np.concatenate(codes) if codes else np.empty(0, dtype=np.int64)
        lines = np.concatenate([p.lines for p in pieces]) if pieces else np.empty(0, dtype=np.int64)
        order = np.lexsort((lines, code))
        code = code[order]
        counts = np.bincount(code, minlength=len(names))
        present = counts > 0  # an entity of a block may own no line of this partition
        entities = tuple(e for e, keep in zip(names, present, strict=True) if keep)
        offsets = np.concatenate([[0], np.cumsum(counts[present])]).astype(np.int64)
        tids = np.concatenate([p.template_ids for p in pieces]) if pieces else np.empty(0, dtype=np.int64)
        levels = np.concatenate([p.levels for p in pieces]) if pieces else np.empty(0, dtype=np.int8)
        return cls(entities, offsets, lines[order], tids[order], levels[order])

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
