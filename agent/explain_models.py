"""What a learned model saw, in the terms of the line: the explanation of a model's alert.

Each detector exposes the numbers behind its score in `DetectorScore.details`; this module turns
them into an `Explanation` a person can check against the line. The first line of every text
says what the model saw (it is what an event's body quotes); the lines after it add the detail:

- DeepLog / LogAnomaly (any next-template model): the templates it expected there, with their
  probabilities, and the one that came (id and text).
- Isolation Forest: the features furthest outside their training range, with the values and
  the range (`profile["feature_ranges"]`, written at training); with every feature inside its
  range, the ones nearest the edges of their ranges: the combination that is unusual.
- LSTM autoencoder: the position of the window it rebuilt worst, how many lines back, and that
  line's template.
- LogBERT: the masked lines it could not predict from their neighbours and their templates, or
  how far the window lies from the training centre.
- AutoLog: the entry of the window's vector it rebuilt worst: a template's count, a level's
  count, or another model's score.
- Any other model that fired: its score against its threshold (`_plain`), never less.

A session verdict (`explain_session`) is explained the same way, in the terms of the session's
lines: DeepLog where it first went wrong (the templates it expected there, and the one that came
or that the session stopped), the LSTM-AE the line ending the window it rebuilt worst and that
line's template, LogBERT its missed lines, the novelty rule the lines never seen in training,
and the set rule that these templates never made up a training session together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from agent.detector_words import RULES, found_by, model_name
from agent.features import FEATURE_NAMES
from agent.types import DetectorScore, Explanation, ExplanationKind, Level, LineContext
from agent.wording import clip, plural

MAX_FEATURES = 3  # features quoted per Isolation Forest alert
MAX_NAMED = 3  # templates named on an explanation's first line (expected ones, missed lines)
MAX_LISTED = 5  # ... and in its detail lines and facts

# How each feature reads to a person (the value as stored, then as said).
_FEATURE_TEXT = {
    "template_token": "template",
    "template_log_freq": "template frequency (log10 of its share of training lines)",
    "level": "level",
    "hour_of_day": "hour of day (UTC)",
    "day_of_week": "day of week (0 = Monday)",
    "msg_length": "message length in characters (to a quarter octave)",
    "param_count": "parameters in the message",
    "template_freq_window": "lines of this template in the last minute",
    "burst_ratio": "this template's lines in the last minute over its training mean",
    "level_ratio": "share of WARN-or-worse lines in the last minute",
    "distinct_templates_window": "distinct templates in the last minute",
    "new_template": "template never seen in training",
    "transition_prob": "P(this template | the previous one) in training",
}
# A token id is a name, not a magnitude: "outside its range" says nothing about it.
_NOT_A_MAGNITUDE = frozenset({"template_token"})
# A never-seen line's features in its own words. Every new template is the one unknown token, so
# its window count is of never-seen lines; its frequency is a floor and its burst ratio the same
# count again (a never-seen template has no training mean): "never seen" says both.
_NEW_LINE_TEXT = {"template_freq_window": ("never-seen lines in the last minute", " lines of one template")}
_SAID_BY_NEW = frozenset({"template_log_freq", "burst_ratio"})
_NEW = FEATURE_NAMES.index("new_template")


def _level_name(x: float) -> str:
    try:
        return Level(round(x)).name
    except ValueError:
        return _num(x)


# Values said in their own units: a level by its name ("FATAL", not 7), a length in whole characters.
_SAY_VALUE: dict[str, Callable[[float], str]] = {"level": _level_name, "msg_length": lambda x: f"{x:,.0f}"}
# Sequence models whose details carry the templates they expected next.
NEXT_TEMPLATE_TYPES = frozenset({"deeplog", "loganomaly"})


def _num(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def vs(score: float, threshold: float, digits: int = 2) -> str:
    """"7.452 > threshold 7.439": a score past its threshold, with as many decimals as it takes
    for the two to differ (a score just past it must not read "7.44 > 7.44")."""
    a = b = ""
    for d in range(digits, 7):
        a, b = f"{score:,.{d}f}", f"{threshold:,.{d}f}"
        if a != b:
            break
    return f"{a} > threshold {b}"


def past(score: DetectorScore) -> str:
    """How far a detector's score lies past its threshold, in its own units (`vs`)."""
    return vs(score.score, score.threshold, 3 if abs(score.threshold) < 1 else 2)


