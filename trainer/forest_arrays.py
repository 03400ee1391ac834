"""The Isolation Forest's trees as flat arrays, stored beside its ONNX file (the bundle's format).

skl2onnx exports a forest as one `TreeEnsembleRegressor` per tree (its leaf weight is the leaf's
node id), per-tree arithmetic on that leaf (depth + average path length of the samples left
there), a `Sum` over the trees and a short tail: `scores = −2^(−sum / c) + 0.5`. ONNX Runtime
pays about a millisecond per call for those ~2,000 nodes whatever the row count, so the agent
walks the trees with numpy instead (`agent/detectors/forest.py`).

This module reads the graph (it needs the `onnx` package, a training dependency): every tree's
split nodes, and each leaf's *term* of the Sum. The terms are computed by ONNX Runtime itself on
the graph cut between the trees' outputs and the Sum's inputs, so they are the very float32
values the graph adds. The tail after the Sum is cut out as its own five-node ONNX file.
`write_forest` refuses (returns None, the agent keeps the whole graph) any graph that is not
this shape, and any result that is not bit-identical to ONNX Runtime on the probe rows, which it
stores so the agent can check again at load.
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from agent.detectors.forest import ForestArrays
from agent.onnx_session import OnnxModel, RuntimeOptions

log = structlog.get_logger(__name__)

TREE_OP = "TreeEnsembleRegressor"


@dataclass(frozen=True)
class ForestFiles:
    """The two files written beside the forest's ONNX file, and the tail's input name."""

    trees: str
    tail: str
    tail_input: str


def write_forest(onnx_path: Path, trees: Path, tail: Path, probe: np.ndarray,
                 output: str = "scores") -> ForestFiles | None:
    """Write the trees of `onnx_path` to `trees` (.npz) and its tail to `tail` (.onnx); None
    (with a log line, nothing written) when the graph is not the expected shape or the result is
    not bit-identical to ONNX Runtime on `probe` (real feature rows)."""
    import onnx

    model = onnx.load(str(onnx_path))
    try:
        arrays, cut, sum_out = _read_graph(model)
        tail_model = _between(model, [sum_out], [output])
    except ValueError as exc:
        log.warning("forest_arrays_skipped", reason=str(exc))
        return None
    arrays = arrays.with_contributions(_leaf_contributions(model, cut, arrays))
    x = np.ascontiguousarray(probe, dtype=np.float32)
    whole = OnnxModel(onnx_path, RuntimeOptions(intra_op_threads=1, device="cpu"))
    expected = whole.run({whole.input_names[0]: x}, [output])[0].reshape(-1)
    with tempfile.TemporaryDirectory() as tmp:
        tail_tmp = Path(tmp) / tail.name
        onnx.save(tail_model, str(tail_tmp))
        ort_tail = OnnxModel(tail_tmp, RuntimeOptions(intra_op_threads=1, device="cpu"))
        got = ort_tail.run({sum_out: arrays.sums(x)}, [output])[0].reshape(-1)
        if not np.array_equal(got, expected):
            log.warning("forest_arrays_skipped", reason="scores differ from ONNX Runtime's whole graph",
                        max_diff=float(np.max(np.abs(got - expected))))
            return None
        tail.write_bytes(tail_tmp.read_bytes())
    arrays.save(trees, x, expected)
    return ForestFiles(trees.name, tail.name, sum_out)


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _read_graph(model: Any) -> tuple[ForestArrays, list[tuple[str, str]], str]:
    """The trees (terms still zero), per tree in Sum order (tree output, Sum input), and the Sum's output."""
    import onnx

    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = onnx.numpy_helper.to_array(_attrs(n)["value"])
    sums = [n for n in graph.node if n.op_type == "Sum"]
    if len(sums) != 1:
        raise ValueError(f"expected one Sum over the trees, found {len(sums)}")
    x_name = graph.input[0].name
    n_features = int(graph.input[0].type.tensor_type.shape.dim[1].dim_value)
    feature: list[np.ndarray] = []
    threshold: list[np.ndarray] = []
    left: list[np.ndarray] = []
    right: list[np.ndarray] = []
    leaf_weight: list[np.ndarray] = []
    roots: list[int] = []
    starts: list[int] = []
    cut: list[tuple[str, str]] = []
    offset = 0
    for sum_input in sums[0].input:
        tree = _tree_above(producer, sum_input)
        if tree is None:
            raise ValueError(f"Sum input {sum_input!r} does not come from exactly one {TREE_OP}")
        columns = _gathered_columns(producer, consts, tree.input[0], x_name, n_features)
        f, t, lo, hi, w, root = _tree_arrays(_attrs(tree), columns, offset)
        feature.append(f)
        threshold.append(t)
        left.append(lo)
        right.append(hi)
        leaf_weight.append(w)
        roots.append(root)
        cut.append((tree.output[0], sum_input))
        starts.append(offset)
        offset += len(f)
    arrays = ForestArrays(
        feature=np.concatenate(feature), threshold=np.concatenate(threshold), left=np.concatenate(left),
        right=np.concatenate(right), leaf_weight=np.concatenate(leaf_weight),
        contribution=np.zeros(offset, dtype=np.float32), roots=np.asarray(roots, dtype=np.int32),
        n_features=n_features, starts=np.asarray(starts, dtype=np.int32),
    )
    return arrays, cut, str(sums[0].output[0])


