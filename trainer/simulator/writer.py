"""Writing a simulation: the log file and its ground truth beside it, both atomically."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from agent.atomic import replacing_text
from agent.errors import UserError
from trainer.simulator.generator import DEFAULT_LINES_PER_DAY, check_args, events, start_ms
from trainer.simulator.incidents import SPECS, expected_explanations
from trainer.simulator.timeline import iso

TRUTH_SUFFIX = ".truth.json"
TRUTH_FORMAT = "logdetect-simulation-truth"


@dataclass(frozen=True)
class InjectedIncident:
    """One injected incident as the ground truth records it (times are epoch seconds UTC)."""

    kind: str
    start: float
    end: float
    line_numbers: tuple[int, ...]  # 1-based line numbers in the written file
    components: tuple[str, ...]
    description: str
    expected_explanations: tuple[str, ...]  # ExplanationKind values a good detector should give

    def to_json(self) -> dict[str, Any]:
        """The incident as the truth file stores it (times also as ISO text)."""
        return {
            "kind": self.kind,
            "start": self.start,
            "end": self.end,
            "start_iso": iso(round(self.start * 1000)),
            "end_iso": iso(round(self.end * 1000)),
            "line_count": len(self.line_numbers),
            "line_numbers": list(self.line_numbers),
            "components": list(self.components),
            "description": self.description,
            "expected_explanations": list(self.expected_explanations),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> InjectedIncident:
        """An incident read back from a truth file."""
        return cls(
            kind=str(obj["kind"]),
            start=float(obj["start"]),
            end=float(obj["end"]),
            line_numbers=tuple(int(n) for n in obj["line_numbers"]),
            components=tuple(str(c) for c in obj["components"]),
            description=str(obj["description"]),
            expected_explanations=tuple(str(e) for e in obj["expected_explanations"]),
        )


@dataclass(frozen=True)
class SimulationResult:
    """What `simulate` wrote: the number of lines, the injected incidents and both files."""

    lines: int
    incidents: tuple[InjectedIncident, ...]
    output: Path | None = None
    truth: Path | None = None


def truth_path(output: Path) -> Path:
    """Where `simulate` writes the ground truth for `output` (`day.log` → `day.log.truth.json`)."""
    return output.with_suffix(output.suffix + TRUTH_SUFFIX)


def load_truth(path: Path) -> tuple[InjectedIncident, ...]:
    """Read the incidents of a ground-truth file written by `simulate`."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read simulation truth file {path}: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("format") != TRUTH_FORMAT:
        raise UserError(f"{path} is not a logdetect simulation truth file")
    return tuple(InjectedIncident.from_json(i) for i in obj["incidents"])


def simulate(
    output: Path,
    days: float,
    seed: int,
    incidents: Sequence[str] = (),
    start: datetime | None = None,
    lines_per_day: int = DEFAULT_LINES_PER_DAY,
) -> SimulationResult:
    """Write `days` of simulated logs to `output` and the ground truth beside it.

    Incidents go on the last simulated day at their usual times (db_failover 03:42, new_error
    ~10:30, auth_storm ~14:20, crash_loop ~20:35), or are spread over a shorter span.
    Both files are written atomically (temporary file, then rename).
    """
    output = Path(output)
    if output.is_dir():
        raise UserError(f"--output {output} is a directory; give a file name")
    if not output.parent.is_dir():
        raise UserError(f"directory {output.parent} does not exist")
    kinds = check_args(days, lines_per_day, incidents)
    members: dict[str, list[int]] = {k: [] for k in kinds}
    times: dict[str, list[int]] = {k: [] for k in kinds}
    instances: dict[str, set[str]] = {k: set() for k in kinds}
    count = 0
    with _writing(output) as fh:
        for ev in events(days, seed, kinds, start, lines_per_day):
            count += 1
            fh.write(ev.line)
            fh.write("\n")
            if ev.incident is not None:
                members[ev.incident].append(count)
                times[ev.incident].append(ev.time_ms)
                instances[ev.incident].add(ev.instance)
    found = tuple(
        InjectedIncident(
            kind=k,
            start=min(times[k]) / 1000,
            end=max(times[k]) / 1000,
            line_numbers=tuple(members[k]),
            components=tuple(sorted(instances[k])),
            description=SPECS[k].description,
            expected_explanations=expected_explanations(k, min(times[k])),
        )
        for k in kinds
        if members[k]
    )
    found = tuple(sorted(found, key=lambda i: i.start))
    truth = truth_path(output)
    doc = {
        "format": TRUTH_FORMAT,
        "version": 1,
        "log_file": output.name,
        "seed": seed,
        "start": iso(start_ms(start)),
        "days": days,
        "lines_per_day": lines_per_day,
        "lines": count,
        "incidents": [i.to_json() for i in found],
    }
    with _writing(truth) as fh:
        fh.write(_truth_json(doc))
    return SimulationResult(lines=count, incidents=found, output=output, truth=truth)


def _truth_json(doc: dict[str, Any]) -> str:
    """JSON with one key per line and each incident on one line (line-number lists stay compact)."""
    head = {k: v for k, v in doc.items() if k != "incidents"}
    lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    incidents = ",\n".join(f"  {json.dumps(i)}" for i in doc["incidents"])
    body = f' "incidents": [\n{incidents}\n ]' if incidents else ' "incidents": []'
    return "{\n" + "\n".join(lines) + "\n" + body + "\n}\n"


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[TextIO]:
    """An atomic text file with the umask's mode (simulated logs are not private state)."""
    try:
        with replacing_text(path, private=False) as fh:
            yield fh
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from exc