def raised_by(scores: Sequence[DetectorScore], explanations: Sequence[Explanation] = (),
              types: Mapping[str, str] | None = None) -> str:
    """Which detectors raised an alert, for its header, in words: what each found
    (`agent.detector_words`: "raised by a message never seen in training and an unusual order of
    events (DeepLog)"). A model's score past its threshold is said only when no explanation of it
    follows (the explanation says it; the ensemble's combined score is in no unit a person
    knows). Models outside the vote (explanations with `in_vote` False) are named apart: they
    noticed it but did not raise it."""
    facts = [dict(e.facts) for e in explanations]
    witnesses = {f.get("detector") for f in facts if f.get("in_vote") is False}
    explained = {f.get("detector") for f in facts}

    def said(s: DetectorScore) -> str:
        words = found_by(s.detector, types)
        if (types or {}).get(s.detector, s.detector) in RULES or s.detector in explained:
            return words
        return f"{words}: {past(s)}"

    voted = [said(s) for s in scores if s.fired and s.detector not in witnesses]
    outside = [said(s) for s in scores if s.fired and s.detector in witnesses]
    head = f"raised by {_listing(voted)}" if voted else "no voting model fired: raised by the facts below"
    return head + (f"; also noticed by {'a model that does' if len(outside) == 1 else 'models that do'} not vote "
                   f"at this sensitivity: {_listing(outside)}" if outside else "")


