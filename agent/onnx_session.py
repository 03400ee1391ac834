"""ONNX Runtime sessions: provider choice with CPU fallback, and threads set explicitly.

ONNX Runtime sizes its thread pool to the host's physical cores and ignores cgroup quotas, so
a sidecar would grab every core of the node; we always set the intra-op thread count (default 1)
and turn spinning off. The CUDA provider is preferred when present; whether it is actually in
use is read back from the session (onnxruntime-gpu lists CUDA as available even without a GPU).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from agent.errors import DependencyError, ModelError

log = structlog.get_logger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
_warned_no_cuda = False
# ONNX tensor types `OnnxModel.warm_up` feeds zeros of
_ZERO_TYPES: dict[str, Any] = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32,
                               "tensor(double)": np.float64, "tensor(bool)": np.bool_}


def import_onnxruntime() -> Any:
    """The onnxruntime module, or a DependencyError naming the extra to install."""
    try:
        import onnxruntime
    except ImportError:
        raise DependencyError(
            "onnxruntime is not installed: pip install 'logdetect[cpu]' (or 'logdetect[gpu]' on a CUDA host)"
        ) from None
    return onnxruntime


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run models. `device`: auto (CUDA when usable, else CPU), cpu, or cuda.
    `numpy_trees`: walk a tree ensemble's stored arrays with numpy (the same scores; False serves
    the whole ONNX graph, for benchmarks and parity tests)."""

    intra_op_threads: int = 1
    device: str = "auto"
    numpy_trees: bool = True

    @staticmethod
    def from_env(device: str = "auto") -> RuntimeOptions:
        """Options with the thread count from LOGDETECT_ORT_THREADS or ORT_INTRA_OP_NUM_THREADS."""
        threads = os.environ.get("LOGDETECT_ORT_THREADS") or os.environ.get("ORT_INTRA_OP_NUM_THREADS")
        return RuntimeOptions(intra_op_threads=max(1, int(threads)) if threads else 1, device=device)


class OnnxModel:
    """One ONNX Runtime session with the provider actually in use."""

    def __init__(self, path: Path, options: RuntimeOptions | None = None) -> None:
        global _warned_no_cuda
        ort = import_onnxruntime()
        opts = options or RuntimeOptions()
        so = ort.SessionOptions()
        so.intra_op_num_threads = opts.intra_op_threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3  # ORT's own stderr logging: errors only
        wanted = [CPU]
        if opts.device in ("auto", "cuda") and CUDA in ort.get_available_providers():
            wanted = [CUDA, CPU]
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=wanted)
        except Exception as exc:  # ORT raises its own exception types
            raise ModelError(f"cannot load ONNX model {path}: {exc}") from None
        self.provider: str = self.session.get_providers()[0]
        if opts.device == "cuda" and self.provider != CUDA and not _warned_no_cuda:
            _warned_no_cuda = True
            log.warning("cuda_unavailable", fallback=self.provider, model=str(path))
        self.path = path
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def input_shape(self, name: str) -> list[Any]:
        """The declared shape of an input (symbolic axes as names)."""
        for i in self.session.get_inputs():
            if i.name == name:
                return list(i.shape)
        raise ModelError(f"{self.path}: no input named {name!r} (has {self.input_names})")

    def check_inputs(self, expected: dict[str, int]) -> None:
        """Refuse a model whose inputs disagree with the manifest: `expected` maps name -> rank,
        or name -> -1 for 'present, any rank'."""
        for name, rank in expected.items():
            shape = self.input_shape(name)
            if rank >= 0 and len(shape) != rank:
                raise ModelError(
                    f"{self.path}: input {name!r} has rank {len(shape)}, the manifest expects {rank}"
                )

    def warm_up(self) -> bool:
        """Run the graph once on zeros, every symbolic axis 1, and drop the result: ONNX Runtime's
        first run of a session (memory plan, kernel set-up) costs 0.3–0.5 ms more than the next
        ones for each of a bundle's sequence models (BENCHMARKS.md, issue 16), which would
        otherwise land on the first line or session scored after a (re)load. The same scores come
        out afterwards (the runtime keeps no state between runs). False when an input's type is
        not a plain tensor or the graph refuses zeros: the session is then left as it was."""
        feeds: dict[str, np.ndarray] = {}
        for i in self.session.get_inputs():
            dtype = _ZERO_TYPES.get(i.type)
            if dtype is None:
                return False
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
            feeds[i.name] = np.zeros(shape, dtype=dtype)
        try:
            self.session.run(None, feeds)
        except Exception:  # ORT raises its own types; a model that needs real values stays cold
            return False
        return True

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
        """Run the graph on `feeds` and return the outputs asked for (all by default)."""
        result: list[np.ndarray] = self.session.run(outputs, feeds)
        return result
