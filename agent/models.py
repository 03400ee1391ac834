"""THE table of models: one row per model, read by the trainer, `eval` and the agent alike.

A row names the model, what one of its scores judges (`Scope`), how it votes in the ensemble
(`DetectorKind`), what its trainer learns from (`TrainingInput`), its serving class (agent
side: ONNX Runtime or plain Python) and its trainer's options class (trainer side, may need
torch). Classes are named by strings and imported when used, so that this module, and the
agent, never import the trainer.

Adding a model = one serving class (implements `agent.detectors.base.Detector`), one trainer
function (`fit_and_export(data, writer, name, options, fit, target_fpr) -> section`, see
`trainer/training_data.py`) and one row here. `tests/contract/test_models.py` runs the model
contract over every row.
"""

from __future__ import annotations

import enum
import importlib
from dataclasses import dataclass
from typing import Any

from agent.errors import UserError
from agent.types import DetectorKind


class Scope(enum.Enum):
    """What one score of the model judges."""

    LINE = "line"  # a line on its own (its feature row, or whether its template is known)
    WINDOW = "window"  # a line in the window of its entity's recent lines
    SESSION = "session"  # a whole session (an entity that went idle), never a single line


class TrainingInput(enum.Enum):
    """What the trainer function learns from (`trainer.training_data.TrainingData`)."""

    FEATURES = "features"  # per-line feature rows
    SEQUENCES = "sequences"  # per-entity sequences of model tokens (and levels)
    NOTHING = "nothing"  # a fixed rule: it only reads the vocabulary size and held-back data
    # per-entity sequences of every line, anomalies included, with each line's label: trained
    # only when `train` is given labels (`train --labels`), skipped otherwise
    LABELLED = "labelled"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One registered model. `name` is also the manifest's `models.<name>.type`.

    Its files follow the name: the serving class `serving` lives in `agent/detectors/<module>.py`
    and has `from_bundle(load: ModelLoad)`; `trainer/<module>.py` has `fit_and_export` (the
    trainer calling convention) and the options dataclass `options`, default-constructible.
    `module` is the name unless given."""

    name: str
    scope: Scope
    kind: DetectorKind
    data: TrainingInput
    serving: str
    options: str
    torch: bool = False  # training needs torch (serving never does)
    # A rule every bundle carries: trained whatever `--models` says, served whatever `--models`
    # says, and served with its class's `default_section()` from bundles written before it existed.
    builtin: bool = False
    # Trained only when `--models` names it (costly to train, or measured not to earn its place
    # by default); served whenever a bundle carries it.
    opt_in: bool = False
    module: str = ""

    def serving_class(self) -> Any:
        """The agent class that serves this model (imported on first use)."""
        return load_target(f"agent.detectors.{self.module or self.name}:{self.serving}")

    def trainer_function(self) -> Any:
        """The trainer function that fits and exports this model (imported on first use)."""
        return load_target(f"trainer.{self.module or self.name}:fit_and_export")

    def default_options(self) -> Any:
        """A fresh instance of this model's default training options."""
        return load_target(f"trainer.{self.module or self.name}:{self.options}")()


def load_target(target: str) -> Any:
    """The attribute a "module:attribute" string names."""
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


LINE, WINDOW, SESSION = Scope.LINE, Scope.WINDOW, Scope.SESSION
FEATURE, SEQUENCE, SEMANTIC, RULE = (DetectorKind.FEATURE, DetectorKind.SEQUENCE, DetectorKind.SEMANTIC,
                                     DetectorKind.RULE)
FEATURES, SEQUENCES, NOTHING = TrainingInput.FEATURES, TrainingInput.SEQUENCES, TrainingInput.NOTHING
LABELLED = TrainingInput.LABELLED

MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("isolation_forest", LINE, FEATURE, FEATURES, "IsolationForestDetector", "IsolationForestOptions"),
    ModelSpec("novel_set", SESSION, RULE, SEQUENCES, "NovelSetDetector", "NovelSetOptions"),
    ModelSpec("deeplog", WINDOW, SEQUENCE, SEQUENCES, "DeepLogDetector", "DeepLogOptions", torch=True),
    ModelSpec("lstm_ae", WINDOW, SEQUENCE, SEQUENCES, "LstmAutoencoderDetector", "LstmAeOptions", torch=True),
    ModelSpec("logbert", WINDOW, SEMANTIC, SEQUENCES, "LogBertDetector", "LogBertOptions", torch=True),
    # after the models whose scores it reads (table order is training and serving order)
    ModelSpec("autolog", WINDOW, FEATURE, SEQUENCES, "AutoLogDetector", "AutoLogOptions", torch=True,
              opt_in=True),
    ModelSpec("novelty", LINE, RULE, NOTHING, "NoveltyDetector", "NoveltyOptions", builtin=True),
    ModelSpec("supervised_lstm", WINDOW, SEQUENCE, LABELLED, "SupervisedLstmDetector", "SupervisedLstmOptions",
              torch=True),
    ModelSpec("loganomaly", WINDOW, SEQUENCE, SEQUENCES, "LogAnomalyDetector", "LogAnomalyOptions", torch=True,
              opt_in=True),
)

NAMES: tuple[str, ...] = tuple(m.name for m in MODELS)
DEFAULT_NAMES: tuple[str, ...] = tuple(m.name for m in MODELS if not m.opt_in)  # what `train` trains unasked
_BY_NAME = {m.name: m for m in MODELS}


def spec(name: str) -> ModelSpec:
    """The row of a registered model; UserError naming the registered ones otherwise."""
    found = _BY_NAME.get(name)
    if found is None:
        raise UserError(f"unknown model {name!r}: choose from {', '.join(NAMES)}")
    return found


def find(name: str) -> ModelSpec | None:
    """The spec of a registered model by name, or None."""
    return _BY_NAME.get(name)
