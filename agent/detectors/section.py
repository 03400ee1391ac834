"""A typed view of one model's section of the bundle manifest, and the threshold contract.

Every trainer returns a section with at least

    type                 the model's registered name (`agent.models`)
    thresholds           {"low": t, "medium": t, "high": t}: a score above t fires at that
                         sensitivity (calibrated on held-back normal data)
    session_thresholds   (optional) the same for `score_session`; absent: `thresholds`

and whatever its serving class reads back. `ModelSection.parse` refuses a section that breaks
this contract, so no detector can load without calibrated thresholds. How the thresholds are
chosen (quantiles today, tail fits later) is the trainer's business: `trainer/calibrate.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.bundle import Bundle
from agent.errors import BundleError
from agent.onnx_session import OnnxModel, RuntimeOptions
from agent.types import Sensitivity

SENSITIVITIES = (Sensitivity.LOW.value, Sensitivity.MEDIUM.value, Sensitivity.HIGH.value)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """One threshold per sensitivity: a score above it fires."""

    low: float
    medium: float
    high: float

    def at(self, sensitivity: Sensitivity) -> float:
        """The threshold of one sensitivity."""
        return float(getattr(self, sensitivity.value))

    def to_json(self) -> dict[str, float]:
        """The thresholds as a manifest object."""
        return {"low": self.low, "medium": self.medium, "high": self.high}

    @staticmethod
    def parse(raw: object, where: str) -> Thresholds:
        """Thresholds from a manifest object; a missing or malformed level is a BundleError."""
        if not isinstance(raw, Mapping):
            raise BundleError(f"{where} has no thresholds: retrain the bundle")
        missing = [s for s in SENSITIVITIES if s not in raw]
        if missing:
            raise BundleError(f"{where} has no {missing[0]!r} threshold: retrain the bundle")
        try:
            return Thresholds(*(float(raw[s]) for s in SENSITIVITIES))
        except (TypeError, ValueError) as exc:
            raise BundleError(f"{where} has a malformed threshold ({exc}): retrain the bundle") from None


@dataclass(frozen=True)
class ModelSection:
    """`manifest["models"][name]`, checked against the contract above."""

    name: str
    type: str
    thresholds: Thresholds
    session_thresholds: Thresholds | None
    raw: Mapping[str, Any]

    @staticmethod
    def parse(name: str, raw: object) -> ModelSection:
        """A model's manifest section, checked: type, thresholds, session thresholds."""
        if not isinstance(raw, Mapping):
            raise BundleError(f"model {name!r}: its manifest section is not an object: retrain the bundle")
        where = f"model {name!r}"
        sessions = raw.get("session_thresholds")
        return ModelSection(
            name=name,
            type=str(raw.get("type", "")),
            thresholds=Thresholds.parse(raw.get("thresholds"), where),
            session_thresholds=Thresholds.parse(sessions, f"{where} (sessions)") if sessions is not None else None,
            raw=raw,
        )

    def threshold(self, sensitivity: Sensitivity) -> float:
        """The line threshold at a sensitivity."""
        return self.thresholds.at(sensitivity)

    def session_threshold(self, sensitivity: Sensitivity) -> float:
        """The session threshold at a sensitivity (the line threshold when none is calibrated)."""
        return (self.session_thresholds or self.thresholds).at(sensitivity)

    def get(self, key: str, default: Any = None) -> Any:
        """A model-specific key of the section, or `default`."""
        return self.raw.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __contains__(self, key: object) -> bool:
        return key in self.raw

    def file(self) -> str:
        """The section's own file in the bundle (`file`, default `<name>.onnx`)."""
        return str(self.raw.get("file", f"{self.name}.onnx"))

    def integer(self, key: str, default: int | None = None) -> int:
        """`raw[key]` as an int; BundleError when absent without a default, or malformed."""
        value = self.raw.get(key, default)
        if value is None:
            raise BundleError(f"model {self.name!r}: manifest section lacks {key!r}: retrain the bundle")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise BundleError(f"model {self.name!r}: {key!r} is not an integer ({value!r}): retrain") from None


@dataclass(frozen=True)
class ModelLoad:
    """What a serving class's `from_bundle` receives: the verified bundle, the model's section,
    how to run models, and the sensitivity that picks its thresholds."""

    bundle: Bundle
    section: ModelSection
    options: RuntimeOptions = field(default_factory=RuntimeOptions)
    sensitivity: Sensitivity = Sensitivity.MEDIUM

    @staticmethod
    def of(bundle: Bundle, name: str, options: RuntimeOptions | None = None,
           sensitivity: Sensitivity = Sensitivity.MEDIUM) -> ModelLoad:
        """The load of the bundle's model `name` (its section checked against the contract)."""
        if name not in bundle.models:
            raise BundleError(f"{bundle.path}: the bundle has no model {name!r}")
        return ModelLoad(bundle, ModelSection.parse(name, bundle.models[name]), options or RuntimeOptions(),
                         sensitivity)

    @property
    def name(self) -> str:
        """The model's name in the bundle."""
        return self.section.name

    @property
    def threshold(self) -> float:
        """The line threshold at this sensitivity."""
        return self.section.threshold(self.sensitivity)

    @property
    def session_threshold(self) -> float:
        """The session threshold at this sensitivity."""
        return self.section.session_threshold(self.sensitivity)

    def onnx(self, warm_up: bool = True) -> OnnxModel:
        """The section's ONNX file, opened with the runtime options and (`warm_up`) run once on
        zeros: the first run's set-up belongs to the load (`OnnxModel.warm_up`)."""
        model = OnnxModel(self.bundle.file(self.section.file()), self.options)
        if warm_up:
            model.warm_up()
        return model
