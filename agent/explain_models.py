"""What a learned model saw, in the terms of the line: the explanation of a model's alert.

Each detector exposes the numbers behind its score in `DetectorScore.details`; this module turns
them into an `Explanation` a person can check against the line:

- Isolation Forest: the features furthest outside their training range, with the values and
  the range (`profile["feature_ranges"]`, written at training).
- LSTM autoencoder: the position of the window it rebuilt worst, how many lines back, and that
  line's template.
- LogBERT: how many of the masked templates of the window it failed to guess, or how far the
  window lies from the training centre.
- AutoLog: the entry of the window's vector it rebuilt worst: a template's count, a level's
  count, or another model's score.

DeepLog's expected-vs-actual templates are the SEQUENCE explanation of a line (`agent.explain`).

A session verdict (`explain_session`) is explained the same way, in the terms of the session's
lines: DeepLog where it first went wrong (the templates it expected there, and the one that came
or that the session stopped), the LSTM-AE the line ending the window it rebuilt worst and that
line's template, LogBERT its missed guesses, the novelty rule the lines never seen in training,
and the set rule that these templates never made up a training session together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent.features import FEATURE_NAMES
from agent.types import DetectorScore, Explanation, ExplanationKind, Level, LineContext

MAX_FEATURES = 3  # features quoted per Isolation Forest alert

# How each feature reads to a person (the value as stored, then as said).
_FEATURE_TEXT = {
    "template_token": "template",
    "template_log_freq": "template frequency (log10 of its share of training lines)",
    "level": "level",
    "hour_of_day": "hour of day (UTC)",
    "day_of_week": "day of week (0 = Monday)",
    "msg_length": "message length (bucket)",
    "param_count": "parameters in the message",
    "template_freq_window": "lines of this template in the last minute",
    "burst_ratio": "that count over its training mean",
    "level_ratio": "share of WARN-or-worse lines in the last minute",
    "distinct_templates_window": "distinct templates in the last minute",
    "new_template": "template never seen in training",
    "transition_prob": "P(this template | the previous one) in training",
}


def _num(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


class ModelExplainer:
    """Explanations of model alerts; `label(template_id)` and `template_of(token)` come from the
    line explainer (template text and the token → template map)."""

    def __init__(self, profile: Mapping[str, Any], label: Callable[[int | None], str],
                 template_of: Callable[[int], int | None], model_types: Mapping[str, str] | None = None) -> None:
        self._types = dict(model_types or {})
        ranges = profile.get("feature_ranges") or {}
        self._ranges: dict[int, tuple[float, float]] = {}
        for i, name in enumerate(FEATURE_NAMES):
            pair = ranges.get(name)
            if isinstance(pair, (list, tuple)) and len(pair) == 2:
                self._ranges[i] = (float(pair[0]), float(pair[1]))
        self._label = label
        self._template_of = template_of

    def explain_session(self, tokens: Sequence[int], scores: Sequence[DetectorScore]) -> list[Explanation]:
        """One explanation per fired detector of a session verdict, in the terms of its lines."""
        out: list[Explanation] = []
        for score in scores:
            if not score.fired:
                continue
            details = dict(score.details)
            kind = self._types.get(score.detector, score.detector)
            if kind in ("deeplog", "loganomaly"):  # LogAnomaly is judged by DeepLog's rules
                out.append(self._deeplog_session(tokens, score, details))
            elif kind == "lstm_ae":
                out.append(self._lstm_ae_session(tokens, score, details))
            elif kind == "logbert":
                out.append(self._logbert(score, details))
            elif kind == "novelty":
                out.append(self._novelty_session(tokens, score))
            elif kind == "novel_set":
                out.append(self._novel_set_session(tokens, score))
            elif kind == "autolog":
                out.append(self._autolog_session(tokens, score, details))
            elif kind == "supervised_lstm":
                out.append(self._supervised_session(tokens, score, details))
        return out

    def _supervised_session(self, tokens: Sequence[int], score: DetectorScore,
                            details: dict[str, object]) -> Explanation:
        """The window the classifier found most like the labelled anomalies, and its last line's template."""
        where = details.get("position")
        text = (f"LIKE A LABELLED ANOMALY: {score.detector} gives this session's most anomalous window "
                f"probability {score.score:.2f} (threshold {score.threshold:.2f})")
        facts: list[tuple[str, object]] = [("detector", score.detector), ("score", score.score),
                                           ("threshold", score.threshold)]
        if isinstance(where, int) and 0 <= where < len(tokens):
            text += f"\nThat window ends at line {where + 1}, {self._token_label(tokens[where])}"
            facts += [("window_end_line", where + 1),
                      ("template", self._template_of(tokens[where]) if tokens[where] else None)]
        return Explanation(ExplanationKind.MODEL_OUTLIER, text, tuple(facts))

    def _autolog_session(self, tokens: Sequence[int], score: DetectorScore, details: dict[str, object]) -> Explanation:
        """The counts it could not rebuild: the unseen lines, and its input models' scaled scores
        (z: 0 = the normal median, 1 = the normal p99)."""
        inputs = {k.removeprefix("input_"): float(v) for k, v in details.items()
                  if k.startswith("input_") and isinstance(v, (int, float))}
        unknown = sum(1 for t in tokens if t == 0)
        said = "; ".join(f"{name} at {z:.1f}× its normal p99 excess" for name, z in
                         sorted(inputs.items(), key=lambda kv: -kv[1]) if z > 1.0)
        text = (f"COUNT RECONSTRUCTION: {score.detector} could not rebuild this session's template and level "
                f"counts ({len(tokens)} lines, {unknown} of a template never seen in training; error "
                f"{score.score:.2f} > threshold {score.threshold:.2f})")
        if said:
            text += f"\nInputs over normal: {said}"
        return Explanation(ExplanationKind.MODEL_OUTLIER, text, (
            ("detector", score.detector), ("score", score.score), ("threshold", score.threshold),
            ("unknown_lines", unknown), ("inputs", inputs)))

    def _token_label(self, token: int) -> str:
        template = self._template_of(token) if token else None
        return self._label(template) if template is not None else "a template never seen in training"

    def _deeplog_session(self, tokens: Sequence[int], score: DetectorScore, details: dict[str, object]) -> Explanation:
        facts: list[tuple[str, object]] = [("detector", score.detector), ("score", score.score),
                                           ("threshold", score.threshold), ("misses", details.get("misses")),
                                           ("positions", details.get("positions"))]
        head = (f"SEQUENCE ANOMALY: {score.detector} did not expect {details.get('misses')} of the "
                f"{details.get('positions')} steps of this session (threshold {score.threshold:g})")
        where, actual, end = details.get("first_miss"), details.get("actual"), details.get("end")
        raw = details.get("expected")
        expected = [(int(t), float(p)) for t, p in raw] if isinstance(raw, (list, tuple)) else []
        if not isinstance(where, int) or not isinstance(actual, int):
            return Explanation(ExplanationKind.SEQUENCE, head, tuple(facts))

        def said(token: int) -> str:
            return "the end of the session" if token == end else self._token_label(token)

        came = "the session ended" if actual == end else f"line {where + 1} was {said(actual)}"
        listing = ", ".join(f"{said(t)} {p:.0%}" for t, p in expected[:3])
        facts += [("first_miss", where), ("actual_template", None if actual == end else self._template_of(actual)),
                  ("expected_templates", [self._template_of(t) for t, _ in expected[:3]])]
        text = f"{head}\nFirst unexpected: {came}\nExpected there: {listing}"
        return Explanation(ExplanationKind.SEQUENCE, text, tuple(facts))

    def _lstm_ae_session(self, tokens: Sequence[int], score: DetectorScore, details: dict[str, object]) -> Explanation:
        worst = details.get("worst_position")
        facts: list[tuple[str, object]] = [("detector", score.detector), ("score", score.score),
                                           ("threshold", score.threshold)]
        head = (f"SEQUENCE RECONSTRUCTION: {score.detector} could not rebuild this session of {len(tokens)} lines "
                f"(worst window error {score.score:.2f} > threshold {score.threshold:.2f})")
        if isinstance(worst, int) and 0 <= worst < len(tokens):
            template = self._template_of(tokens[worst]) if tokens[worst] else None
            facts += [("worst_line", worst + 1), ("worst_template", template)]
            head += f"\nWorst rebuilt: the window ending at line {worst + 1}, {self._token_label(tokens[worst])}"
        return Explanation(ExplanationKind.SEQUENCE, head, tuple(facts))

    def _novelty_session(self, tokens: Sequence[int], score: DetectorScore) -> Explanation:
        unknown = [i for i, t in enumerate(tokens) if t == 0]
        first = f", the first at line {unknown[0] + 1}" if unknown else ""
        text = (f"NEW TEMPLATE: {len(unknown)} of this session's {len(tokens)} lines have a template never "
                f"seen in training{first}")
        return Explanation(ExplanationKind.NEW_TEMPLATE, text, (
            ("detector", score.detector), ("unknown_lines", len(unknown)),
            ("first_unknown_line", unknown[0] + 1 if unknown else None)))

    def _novel_set_session(self, tokens: Sequence[int], score: DetectorScore) -> Explanation:
        distinct = sorted({int(t) for t in tokens})
        named = "; ".join(self._token_label(t) for t in distinct[:4]) + (" …" if len(distinct) > 4 else "")
        text = (f"NEW COMBINATION: no training session held exactly this set of {len(distinct)} templates: "
                f"{named}")
        return Explanation(ExplanationKind.SEQUENCE, text, (
            ("detector", score.detector), ("templates", [self._template_of(t) for t in distinct])))

    def explain(self, ctx: LineContext, scores: Sequence[DetectorScore]) -> list[Explanation]:
        """One explanation per fired model whose type says how to read its numbers."""
        out: list[Explanation] = []
        for score in scores:
            if not score.fired:
                continue
            details = dict(score.details)
            kind = self._types.get(score.detector, score.detector)
            found: Explanation | None = None
            if kind == "lstm_ae":
                found = self._lstm_ae(ctx, score, details)
            elif kind == "logbert":
                found = self._logbert(score, details)
            elif kind == "isolation_forest":
                found = self._isolation_forest(ctx, score)
            elif kind == "autolog":
                found = self._autolog(ctx, score, details)
            if found is not None:
                out.append(found)
        return out

    # ---- per model

    def _isolation_forest(self, ctx: LineContext, score: DetectorScore) -> Explanation | None:
        row = [float(v) for v in ctx.features]
        if not self._ranges or len(row) != len(FEATURE_NAMES):
            return None
        outside: list[tuple[float, int, float, float, float]] = []
        for i, value in enumerate(row):
            if i not in self._ranges:
                continue
            low, high = self._ranges[i]
            span = max(high - low, 1e-9 if high != low else 1.0)
            if value > high:
                outside.append(((value - high) / span, i, value, low, high))
            elif value < low:
                outside.append(((low - value) / span, i, value, low, high))
        outside.sort(key=lambda o: -o[0])
        head = f"ISOLATION FOREST (score {score.score:.3f} > threshold {score.threshold:.3f}):"
        facts: list[tuple[str, object]] = [("detector", score.detector), ("score", score.score),
                                           ("threshold", score.threshold)]
        if not outside:
            # Every feature inside its range: the combination is what is rare.
            parts = [f"{_FEATURE_TEXT[FEATURE_NAMES[i]]} = {_num(row[i])}" for i in (3, 4, 7, 9)
                     if i < len(row)]
            text = f"{head} no single feature outside its training range; an unusual combination of " + \
                "; ".join(parts)
            facts.append(("outside_range", []))
            return Explanation(ExplanationKind.MODEL_OUTLIER, text, tuple(facts))
        said = []
        listed = []
        for _, i, value, low, high in outside[:MAX_FEATURES]:
            name = FEATURE_NAMES[i]
            said.append(f"{_FEATURE_TEXT[name]} = {_num(value)} (training {_num(low)} – {_num(high)})")
            listed.append({"feature": name, "value": value, "min": low, "max": high})
        facts.append(("outside_range", listed))
        return Explanation(ExplanationKind.MODEL_OUTLIER, f"{head} " + "; ".join(said), tuple(facts))

    def _lstm_ae(self, ctx: LineContext, score: DetectorScore, details: dict[str, object]) -> Explanation:
        size = details.get("window")
        window = size if isinstance(size, int) else 0
        raw = details.get("worst_position")
        facts: list[tuple[str, object]] = [("detector", score.detector), ("score", score.score),
                                           ("threshold", score.threshold)]
        head = (f"SEQUENCE RECONSTRUCTION: {score.detector} could not rebuild the last "
                f"{min(window, len(ctx.history)) or window} lines of this entity "
                f"(error {score.score:.2f} > threshold {score.threshold:.2f})")
        if isinstance(raw, int) and window:
            back = window - 1 - raw  # 0 = this line
            history = ctx.history
            token = history[len(history) - 1 - back] if 0 <= back < len(history) else None
            template = self._template_of(token) if token else None
            where = "this line" if back == 0 else f"{back} line{'s' if back != 1 else ''} before this one"
            label = self._label(template) if template is not None else "a template never seen in training"
            facts += [("worst_lines_back", back), ("worst_template", template)]
            return Explanation(ExplanationKind.SEQUENCE,
                               f"{head}\nWorst rebuilt: {where}, {label}", tuple(facts))
        return Explanation(ExplanationKind.SEQUENCE, head, tuple(facts))

    def _autolog(self, ctx: LineContext, score: DetectorScore, details: dict[str, object]) -> Explanation:
        size = details.get("window")
        lines = min(size, len(ctx.history)) if isinstance(size, int) else len(ctx.history)
        facts: list[tuple[str, object]] = [("detector", score.detector), ("score", score.score),
                                           ("threshold", score.threshold), *details.items()]
        head = (f"WINDOW PROFILE: {score.detector} could not rebuild what the last {lines} lines of this entity "
                f"hold (error {score.score:.3f} > threshold {score.threshold:.3f})")
        what, value = details.get("worst_entry"), details.get("worst_value")
        said = ""
        if what == "template_token" and isinstance(value, int):
            template = self._template_of(value) if value else None
            label = self._label(template) if template is not None else "templates never seen in training"
            said = f"the count of {label} in them"
        elif what == "level" and isinstance(value, int):
            said = f"the count of {Level(value).name} lines in them"
        elif what == "input":
            said = f"{value}'s score here (scaled to its normal spread: {details.get(f'input_{value}')})"
        return Explanation(ExplanationKind.MODEL_OUTLIER, f"{head}\nRebuilt worst: {said}" if said else head,
                           tuple(facts))

    def _logbert(self, score: DetectorScore, details: dict[str, object]) -> Explanation:
        facts: list[tuple[str, object]] = [("detector", score.detector), ("score", score.score),
                                           ("threshold", score.threshold), *details.items()]
        misses, positions = details.get("misses"), details.get("positions")
        if details.get("path") != "distance" and isinstance(misses, int) and isinstance(positions, int) and misses:
            text = (f"SEQUENCE CONTEXT: {score.detector} failed to guess {misses} of {positions} hidden templates "
                    f"in this entity's recent lines from their neighbours (score {score.score:.2f} > "
                    f"{score.threshold:.2f})")
        else:
            text = (f"SEQUENCE CONTEXT: {score.detector} places this entity's recent lines far from anything "
                    f"in training (score {score.score:.2f} > {score.threshold:.2f})")
        return Explanation(ExplanationKind.MODEL_OUTLIER, text, tuple(facts))
