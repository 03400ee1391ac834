"""The Isolation Forest's trees walked by numpy: the same float32 scores as its ONNX graph.

The bundle's format stays ONNX. Beside it the trainer stores the trees as flat arrays
(`trainer/forest_arrays.py`): per node its feature, threshold and children (a leaf points at
itself), per leaf its term of the graph's Sum (computed by ONNX Runtime from the graph), the
Sum's order, and probe rows with ONNX Runtime's scores; and the graph's tail after the Sum
(`scores = −2^(−sum / c) + 0.5`: five nodes) as its own small ONNX file. A batch is scored by
walking every tree for every row at once (`depth` vectorised steps), looking the leaves' terms
up and adding them in the Sum's order in float32 (`sums`), then one call of the five-node tail
(ONNX Runtime's Pow differs from numpy's in the last bit on about 1 row in 3,000, so the tail
stays in ONNX Runtime). The result is bit-identical to the whole graph; the agent checks that
on the probe rows at load before it uses this path.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

FORMAT = 1


@dataclass(frozen=True)
class ForestArrays:
    """Every tree of the forest in flat global-index arrays (see the module docstring)."""

    feature: np.ndarray  # int32 per node; −1 for a leaf
    threshold: np.ndarray  # float32 per node: go left when x <= threshold
    left: np.ndarray  # int32 per node (a leaf: itself)
    right: np.ndarray  # int32 per node (a leaf: itself)
    leaf_weight: np.ndarray  # float32 per node: the tree op's output at a leaf (NaN for splits)
    contribution: np.ndarray  # float32 per node: a leaf's term of the Sum
    roots: np.ndarray  # int32 per tree, in the Sum's order
    n_features: int
    starts: np.ndarray | None = None  # int32: first node of each tree (trees are contiguous)
    depth: int = field(init=False, default=0)  # the longest root-to-leaf path
    _column: np.ndarray = field(init=False, repr=False)  # int64 per node: the column read (a leaf: 0)
    _children: np.ndarray = field(init=False, repr=False)  # int64 [false branches | true branches]

    def __post_init__(self) -> None:
        object.__setattr__(self, "depth", _depth(self.feature, self.left, self.right, self.roots))
        object.__setattr__(self, "_column", np.maximum(self.feature, 0).astype(np.int64))
        object.__setattr__(self, "_children", np.concatenate([self.right, self.left]).astype(np.int64))

    def tree_bounds(self) -> list[int]:
        """The first node index of each tree, in order."""
        if self.starts is not None:
            return [int(s) for s in self.starts]
        return sorted(int(r) for r in self.roots)

    def with_contributions(self, contribution: np.ndarray) -> ForestArrays:
        """The same trees with the leaves' terms filled in."""
        return replace(self, contribution=np.asarray(contribution, dtype=np.float32))

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """(trees, rows) the leaf every row reaches in every tree."""
        flat_x = np.ascontiguousarray(x, dtype=np.float32).ravel()
        row_base = (np.arange(len(x), dtype=np.int64) * self.n_features)[None, :]
        column, children, n = self._column, self._children, len(self.feature)
        node = np.repeat(self.roots.astype(np.int64)[:, None], len(x), axis=1)
        for _ in range(self.depth):
            go_left = flat_x[row_base + column[node]] <= self.threshold[node]
            node = children[node + n * go_left]
        return node

    def sums(self, x: np.ndarray) -> np.ndarray:
        """(rows, 1) float32: the graph's Sum over the trees for rows `x` (rows, n_features)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got shape {x.shape}")
        if not len(x):
            return np.zeros((0, 1), dtype=np.float32)
        terms = self.contribution[self.leaves(x)]
        # float32, one tree after the other in the Sum's order, as ONNX Runtime adds them
        total: np.ndarray = np.cumsum(terms, axis=0, dtype=np.float32)[-1]
        return total.reshape(-1, 1)

    def save(self, path: Path, probe: np.ndarray, probe_scores: np.ndarray) -> None:
        """Write the arrays and the probe rows with ONNX Runtime's scores (.npz, no pickles)."""
        with path.open("wb") as fh:
            np.savez(
                fh, format=np.int32(FORMAT), feature=self.feature, threshold=self.threshold, left=self.left,
                right=self.right, leaf_weight=self.leaf_weight, contribution=self.contribution, roots=self.roots,
                starts=np.asarray(self.tree_bounds(), dtype=np.int32), n_features=np.int32(self.n_features),
                probe=np.asarray(probe, dtype=np.float32), probe_scores=np.asarray(probe_scores, dtype=np.float32),
            )


@dataclass(frozen=True)
class StoredForest:
    """A forest read from the bundle, with the probe rows it was checked on."""

    arrays: ForestArrays
    probe: np.ndarray
    probe_scores: np.ndarray

    def matches(self, got: np.ndarray, reference: np.ndarray) -> bool:
        """True when `got` (this path's scores of the probe rows) is exactly `reference` (the whole
        graph's, run now) and the scores stored at training."""
        got = np.asarray(got, dtype=np.float32).reshape(-1)
        reference = np.asarray(reference, dtype=np.float32).reshape(-1)
        return bool(np.array_equal(got, reference) and np.array_equal(got, self.probe_scores))


def load_forest(path: Path) -> StoredForest:
    """Read a forest written by `ForestArrays.save` (ValueError when it is not one)."""
    with np.load(path, allow_pickle=False) as z:
        if int(z["format"]) != FORMAT:
            raise ValueError(f"{path.name}: forest format {int(z['format'])}, this agent reads {FORMAT}")
        arrays = ForestArrays(
            feature=z["feature"].astype(np.int32), threshold=z["threshold"].astype(np.float32),
            left=z["left"].astype(np.int32), right=z["right"].astype(np.int32),
            leaf_weight=z["leaf_weight"].astype(np.float32), contribution=z["contribution"].astype(np.float32),
            roots=z["roots"].astype(np.int32), n_features=int(z["n_features"]), starts=z["starts"].astype(np.int32),
        )
        return StoredForest(arrays, z["probe"].astype(np.float32), z["probe_scores"].astype(np.float32))


def _depth(feature: np.ndarray, left: np.ndarray, right: np.ndarray, roots: np.ndarray) -> int:
    """The longest root-to-leaf path (steps a row needs to reach its leaf in every tree)."""
    depth = 0
    frontier = np.asarray(roots, dtype=np.int64)
    while len(frontier):
        splits = frontier[feature[frontier] >= 0]
        if not len(splits):
            break
        depth += 1
        frontier = np.concatenate([left[splits], right[splits]])
    return depth
