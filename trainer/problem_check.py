"""Operator "problem" labels at training: their lines are held out of normal training and check the
operating points.

`logdetect feedback --problem` marks a template as a real problem. At the next `train --feedback`
its lines in the history are not learned (like suspects), and they are the one set of real,
operator-confirmed anomalies the trainer has: the finished draft bundle is run over them through
the real agent pipeline at each sensitivity, and the manifest (`training.feedback.problem_check`)
records how many each level alerts on. A level that lets some of them through is named in
`train`'s notes with the templates it missed, so the operator knows before deploying.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from agent.bundle import Bundle
from agent.parsing import ParserConfig
from agent.templates import TemplateMiner
from agent.types import ParsedLine, Record, Sensitivity

MAX_LINES = 2000  # the check runs the pipeline three times; more lines add little


@dataclass(frozen=True)
class ProblemCheck:
    """How many of the history's problem-labelled lines the new bundle alerts on, per sensitivity."""

    lines: int
    templates: int
    caught: dict[str, int]  # sensitivity -> lines alerted on
    missed: dict[str, tuple[str, ...]]  # sensitivity -> templates of the lines it let through

    def to_json(self) -> dict[str, object]:
        """As recorded in the manifest's training.feedback.problem_check."""
        return {"lines": self.lines, "templates": self.templates, "caught": dict(self.caught),
                "missed_templates": {k: list(v) for k, v in self.missed.items() if v}}

    def summary_lines(self) -> list[str]:
        """What `train` prints (and keeps as notes when a level misses some)."""
        if not self.lines:
            return []
        levels = ", ".join(f"{k} {n:,}" for k, n in self.caught.items())
        out = [f"problem labels: {self.lines:,} held-out line(s) of {self.templates} template(s); "
               f"the bundle alerts on {levels}"]
        out += [f"  sensitivity {k} lets problem lines through: {', '.join(repr(t[:60]) for t in v)}"
                for k, v in self.missed.items() if v]
        return out


def problem_lines(parsed: Sequence[ParsedLine], miner: TemplateMiner, problem: Sequence[int]) -> list[ParsedLine]:
    """The history's lines of problem-labelled templates (at most `MAX_LINES`, spread evenly)."""
    wanted = set(problem)
    lines = [p for p in parsed if (m := miner.match(p.message)) is not None and m.template_id in wanted]
    step = max(1, -(-len(lines) // MAX_LINES))
    return lines[::step]


def check(bundle: Bundle, lines: Sequence[ParsedLine], parser: ParserConfig, templates: int) -> ProblemCheck:
    """Run the draft bundle's pipeline over `lines` at each sensitivity."""
    from agent.pipeline import Pipeline, PipelineConfig
    from agent.types import LineResult, Verdict

    records = [Record(p.raw, p.source) for p in lines]
    caught: dict[str, int] = {}
    missed: dict[str, tuple[str, ...]] = {}
    for level in Sensitivity:
        pipe = Pipeline(bundle, PipelineConfig(parser=dataclasses.replace(parser, multiline=False), sensitivity=level))
        results: list[LineResult] = []
        pipe.observers.append(results.append)
        for start in range(0, len(records), 1024):
            pipe.process(records[start : start + 1024], 0.0)
        pipe.flush_pending(0.0)
        caught[level.value] = sum(r.verdict is not Verdict.NORMAL for r in results)
        let_through = Counter(r.line.template for r in results if r.verdict is Verdict.NORMAL)
        missed[level.value] = tuple(t for t, _ in let_through.most_common(5))
    return ProblemCheck(len(records), templates, caught, missed)