def _listing(items: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


_SAID_ELSEWHERE = frozenset({"novelty", "novel_set"})  # a line's alert by these is its NEW_TEMPLATE fact


def _back(n: int) -> str:
    return "this line" if n == 0 else f"{n} line{'s' if n != 1 else ''} back"


class ModelExplainer:
    """Explanations of model alerts; `label(template_id)` ("#12 [text]") and `template_of(token)`
    come from the line explainer (template text and the token → template map)."""

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

    def _named(self, detector: str) -> str:
        """A detector as a person names it ("DeepLog", `agent.detector_words`)."""
        return model_name(detector, self._types)

    def _who(self, score: DetectorScore) -> str:
        """The detector of `score` as a person names it."""
        return model_name(score.detector, self._types)

    def kind_of(self, detector: str) -> str:
        """The model type of a detector (its name when the bundle does not say)."""
        return self._types.get(detector, detector)

    def _fired(self, scores: Sequence[DetectorScore]) -> Iterator[tuple[DetectorScore, dict[str, object], str]]:
        """The fired scores with their details and model type: what every explanation reads."""
        for score in scores:
            if score.fired:
                yield score, dict(score.details), self.kind_of(score.detector)

    # ---- naming what a model saw

    def _token_label(self, token: int) -> str:
        template = self._template_of(token) if token else None
        if template is not None:
            return self._label(template)
        return "a template never seen in training" if not token else f"token {token} (no template)"

    def _token_fact(self, token: int) -> dict[str, object]:
        template = self._template_of(token) if token else None
        return {"token": token, "template_id": template, "template": self._label(template) if template is not None
                else None}

    # ---- sessions

    def explain_session(self, tokens: Sequence[int], scores: Sequence[DetectorScore]) -> list[Explanation]:
        """One explanation per fired detector of a session verdict, in the terms of its lines."""
        out: list[Explanation] = []
        for score, details, kind in self._fired(scores):
            if kind in NEXT_TEMPLATE_TYPES:  # LogAnomaly is judged by DeepLog's rules
                out.append(self._deeplog_session(tokens, score, details))
            elif kind == "lstm_ae":
                out.append(self._lstm_ae_session(tokens, score, details))
            elif kind == "logbert":
                out.append(self._logbert(score, details, self._session_lines(tokens, details), "this session"))
            elif kind == "novelty":
                out.append(self._novelty_session(tokens, score))
            elif kind == "novel_set":
                out.append(self._novel_set_session(tokens, score))
            elif kind == "autolog":
                out.append(self._autolog_session(tokens, score, details))
            elif kind == "supervised_lstm":
                out.append(self._supervised_session(tokens, score, details))
            else:
                out.append(self._plain(score, "this session"))
        return out

    def _supervised_session(self, tokens: Sequence[int], score: DetectorScore,
                            details: dict[str, object]) -> Explanation:
        """The window the classifier found most like the labelled anomalies, and its last line's template."""
        where = details.get("position")
        text = (f"LIKE A LABELLED ANOMALY: {self._who(score)} gives this session's most anomalous window "
                f"probability {score.score:.2f} (threshold {score.threshold:.2f})")
        facts: list[tuple[str, object]] = [("detector", score.detector), ("score", score.score),
                                           ("threshold", score.threshold)]
        if isinstance(where, int) and 0 <= where < len(tokens):
            text = (f"LIKE A LABELLED ANOMALY: {self._who(score)} finds the window ending at line {where + 1}, "
                    f"{self._token_label(tokens[where])}, most like the labelled anomalies (probability "
                    f"{vs(score.score, score.threshold)})\n"
                    f"That window ends at line {where + 1}, {self._token_label(tokens[where])}")
            facts += [("window_end_line", where + 1),
                      ("template", self._template_of(tokens[where]) if tokens[where] else None)]
        return Explanation(ExplanationKind.MODEL_OUTLIER, text, tuple(facts))

    def _autolog_session(self, tokens: Sequence[int], score: DetectorScore, details: dict[str, object]) -> Explanation:
        """The counts it could not rebuild: the unseen lines, and its input models' scaled scores
        (z: 0 = the normal median, 1 = the normal p99)."""
        inputs = {k.removeprefix("input_"): float(v) for k, v in details.items()
                  if k.startswith("input_") and isinstance(v, (int, float))}
        unknown = sum(1 for t in tokens if t == 0)
        said = "; ".join(f"{self._named(name)} at {z:.1f}× its normal p99 excess" for name, z in
                         sorted(inputs.items(), key=lambda kv: -kv[1]) if z > 1.0)
        worst = self._autolog_worst(details, "this session")
        text = (f"COUNT RECONSTRUCTION: {self._who(score)} could not rebuild this session's template and level "
                f"counts{': worst ' + worst if worst else ''} ({len(tokens)} lines, {unknown} of a template "
                f"never seen in training; error {vs(score.score, score.threshold)})")
        if said:
            text += f"\nInputs over normal: {said}"
        return Explanation(ExplanationKind.MODEL_OUTLIER, text, (
            ("detector", score.detector), ("score", score.score), ("threshold", score.threshold),
            ("unknown_lines", unknown), ("inputs", inputs), ("worst_entry", details.get("worst_entry")),
            ("worst_value", details.get("worst_value"))))

    def _deeplog_session(self, tokens: Sequence[int], score: DetectorScore, details: dict[str, object]) -> Explanation:
        facts: list[tuple[str, object]] = [("detector", score.detector), ("score", score.score),
                                           ("threshold", score.threshold), ("misses", details.get("misses")),
                                           ("positions", details.get("positions"))]
        head = (f"SEQUENCE ANOMALY: {self._who(score)} did not expect {details.get('misses')} of the "
                f"{details.get('positions')} steps of this session (threshold {score.threshold:g})")
        where, actual, end = details.get("first_miss"), details.get("actual"), details.get("end")
        expected = _pairs(details.get("expected"))
        if not isinstance(where, int) or not isinstance(actual, int):
            return Explanation(ExplanationKind.SEQUENCE, head, tuple(facts))

        def said(token: int) -> str:
            return "the end of the session" if token == end else self._token_label(token)

        came = "the session ended" if actual == end else f"line {where + 1} was {said(actual)}"
        first = ", ".join(f"{said(t)} {p:.0%}" for t, p in expected[:MAX_NAMED])
        listing = ", ".join(f"{said(t)} {p:.0%}" for t, p in expected[:MAX_LISTED])
        facts += [("first_miss", where), ("actual_template", None if actual == end else self._template_of(actual)),
                  ("expected_templates", [self._template_of(t) for t, _ in expected[:MAX_LISTED]]),
                  ("expected", [{**self._token_fact(t), "probability": p} for t, p in expected[:MAX_LISTED]])]
        head = (f"SEQUENCE ANOMALY: {self._who(score)} did not expect {details.get('misses')} of the "
                f"{details.get('positions')} steps of this session; first at step {where + 1}: expected {first}, "
                f"but {came} (threshold {score.threshold:g} misses)")
        text = f"{head}\nFirst unexpected: {came}\nExpected there: {listing}"
        return Explanation(ExplanationKind.SEQUENCE, text, tuple(facts))

    def _lstm_ae_session(self, tokens: Sequence[int], score: DetectorScore, details: dict[str, object]) -> Explanation:
        worst = details.get("worst_position")
        facts: list[tuple[str, object]] = [("detector", score.detector), ("score", score.score),
                                           ("threshold", score.threshold)]
        head = (f"SEQUENCE RECONSTRUCTION: {self._who(score)} could not rebuild this session of {len(tokens)} lines "
                f"(worst window error {vs(score.score, score.threshold)})")
        if isinstance(worst, int) and 0 <= worst < len(tokens):
            template = self._template_of(tokens[worst]) if tokens[worst] else None
            facts += [("worst_line", worst + 1), ("worst_template", template)]
            label = self._token_label(tokens[worst])
            head = (f"SEQUENCE RECONSTRUCTION: {self._who(score)} rebuilt worst the window ending at line {worst + 1} "
                    f"of {len(tokens)}, {label} (error {vs(score.score, score.threshold)})"
                    f"\nWorst rebuilt: the window ending at line {worst + 1}, {label}")
        return Explanation(ExplanationKind.SEQUENCE, head, tuple(facts))

    def _session_lines(self, tokens: Sequence[int], details: dict[str, object]) -> list[tuple[str, int, int]]:
        """LogBERT's missed positions as (where, line number, token) in a session's worst chunk."""
        start = details.get("chunk_start")
        offset = start if isinstance(start, int) else 0
        out = []
        for p in _ints(details.get("missed_positions")):
            k = offset + p
            if 0 <= k < len(tokens):
                out.append((f"line {k + 1}", k + 1, int(tokens[k])))
        return out

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

    # ---- lines

    def explain(self, ctx: LineContext, scores: Sequence[DetectorScore]) -> list[Explanation]:
        """One explanation per fired model, read by its type (a next-template model's is the
        line explainer's SEQUENCE fact, `deeplog_line`); a model of no known type says its score."""
        out: list[Explanation] = []
        for score in scores:
            if not score.fired:
                continue
            kind = self._types.get(score.detector, score.detector)
            if kind in _SAID_ELSEWHERE:
                continue  # the NEW_TEMPLATE fact says it
            details = dict(score.details)
            found: Explanation | None = None
            if kind == "lstm_ae":
                found = self._lstm_ae(ctx, score, details)
            elif kind == "logbert":
                found = self._logbert(score, details, self._line_lines(ctx, details), "this entity's recent lines")
            elif kind == "isolation_forest":
                found = self._isolation_forest(ctx, score)
            elif kind == "autolog":
                found = self._autolog(ctx, score, details)
            elif kind == "supervised_lstm":
                size = details.get("window")
                lines = min(size, len(ctx.history)) if isinstance(size, int) else len(ctx.history)
                found = Explanation(ExplanationKind.MODEL_OUTLIER, (
                    f"LIKE A LABELLED ANOMALY: {self._who(score)} finds the last {lines} lines of this entity, ending "
                    f"at this one, like the labelled anomalies (probability {past(score)})"),
                    (("detector", score.detector), ("score", score.score), ("threshold", score.threshold),
                     ("window_lines", lines)))
            elif _pairs(details.get("expected")) or kind in ("novelty", "novel_set"):
                continue  # the SEQUENCE fact (`deeplog_line`) or the NEW_TEMPLATE fact says it
            if found is None:
                found = self._plain(score, "this line")
            out.append(found)
        return out

    def deeplog_line(self, score: DetectorScore, actual: int, actual_text: str, previous: int | None,
                     is_new: bool = False) -> tuple[str, list[tuple[str, object]]] | None:
        """A next-template model's alert on a line: the templates it expected (with their
        probabilities) and the one that came, as the first lines of the SEQUENCE text, and its
        facts; None when its details name no expected template."""
        details = dict(score.details)
        expected = _pairs(details.get("expected"))
        if not expected:
            return None
        end = details.get("end")

        def said(token: int) -> str:
            return "the end of a session" if token == end else self._token_label(token)

        named = [(self._template_of(t), t, p) for t, p in expected[:MAX_LISTED]]
        first = ", ".join(f"{said(t)} {p:.0%}" for _, t, p in named[:MAX_NAMED])
        prob = details.get("actual_prob")
        rank = details.get("rank")
        how = []
        if isinstance(prob, (int, float)):
            how.append(f"P {float(prob):.2g}" if prob > 0 else "P < 0.0001")
        if isinstance(rank, (int, float)):
            how.append(f"rank {_num(float(rank))} > threshold {_num(score.threshold)}")
        else:
            how.append(past(score))
        this = f"{'new template ' if is_new else ''}#{actual} [{_short(actual_text)}]"
        listing = ", ".join(f"{said(t)} {p:.0%}" for _, t, p in named)
        text = (f"SEQUENCE ANOMALY: {self._who(score)} expected {first}; got {this} ({', '.join(how)})\n"
                f"Expected: {listing}")
        facts: list[tuple[str, object]] = [
            ("detector", score.detector), ("score", score.score), ("threshold", score.threshold),
            ("expected", [[t, p] for t, _, p in named]),  # template ids and probabilities
            ("expected_templates", [{**self._token_fact(tok), "said": said(tok), "probability": p}
                                    for _, tok, p in named]),
            ("actual", actual), ("actual_template", actual_text[:300]), ("actual_prob", prob), ("rank", rank),
            ("previous", previous),
        ]
        return text, facts

    # ---- per model

    def _plain(self, score: DetectorScore, what: str) -> Explanation:
        """A model whose details this module cannot read: its score against its threshold."""
        return Explanation(ExplanationKind.MODEL_OUTLIER,
                           f"MODEL SCORE: {self._who(score)} scores {what} {past(score)}",
                           (("detector", score.detector), ("score", score.score), ("threshold", score.threshold)))

    def _isolation_forest(self, ctx: LineContext, score: DetectorScore) -> Explanation | None:
        row = [float(v) for v in ctx.features]
        if not self._ranges or len(row) != len(FEATURE_NAMES):
            return None
        outside: list[tuple[float, int, float, float, float]] = []
        inside: list[tuple[float, int, float, float, float]] = []
        new = row[_NEW] > 0.5
        for i, value in enumerate(row):
            name = FEATURE_NAMES[i]
            if i not in self._ranges or name in _NOT_A_MAGNITUDE or (new and name in _SAID_BY_NEW):
                continue
            low, high = self._ranges[i]
            span = max(high - low, 1e-9 if high != low else 1.0)
            if value > high:
                outside.append(((value - high) / span, i, value, low, high))
            elif value < low:
                outside.append(((low - value) / span, i, value, low, high))
            elif high > low:
                # How near the edge of its range (0 = on it): the rare corners of a combination.
                inside.append((min(value - low, high - value) / span, i, value, low, high))
        outside.sort(key=lambda o: -o[0])
        inside.sort(key=lambda o: o[0])
        margin = f"score {vs(score.score, score.threshold, 3)}"
        facts: list[tuple[str, object]] = [("detector", score.detector), ("score", score.score),
                                           ("threshold", score.threshold)]

        def said(picked: list[tuple[float, int, float, float, float]]) -> tuple[str, list[dict[str, object]]]:
            parts, listed = [], []
            for _, i, value, low, high in picked[:MAX_FEATURES]:
                name = FEATURE_NAMES[i]
                if i == _NEW and value > high:
                    parts.append("a template never seen in training")
                else:
                    what, unit = (_NEW_LINE_TEXT.get(name) if new else None) or (_FEATURE_TEXT[name], "")
                    say = _SAY_VALUE.get(name, _num)
                    parts.append(f"{what} = {say(value)} (training {say(low)} – {say(high)}{unit})")
                listed.append({"feature": name, "value": value, "min": low, "max": high})
            return "; ".join(parts), listed

        if not outside:
            # Every feature inside its range: the combination is what is rare; the features at
            # the edges of their ranges are its unusual corners.
            text, listed = said(inside)
            facts += [("outside_range", []), ("nearest_edges", listed)]
            what = f"an unusual combination of {text}" if text else "an unusual combination of ordinary values"
            return Explanation(ExplanationKind.MODEL_OUTLIER,
                               f"ISOLATION FOREST: no single feature outside its training range; {what} ({margin})",
                               tuple(facts))
        text, listed = said(outside)
        facts.append(("outside_range", listed))
        return Explanation(ExplanationKind.MODEL_OUTLIER, f"ISOLATION FOREST: {text} ({margin})", tuple(facts))

    def _lstm_ae(self, ctx: LineContext, score: DetectorScore, details: dict[str, object]) -> Explanation:
        size = details.get("window")
        window = size if isinstance(size, int) else 0
        raw = details.get("worst_position")
        facts: list[tuple[str, object]] = [("detector", score.detector), ("score", score.score),
                                           ("threshold", score.threshold)]
        lines = min(window, len(ctx.history)) or window
        margin = f"error {vs(score.score, score.threshold)}"
        # (one line: the entity's first since it went idle, as BGL's stream after a quiet hour)
        span = f"the last {lines} lines of this entity" if lines != 1 else "this entity's one line since it was idle"
        head = f"SEQUENCE RECONSTRUCTION: {self._who(score)} could not rebuild {span} ({margin})"
        if isinstance(raw, int) and window:
            back = window - 1 - raw  # 0 = this line
            history = ctx.history
            token = history[len(history) - 1 - back] if 0 <= back < len(history) else None
            template = self._template_of(token) if token else None
            where = "this line" if back == 0 else f"{back} line{'s' if back != 1 else ''} before this one"
            label = self._label(template) if template is not None else "a template never seen in training"
            facts += [("worst_lines_back", back), ("worst_template", template), ("window_lines", lines)]
            return Explanation(ExplanationKind.SEQUENCE,
                               f"SEQUENCE RECONSTRUCTION: {self._who(score)} rebuilt worst {where}, {label}, of "
                               f"{span} ({margin})\nWorst rebuilt: {where}, {label}",
                               tuple(facts))
        return Explanation(ExplanationKind.SEQUENCE, head, tuple(facts))

    def _autolog_worst(self, details: dict[str, object], where: str) -> str:
        what, value = details.get("worst_entry"), details.get("worst_value")
        if what == "template_token" and isinstance(value, int):
            template = self._template_of(value) if value else None
            label = self._label(template) if template is not None else "templates never seen in training"
            return f"the count of {label} in {where}"
        if what == "level" and isinstance(value, int):
            return f"the count of {Level(value).name} lines in {where}"
        if what == "input":
            return f"{value}'s score (scaled to its normal spread: {details.get(f'input_{value}')})"
        return ""

    def _autolog(self, ctx: LineContext, score: DetectorScore, details: dict[str, object]) -> Explanation:
        size = details.get("window")
        lines = min(size, len(ctx.history)) if isinstance(size, int) else len(ctx.history)
        facts: list[tuple[str, object]] = [("detector", score.detector), ("score", score.score),
                                           ("threshold", score.threshold), *details.items()]
        said = self._autolog_worst(details, "them")
        margin = f"error {vs(score.score, score.threshold, 3)}"
        if said:
            text = (f"WINDOW PROFILE: {self._who(score)} rebuilt worst {said}, of what the last {lines} lines of "
                    f"this entity hold ({margin})\nRebuilt worst: {said}")
        else:
            text = (f"WINDOW PROFILE: {self._who(score)} could not rebuild what the last {lines} lines of this "
                    f"entity hold ({margin})")
        return Explanation(ExplanationKind.MODEL_OUTLIER, text, tuple(facts))

    def _line_lines(self, ctx: LineContext, details: dict[str, object]) -> list[tuple[str, int, int]]:
        """LogBERT's missed positions as (where, lines back, token) in the window ending at this
        line (its last `positions` lines of the entity's history), this line first."""
        size = details.get("positions")
        history = ctx.history
        n = min(size, len(history)) if isinstance(size, int) else len(history)
        out = []
        for p in _ints(details.get("missed_positions")):
            back = n - 1 - p
            if 0 <= back < len(history):
                out.append((_back(back), back, int(history[len(history) - 1 - back])))
        out.sort(key=lambda m: m[1])
        return out

    def _logbert(self, score: DetectorScore, details: dict[str, object],
                 missed: Sequence[tuple[str, int, int]], where: str) -> Explanation:
        """The masked lines of `where` it could not predict (`missed`: where, a number, the
        token), or the distance of the window from anything in training."""
        facts: list[tuple[str, object]] = [("detector", score.detector), ("score", score.score),
                                           ("threshold", score.threshold), *details.items()]
        misses, positions = details.get("misses"), details.get("positions")
        margin = f"score {vs(score.score, score.threshold)}"
        if details.get("path") != "distance" and isinstance(misses, int) and isinstance(positions, int) and misses:
            # By template, nearest line first: "this line: #3 [...] (+54 more lines of it)".
            groups: dict[int, list[str]] = {}
            for w, _, tok in missed:
                groups.setdefault(tok, []).append(w)
            said = [f"{ws[0]}: {self._token_label(tok)}" + (f" (+{len(ws) - 1} more line{'s' if len(ws) > 2 else ''}"
                                                            " of it)" if len(ws) > 1 else "")
                    for tok, ws in groups.items()]
            more = f"; +{plural(len(said) - MAX_NAMED, 'more template')}" if len(said) > MAX_NAMED else ""
            named = f": {'; '.join(said[:MAX_NAMED])}{more}" if said else ""
            text = (f"SEQUENCE CONTEXT: {self._who(score)} could not predict {misses} of {positions} masked lines "
                    f"of {where} from their neighbours{named} ({margin})")
            if len(said) > MAX_NAMED:
                text += "\nMissed: " + "; ".join(said[:MAX_LISTED * 2])
            facts.append(("missed", [{"where": w, **self._token_fact(tok)} for w, _, tok in missed[:MAX_LISTED * 2]]))
            facts.append(("missed_templates", [{**self._token_fact(tok), "lines": len(ws), "nearest": ws[0]}
                                               for tok, ws in list(groups.items())[:MAX_LISTED * 2]]))
        else:
            text = (f"SEQUENCE CONTEXT: {self._who(score)} places {where} far from anything in training "
                    f"({margin})")
        return Explanation(ExplanationKind.MODEL_OUTLIER, text, tuple(facts))


def _short(text: str, limit: int = 40) -> str:
    return clip(text, limit)


def _ints(raw: object) -> list[int]:
    return [int(p) for p in raw if isinstance(p, int)] if isinstance(raw, (list, tuple)) else []


def _pairs(raw: object) -> list[tuple[int, float]]:
    """[(token, probability)] from a detector's `expected` detail ([token, prob] pairs or
    {"token": t, "prob"|"probability": p} objects); [] when it holds none."""
    pairs: list[tuple[int, float]] = []
    if isinstance(raw, (list, tuple)):
        for item in raw:
            if isinstance(item, dict):
                token = item.get("token", item.get("id"))
                prob = item.get("prob", item.get("probability", item.get("p")))
            elif isinstance(item, (list, tuple)) and len(item) >= 2:
                token, prob = item[0], item[1]
            else:
                continue
            if isinstance(token, (int, float)) and isinstance(prob, (int, float)):
                pairs.append((int(token), float(prob)))
    return pairs
