"""Online learning of new behaviour: a template born after training that recurs steadily.

A template first seen after training is an anomaly (the novelty rule). When it keeps recurring
with no other anomaly around it — `learn_after` clean occurrences spread over at least
`min_hours` — it is learned: the novelty rule stops firing on it, and the agent says so once.
An occurrence is clean when no anomalous line of another template came within `quiet_secs`
before it, so a new template arriving inside a burst of other anomalies (an incident) is never
learned. Candidates and learned templates are saved beside the online miner's snapshot
(`drift.json` in the state dir), so what was learned survives a restart.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.atomic import write_atomic

DRIFT_STATE = "drift.json"
VERSION = 1


@dataclass(frozen=True)
class DriftConfig:
    """When a new template is learned; `learn_after` 0 turns online learning off."""

    learn_after: int = 0  # clean occurrences needed (0 = never learn)
    min_hours: float = 6.0  # ... spread over at least this long
    quiet_secs: float = 300.0  # an anomaly of another template this close before taints an occurrence


@dataclass
class Candidate:
    """A new template's evidence so far."""

    template: str
    first_seen: float
    last_seen: float
    occurrences: int = 0  # all of them
    clean: int = 0  # those with no other anomaly within quiet_secs before


@dataclass(frozen=True)
class Learned:
    """A template learned online: what the drift report lists."""

    template_id: int
    template: str
    first_seen: float
    learned_at: float
    occurrences: int

    def describe(self) -> str:
        """The one line the agent logs when it learns the template."""
        return (f"learned: template {self.template[:80]!r}, first seen at {self.first_seen:.0f}, "
                f"{self.occurrences} occurrences over {(self.learned_at - self.first_seen) / 3600:.1f} h")


class DriftLearner:
    """Tracks new templates and learns the steady ones (see the module docstring)."""

    def __init__(self, config: DriftConfig, path: Path | None = None) -> None:
        self.config = config
        self.path = path
        self.candidates: dict[int, Candidate] = {}
        self.learned: dict[int, Learned] = {}
        self._recent: deque[tuple[float, int]] = deque()  # (time, template id) of anomalous lines
        self._dirty = False

    @classmethod
    def load(cls, config: DriftConfig, state_dir: Path | None) -> DriftLearner:
        """The learner with the state saved in `state_dir` (none, or unreadable: a fresh one)."""
        path = state_dir / DRIFT_STATE if state_dir is not None else None
        learner = cls(config, path)
        if path is None or not path.is_file():
            return learner
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            learner.learned = {int(k): Learned(**v) for k, v in state["learned"].items()}
            learner.candidates = {int(k): Candidate(**v) for k, v in state["candidates"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            return cls(config, path)  # a state we cannot read must not stop the agent
        return learner

    def is_learned(self, template_id: int) -> bool:
        """True when the template was learned online (it is no longer new)."""
        return template_id in self.learned

    def observe(self, template_id: int, template: str, t: float, anomalous: bool, is_new: bool) -> Learned | None:
        """One judged line; returns the Learned record the one time a template is learned."""
        if self.config.learn_after <= 0 or not anomalous:
            return None
        recent = self._recent
        while recent and recent[0][0] < t - self.config.quiet_secs:
            recent.popleft()
        tainted = any(tid != template_id for _, tid in recent)
        recent.append((t, template_id))
        if not is_new:
            return None
        c = self.candidates.get(template_id)
        if c is None:
            c = self.candidates[template_id] = Candidate(template, t, t)
        c.occurrences += 1
        c.last_seen = max(c.last_seen, t)
        c.clean += not tainted
        self._dirty = True
        if c.clean < self.config.learn_after or c.last_seen - c.first_seen < self.config.min_hours * 3600:
            return None
        del self.candidates[template_id]
        learned = Learned(template_id, c.template, c.first_seen, t, c.occurrences)
        self.learned[template_id] = learned
        return learned

    def save(self) -> int:
        """Write the state when it changed since the last save (and a path is set); bytes written."""
        if self.path is None or not self._dirty:
            return 0
        data = json.dumps({
            "version": VERSION,
            "learned": {str(k): asdict(v) for k, v in self.learned.items()},
            "candidates": {str(k): asdict(v) for k, v in self.candidates.items()},
        }).encode("utf-8")
        write_atomic(self.path, data)
        self._dirty = False
        return len(data)

    def report_lines(self) -> list[str]:
        """The drift report: everything learned since training, and the templates still new."""
        out = [v.describe() for v in sorted(self.learned.values(), key=lambda v: v.learned_at)]
        out += [f"new, not learned yet: template {c.template[:80]!r}, {c.occurrences} occurrences "
                f"({c.clean} clean) since {c.first_seen:.0f}"
                for c in sorted(self.candidates.values(), key=lambda c: -c.occurrences)]
        return out or ["nothing learned or new since training"]
