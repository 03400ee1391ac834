"""Online learning of new behaviour: a template born after training that recurs steadily.

A template first seen after training is an anomaly (the novelty rule). When it keeps recurring
with no other anomaly around it — `learn_after` clean occurrences spread over at least
`min_hours` — it is learned: the novelty rule stops firing on it, and the agent says so once.
An occurrence is clean when no anomalous line of another template came within `quiet_secs`
before it, so a new template arriving inside a burst of other anomalies (an incident) is never
learned. Candidates and learned templates are saved beside the online miner's snapshot
(`drift.json` in the state dir), so what was learned survives a restart.

It also counts the lines of each training token the agent has seen since training (bounded by
the bundle's vocabulary, saved in the same file with the bundle's id; another bundle starts the
count again). A template is newly rare when, over the lines processed since training, its
training share predicts at least `rare_min_expected` lines and at most `rare_ratio` of that many
came (expecting 20 and seeing at most 2 has a Poisson chance below 1e-6): behaviour that
stopped, which the models still count as normal.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.atomic import write_atomic
from agent.bundle import Bundle

DRIFT_STATE = "drift.json"
VERSION = 1


@dataclass(frozen=True)
class DriftConfig:
    """When a new template is learned; `learn_after` 0 turns online learning off."""

    learn_after: int = 0  # clean occurrences needed (0 = never learn)
    min_hours: float = 6.0  # ... spread over at least this long
    quiet_secs: float = 300.0  # an anomaly of another template this close before taints an occurrence
    rare_min_expected: float = 20.0  # newly rare needs at least this many lines expected from training ...
    rare_ratio: float = 0.1  # ... and at most this share of them seen


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


@dataclass(frozen=True)
class Rare:
    """A training template that has become rare: what the drift report lists."""

    token: int
    template: str
    training_lines: int  # its lines in training
    expected: float  # lines its training share predicts over the lines seen since training
    seen: int  # lines seen since training

    def describe(self) -> str:
        """One report line."""
        return (f"newly rare: template {self.template[:80]!r}, {self.seen} line(s) since training "
                f"where its training share ({self.training_lines} lines) predicts {self.expected:.0f}")


class DriftLearner:
    """Tracks new templates and learns the steady ones (see the module docstring)."""

    def __init__(self, config: DriftConfig, path: Path | None = None) -> None:
        self.config = config
        self.path = path
        self.candidates: dict[int, Candidate] = {}
        self.learned: dict[int, Learned] = {}
        self._recent: deque[tuple[float, int]] = deque()  # (time, template id) of anomalous lines
        self._dirty = False
        self.bundle_id = ""  # the bundle the counts below are for
        self.lines = 0  # lines seen since training
        self.seen: dict[int, int] = {}  # lines per training token since training (token 0 not kept)
        self.quiet_sessions = 0  # session verdicts dropped: their only news was a learned template

    @classmethod
    def load(cls, config: DriftConfig, state_dir: Path | None, bundle_id: str | None = None) -> DriftLearner:
        """The learner with the state saved in `state_dir` (none, or unreadable: a fresh one).
        Given `bundle_id`, line counts kept for another bundle start again."""
        path = state_dir / DRIFT_STATE if state_dir is not None else None
        learner = cls(config, path)
        learner.bundle_id = bundle_id or ""
        if path is None or not path.is_file():
            return learner
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            learner.learned = {int(k): Learned(**v) for k, v in state["learned"].items()}
            learner.candidates = {int(k): Candidate(**v) for k, v in state["candidates"].items()}
            exposure = state.get("exposure") or {}
            if bundle_id is None or exposure.get("bundle") == bundle_id:
                learner.bundle_id = str(exposure.get("bundle", learner.bundle_id))
                learner.lines = int(exposure.get("lines", 0))
                learner.seen = {int(k): int(v) for k, v in (exposure.get("seen") or {}).items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            fresh = cls(config, path)  # a state we cannot read must not stop the agent
            fresh.bundle_id = bundle_id or ""
            return fresh
        return learner

    def count(self, token: int) -> None:
        """One line seen, of this vocabulary token (0: not a training template)."""
        self.lines += 1
        if token:
            self.seen[token] = self.seen.get(token, 0) + 1
        self._dirty = True

    def count_all(self, tokens: Sequence[int]) -> None:
        """`count` of each of these lines' tokens, in turn (a micro-batch at once)."""
        if not tokens:
            return
        self.lines += len(tokens)
        seen = self.seen
        for token in tokens:
            if token:
                seen[token] = seen.get(token, 0) + 1
        self._dirty = True

    def newly_rare(self, training_counts: dict[int, int], total: int, texts: dict[int, str]) -> list[Rare]:
        """Training tokens seen far less often since training than their share predicts (see
        the module docstring), most expected first; `texts` names each token's template."""
        if total <= 0 or not self.lines:
            return []
        out = []
        for token, n in training_counts.items():
            expected = n / total * self.lines
            seen = self.seen.get(token, 0)
            if token and expected >= self.config.rare_min_expected and seen <= self.config.rare_ratio * expected:
                out.append(Rare(token, texts.get(token, f"token {token}"), n, expected, seen))
        return sorted(out, key=lambda r: -r.expected)

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
            "exposure": {"bundle": self.bundle_id, "lines": self.lines,
                         "seen": {str(k): v for k, v in self.seen.items()}},
        }).encode("utf-8")
        write_atomic(self.path, data)
        self._dirty = False
        return len(data)

    def report_lines(self, rare: list[Rare] | None = None) -> list[str]:
        """The drift report: everything learned since training, the templates still new, and
        the training templates that became rare (`newly_rare`)."""
        out = [v.describe() for v in sorted(self.learned.values(), key=lambda v: v.learned_at)]
        out += [f"new, not learned yet: template {c.template[:80]!r}, {c.occurrences} occurrences "
                f"({c.clean} clean) since {c.first_seen:.0f}"
                for c in sorted(self.candidates.values(), key=lambda c: -c.occurrences)]
        out += [r.describe() for r in rare or ()]
        return out or ["nothing learned, new or newly rare since training"]


def training_counts(bundle: Bundle) -> tuple[dict[int, int], int, dict[int, str]]:
    """From the bundle: lines per vocabulary token in training, their total, and each token's
    template text (the arguments of `DriftLearner.newly_rare`)."""
    from agent.templates import TemplateMiner

    features = bundle.read_json("features.json")
    counts = {int(k): int(v) for k, v in features["token_counts"].items()}
    miner = TemplateMiner.from_state(bundle.read_json("drain_state.json"))
    texts: dict[int, str] = {}
    for tid, token in bundle.read_json("vocab.json")["template_to_token"].items():
        text = miner.template(int(tid))
        if text is not None:
            texts.setdefault(int(token), text)
    return counts, int(features["total"]), texts