def _tree_above(producer: dict[str, Any], name: str) -> Any | None:
    """The one tree-ensemble node a Sum input depends on (None when zero or several)."""
    found: dict[str, Any] = {}
    stack, seen = [name], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        node = producer.get(current)
        if node is None:
            continue
        if node.op_type == TREE_OP:
            found[node.output[0]] = node
            continue
        stack.extend(node.input)
    return next(iter(found.values())) if len(found) == 1 else None


def _gathered_columns(
    producer: dict[str, Any], consts: dict[str, np.ndarray], name: str, x_name: str, n_features: int
) -> np.ndarray:
    """The input columns a tree reads: a Gather of X along axis 1, or X itself."""
    if name == x_name:
        return np.arange(n_features, dtype=np.int64)
    node = producer.get(name)
    if node is None or node.op_type != "Gather" or node.input[0] != x_name or node.input[1] not in consts:
        raise ValueError(f"a tree reads {name!r}, not a constant Gather of the input")
    if int(_attrs(node).get("axis", 0)) != 1:
        raise ValueError("a tree's Gather is not along the feature axis")
    return np.asarray(consts[node.input[1]], dtype=np.int64).reshape(-1)


def _tree_arrays(
    attrs: dict[str, Any], columns: np.ndarray, offset: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """One TreeEnsembleRegressor holding one tree, as global-index arrays (leaves point at themselves)."""
    tree_ids = np.asarray(attrs["nodes_treeids"])
    if len(set(tree_ids.tolist())) != 1:
        raise ValueError("a TreeEnsembleRegressor holds more than one tree")
    if attrs.get("post_transform", b"NONE") not in (b"NONE", "NONE") or int(attrs.get("n_targets", 1)) != 1:
        raise ValueError("a tree has a post-transform or several targets")
    if any(attrs.get("nodes_missing_value_tracks_true", [])):
        raise ValueError("a tree sends missing values to the true branch")
    ids = np.asarray(attrs["nodes_nodeids"], dtype=np.int64)
    index = {int(n): offset + i for i, n in enumerate(ids)}
    modes = [m.decode() if isinstance(m, bytes) else str(m) for m in attrs["nodes_modes"]]
    if set(modes) - {"BRANCH_LEQ", "LEAF"}:
        raise ValueError(f"tree modes {sorted(set(modes))} other than BRANCH_LEQ and LEAF")
    n = len(ids)
    feature = np.full(n, -1, dtype=np.int32)
    threshold = np.zeros(n, dtype=np.float32)
    left = np.arange(offset, offset + n, dtype=np.int32)
    right = left.copy()
    values = np.asarray(attrs["nodes_values"], dtype=np.float32)
    feats = np.asarray(attrs["nodes_featureids"], dtype=np.int64)
    true_ids = np.asarray(attrs["nodes_truenodeids"], dtype=np.int64)
    false_ids = np.asarray(attrs["nodes_falsenodeids"], dtype=np.int64)
    for i, mode in enumerate(modes):
        if mode == "BRANCH_LEQ":
            feature[i] = int(columns[feats[i]])
            threshold[i] = values[i]
            left[i] = index[int(true_ids[i])]
            right[i] = index[int(false_ids[i])]
    weight = np.full(n, np.nan, dtype=np.float32)
    target_nodes = np.asarray(attrs["target_nodeids"], dtype=np.int64)
    target_weights = np.asarray(attrs["target_weights"], dtype=np.float32)
    for node_id, w in zip(target_nodes, target_weights, strict=True):
        weight[index[int(node_id)] - offset] = w
    leaves = feature < 0
    if np.isnan(weight[leaves]).any():
        raise ValueError("a leaf has no target weight")
    children = set(left[~leaves].tolist()) | set(right[~leaves].tolist())
    roots = [offset + i for i in range(n) if offset + i not in children]
    if len(roots) != 1:
        raise ValueError("a tree has no single root")
    return feature, threshold, left, right, weight, roots[0]


def _leaf_contributions(model: Any, cut: list[tuple[str, str]], arrays: ForestArrays) -> np.ndarray:
    """Each leaf's term of the Sum, computed by ONNX Runtime on the graph between the trees'
    outputs and the Sum's inputs (fed every leaf weight of each tree at once)."""
    import onnx

    sub = _between(model, [c[0] for c in cut], [c[1] for c in cut])
    bounds = [*arrays.tree_bounds(), len(arrays.feature)]
    rows = max(b - a for a, b in itertools.pairwise(bounds))
    feeds = {}
    for k, (tree_out, _) in enumerate(cut):
        w = arrays.leaf_weight[bounds[k] : bounds[k + 1]]
        w = np.where(np.isnan(w), w[~np.isnan(w)][0], w)  # split nodes: any leaf's weight (ignored)
        padded = np.resize(w, rows).astype(np.float32).reshape(rows, 1)
        feeds[tree_out] = padded
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tail.onnx"
        onnx.save(sub, str(path))
        ort = OnnxModel(path, RuntimeOptions(intra_op_threads=1, device="cpu"))
        outputs = ort.run(feeds, [c[1] for c in cut])
    contribution = np.zeros(len(arrays.feature), dtype=np.float32)
    for k, out in enumerate(outputs):
        a, b = bounds[k], bounds[k + 1]
        contribution[a:b] = np.asarray(out, dtype=np.float32).reshape(-1)[: b - a]
    contribution[arrays.feature >= 0] = 0.0  # split nodes are never reached as leaves
    return contribution


def _between(model: Any, inputs: list[str], outputs: list[str]) -> Any:
    """The part of the graph that computes `outputs` from `inputs` (float32 tensors, any shape)."""
    import onnx
    from onnx import TensorProto, helper

    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    initializers = {i.name: i for i in graph.initializer}
    stop = set(inputs)
    keep: dict[int, Any] = {}
    used: set[str] = set()
    stack = list(outputs)
    while stack:
        name = stack.pop()
        if name in stop or name in used:
            continue
        used.add(name)
        node = producer.get(name)
        if node is None:
            continue
        if id(node) not in keep:
            keep[id(node)] = node
            stack.extend(node.input)
    nodes = [n for n in graph.node if id(n) in keep]
    produced = {o for n in nodes for o in n.output} | stop | set(initializers)
    loose = sorted({i for n in nodes for i in n.input if i and i not in produced})
    if loose:
        raise ValueError(f"the graph reaches {loose} besides {inputs[:3]}...: not a forest with one Sum")
    sub = helper.make_graph(
        nodes, "leaf_terms",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["rows", 1]) for n in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["rows", 1]) for n in outputs],
        [initializers[n] for n in sorted(used) if n in initializers],
    )
    out = helper.make_model(sub, opset_imports=list(model.opset_import))
    out.ir_version = model.ir_version
    onnx.checker.check_model(out)
    return out
