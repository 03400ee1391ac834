"""ONNX export and the parity check every trainer runs before a model enters a bundle.

`export_torch` writes one self-contained ONNX file with the legacy exporter (opset 17, dynamic
batch axis unless told otherwise, optional metadata the serving side verifies). `check_parity`
runs the exported file through ONNX Runtime (CPU, one thread: what the agent runs) on real
inputs and refuses it when it differs from the reference by more than `PARITY_TOLERANCE`.
torch is imported inside functions only.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import ModelError
from agent.onnx_session import OnnxModel, RuntimeOptions
from trainer.torch_base import import_torch

OPSET = 17
PARITY_TOLERANCE = 1e-4


def export_torch(
    module: Any,
    example: tuple[Any, ...],
    path: Path,
    inputs: Sequence[str],
    outputs: Sequence[str],
    axes: Mapping[str, Mapping[int, str]] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Legacy exporter, opset 17, one file; `axes` default to a dynamic batch axis 0 on every
    input and output; `metadata` goes into the file's metadata_props."""
    torch = import_torch()
    dynamic = {k: dict(v) for k, v in axes.items()} if axes is not None else {
        n: {0: "batch"} for n in [*inputs, *outputs]
    }
    module.eval()
    with torch.no_grad():
        torch.onnx.export(
            module, example, str(path), input_names=list(inputs), output_names=list(outputs),
            dynamic_axes=dynamic, opset_version=OPSET, dynamo=False,
        )
    if metadata:
        import onnx

        proto = onnx.load(str(path))
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(path))


def onnx_outputs(model: OnnxModel | Path, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> list[np.ndarray]:
    """The ONNX Runtime outputs of an exported file (CPU, one thread, as served)."""
    ort_model = model if isinstance(model, OnnxModel) else OnnxModel(model, RuntimeOptions(intra_op_threads=1,
                                                                                            device="cpu"))
    return ort_model.run(dict(feeds), list(outputs))


def torch_outputs(module: Any, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """A torch module's outputs on numpy feeds (positional, in the feeds' order)."""
    torch = import_torch()
    with torch.no_grad():
        result = module(*[torch.as_tensor(v) for v in feeds.values()])
    items = result if isinstance(result, tuple | list) else (result,)
    return [x.numpy() for x in items]


def max_abs_diff(
    expected: Sequence[np.ndarray], got: Sequence[np.ndarray], where: Sequence[np.ndarray | None] | None = None
) -> float:
    """The largest |expected − got| over aligned arrays (`where[i]` selects the entries compared)."""
    worst = 0.0
    for i, (a, b) in enumerate(zip(expected, got, strict=True)):
        d = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
        mask = where[i] if where is not None else None
        if mask is not None:
            d = d[mask]
        if d.size:
            worst = max(worst, float(d.max()))
    return worst


def require_parity(diff: float, what: str, tolerance: float = PARITY_TOLERANCE) -> float:
    """`diff` when within `tolerance` (NaN is not), ModelError naming `what` otherwise."""
    if not diff <= tolerance:
        raise ModelError(f"{what}: ONNX Runtime differs from the trained model by {diff:.2e} (> {tolerance})")
    return diff


def check_parity(module: Any, path: Path, feeds: Mapping[str, np.ndarray], output: str) -> float:
    """Max |torch − ONNX Runtime| of one output on real inputs; ModelError above PARITY_TOLERANCE."""
    expected = torch_outputs(module, feeds)[:1]
    return require_parity(max_abs_diff(expected, onnx_outputs(path, feeds, [output])), path.name)


def sample_rows(n: int, k: int, seed: int) -> np.ndarray:
    """Up to `k` distinct row indices of `n`, sorted (the rows a parity check runs on)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(n, k), replace=False))


def export_windows(
    module: Any, reference: Any, tokens: np.ndarray, levels: np.ndarray, path: Path, names: Sequence[str],
    outputs: Sequence[str], seed: int,
) -> float:
    """Export a window model (windows of tokens and of levels in, `names` their inputs) and check
    its first output against `reference` on up to 512 of the windows and on a batch of one; the
    largest difference."""
    torch = import_torch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the LSTM batch-size note: parity below checks it
        export_torch(module, (torch.as_tensor(tokens[:2]), torch.as_tensor(levels[:2])), path, names, outputs)
    rows = sample_rows(len(tokens), 512, seed)
    tok, lvl = names
    return max(
        check_parity(reference, path, {tok: tokens[rows], lvl: levels[rows]}, outputs[0]),
        check_parity(reference, path, {tok: tokens[rows[:1]], lvl: levels[rows[:1]]}, outputs[0]),
    )
