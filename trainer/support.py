"""What the held-back data can support: one line per sensitivity for `train`'s output and the
manifest, from the `calibration.support` each model section carries (`trainer/calibrate.py`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

LEVELS = ("low", "medium", "high")


def _supports(section: Any, path: str) -> Iterator[tuple[str, dict[str, str], dict[str, str]]]:
    if isinstance(section, Mapping):
        support = section.get("support")
        if isinstance(support, Mapping) and all(isinstance(v, str) for v in support.values()):
            yield path, dict(support), dict(section.get("support_reason") or {})
        for key, value in section.items():
            if isinstance(value, Mapping):
                yield from _supports(value, f"{path}.{key}" if path else str(key))


def sensitivity_support(models: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Per level: `supported` (every threshold empirical or a fitted tail) and, where not, which
    model thresholds the data cannot support and why."""
    out: dict[str, Any] = {}
    for level in LEVELS:
        unsupported: dict[str, str] = {}
        extrapolated: list[str] = []
        for name, section in models.items():
            for path, support, reasons in _supports(section, name):
                status = support.get(level)
                if status == "unsupported":
                    unsupported[path] = reasons.get(level, "")
                elif status == "extrapolated":
                    extrapolated.append(path)
        out[level] = {"supported": not unsupported, "unsupported": unsupported, "extrapolated": extrapolated}
    return out


def support_lines(support: Mapping[str, Any]) -> list[str]:
    """Plain sentences for `train`'s output."""
    lines: list[str] = []
    for level in LEVELS:
        s = support.get(level, {})
        if s.get("unsupported"):
            models = sorted({path.split(".")[0] for path in s["unsupported"]})
            first = next(iter(s["unsupported"].items()))
            lines.append(f"sensitivity {level} is NOT supported by the held-back data for {', '.join(models)} "
                         f"(e.g. {first[0].split('.')[0]}: {first[1]}): its thresholds there are guesses; train "
                         "on more lines or raise --val-fraction")
        elif s.get("extrapolated"):
            models = sorted({path.split(".")[0] for path in s["extrapolated"]})
            lines.append(f"sensitivity {level}: thresholds of {', '.join(models)} extrapolated from a fitted "
                         "generalized Pareto tail (fewer held-back scores than the level needs)")
    return lines
