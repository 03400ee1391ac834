"""Which learned detectors earn a place in the vote: judged on held-back training data, no labels.

The vote is an OR: any voter that fires raises an alert. A learned detector therefore costs
every false alarm it raises where the plain rules are silent, and is worth only the anomalies it
catches that the rules miss. Both are measured at each served sensitivity on the second half of
the held-back training data (`judge` part; the first half set the thresholds, so the two do not
share data):

- **False alarms**: held-back data is normal by construction. A detector's false alarms are the
  held-back units (lines or sessions) it flags while no rule does. Allowed: the level's target
  false-positive rate times the units judged, rounded down — on a few hundred units at
  medium or low that is zero.
- **Evidence**: a level's budget must be visible on the judged units. Where ⌊rate × units⌋ = 0
  (fewer than ⌈1 / rate⌉ units: 1,000 at medium, 100 at high) the budget is zero false alarms,
  and zero proves nothing: on 100 lines a detector that raises false alarms at 2 %, twenty
  times medium's rate, raises none 13 % of the time, and one at medium's own rate 90 % of the
  time. Such a detector is left out of that level *for lack of evidence* (`Why.NO_EVIDENCE`)
  whatever it catches. On ⌈1 / rate⌉ units a detector at the level's rate is expected to raise
  one false alarm; zero then bounds the rate by 1 / units at 63 % confidence (a 95 % bound
  would need 3 / rate units, 3,000 at medium: more held-back data than most histories spare),
  so this is the least the data must show, not a proof.
- **What the rules miss**: pseudo-anomalies made from the same held-back units by perturbing
  them (Pseudo-anomaly / "synthetic outlier" validation): a session shuffled, two of its events
  swapped, one dropped, one repeated, a known event injected; a line moved elsewhere in the
  stream. Perturbations that reproduce a normal session are discarded; of the rest, those the
  rules already flag are set aside. A detector's catch rate is its share of the remaining ones.

Given labels (`train --labels`) and labelled anomalies in the judged half, those real anomalies
replace the pseudo-anomalies, and only the half's normal lines count for false alarms
(`trainer/judging.py`); the rule below is the same.

The three sensitivities are three operating points with a fixed meaning:

- **low** raises only what training never saw: the plain rules, and the facts where they raised
  no false alarm on the held-back data. Learned detectors score and explain there but do not
  vote (`QUIET_LEVEL`): the fewest alarms, at the cost of anomalies that lie only in the order or
  counts of known events.
- **medium** (the default) adds the learned detectors that earn a place within its budget,
  ⌊0.001 × units⌋ false alarms — so only where at least 1,000 units were judged.
- **high** adds those that earn a place within ⌊0.01 × units⌋, at their looser high thresholds:
  more recall for more alarms.

Where no learned detector earns a place at medium, low and medium are one point, and `train`
says so (`same_operating_points`).

A learned detector is kept at medium or high when the judged units can show the level's rate
(evidence, above), its false alarms are within the allowance, it catches
at least `MIN_CATCH` of what the rules miss, and its catch rate is at least `MIN_LIFT` times the
rate at which it fires on normal data (it separates, it does not just fire often). Kept
detectors join greedily, most catches first; one joins only while the vote's false alarms stay
within the allowance and it adds catches the vote did not have. So the vote, judged on the same
data, catches at least what its best admissible member catches at the same false-alarm budget.
The rules (`novelty`, `novel_set`) always vote.

Explanation facts that raise a line on their own (`Explainer.is_notable`: a rare template at
ERROR, a burst, an unusual severity) are judged as the pseudo-member `facts`, on false alarms
only (they name what they saw, so they need no pseudo-anomaly to prove themselves): they raise
alerts at a level only while their false alarms fit the allowance, and they count against the
allowance before any learned detector joins.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RULES = ("novelty", "novel_set")
FACTS = "facts"
MIN_CATCH = 0.05
MIN_LIFT = 5.0
SESSION_PERTURBATIONS = ("shuffle", "swap", "drop", "repeat", "inject")
QUIET_LEVEL = "low"  # the level at which no learned detector votes
QUIET_REASON = "learned detectors explain but do not vote at low (only what training never saw raises there)"


class Why:
    """Why a detector was kept or left out at a level: the code the bundle records beside the text."""

    KEPT = "kept"
    QUIET = "quiet_level"
    NOTHING_TO_ADD = "nothing_to_add"
    FALSE_ALARMS = "false_alarms"
    NO_EVIDENCE = "no_evidence"  # too few judged units to show the level's false-alarm rate
    FEW_CATCHES = "few_catches"
    NO_LIFT = "no_lift"
    VOTE_FALSE_ALARMS = "vote_false_alarms"
    ADDS_NOTHING = "adds_nothing"


def needed_units(target_fpr: float) -> int:
    """The fewest judged units on which a level's budget allows one false alarm: ⌈1 / rate⌉."""
    return math.ceil(1.0 / target_fpr - 1e-9) if target_fpr > 0 else 0


@dataclass(frozen=True)
class Judgement:
    """One learned detector at one sensitivity, on one kind of unit."""

    detector: str
    level: str
    unit: str  # "session" or "line"
    units: int  # held-back normal units judged
    false_alarms: int  # units it flags while no rule does
    allowed: int
    pseudo: int  # pseudo-anomalies the rules miss
    caught: int
    fire_rate: float
    kept: bool = False
    reason: str = ""
    why: str = ""  # a `Why` code
    needed: int = 0  # judged units the level's budget needs to allow one false alarm

    @property
    def catch_rate(self) -> float:
        """Share of the pseudo-anomalies the rules miss that this detector catches."""
        return self.caught / self.pseudo if self.pseudo else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The evidence as the manifest keeps it."""
        return {"unit": self.unit, "units": self.units, "false_alarms": self.false_alarms,
                "allowed": self.allowed, "pseudo_anomalies": self.pseudo, "caught": self.caught,
                "catch_rate": round(self.catch_rate, 4), "fire_rate": round(self.fire_rate, 5),
                "kept": self.kept, "reason": self.reason, "why": self.why, "needs_units": self.needed}


@dataclass(frozen=True)
class Fired:
    """Which detectors fired on each held-back normal unit and each pseudo-anomaly."""

    unit: str
    normal: Mapping[str, np.ndarray]  # detector -> bool per normal unit
    pseudo: Mapping[str, np.ndarray]  # detector -> bool per pseudo-anomaly
    extra: Mapping[str, Any] = field(default_factory=dict)


def _rule_union(table: Mapping[str, np.ndarray], size: int) -> np.ndarray:
    out = np.zeros(size, dtype=bool)
    for name in RULES:
        if name in table:
            out |= table[name]
    return out


def decide(fired: Fired, level: str, target_fpr: float) -> list[Judgement]:
    """The membership rule at one level (see the module docstring)."""
    names = [n for n in fired.normal if n not in RULES and n != FACTS]
    n_normal = len(next(iter(fired.normal.values()))) if fired.normal else 0
    n_pseudo = len(next(iter(fired.pseudo.values()))) if fired.pseudo else 0
    rules_normal = _rule_union(fired.normal, n_normal)
    missed = ~_rule_union(fired.pseudo, n_pseudo)
    allowed = math.floor(target_fpr * n_normal + 1e-9)
    needed = needed_units(target_fpr)
    alone: dict[str, Judgement] = {}
    for name in names:
        fa = fired.normal[name] & ~rules_normal
        caught = fired.pseudo[name] & missed
        alone[name] = Judgement(name, level, fired.unit, n_normal, int(fa.sum()), allowed, int(missed.sum()),
                                int(caught.sum()), float(fired.normal[name].mean()) if n_normal else 0.0,
                                needed=needed)
    out: dict[str, Judgement] = {}
    eligible: list[Judgement] = []
    for j in alone.values():
        if level == QUIET_LEVEL:
            out[j.detector] = _left(j, QUIET_REASON, Why.QUIET)
        elif j.false_alarms > j.allowed:
            out[j.detector] = _left(j, f"{j.false_alarms} false alarms on {j.units} held-back normal {j.unit}s "
                                       f"where the rules are silent (allowed {j.allowed} at {level})", Why.FALSE_ALARMS)
        elif j.allowed < 1:
            out[j.detector] = _left(j, no_evidence_reason(j.units, j.unit, level, target_fpr), Why.NO_EVIDENCE)
        elif j.pseudo == 0:
            out[j.detector] = _left(j, "no pseudo-anomaly escapes the rules here: nothing to add", Why.NOTHING_TO_ADD)
        elif j.catch_rate < MIN_CATCH:
            out[j.detector] = _left(j, f"catches {j.caught} of {j.pseudo} pseudo-anomalies the rules miss "
                                       f"({j.catch_rate:.1%} < {MIN_CATCH:.0%})", Why.FEW_CATCHES)
        elif j.catch_rate < MIN_LIFT * j.fire_rate:
            out[j.detector] = _left(j, f"catch rate {j.catch_rate:.1%} is under {MIN_LIFT:g}x its "
                                       f"{j.fire_rate:.1%} firing rate on normal data", Why.NO_LIFT)
        else:
            eligible.append(j)
    vote_fa = np.zeros(n_normal, dtype=bool)
    vote_caught = np.zeros(n_pseudo, dtype=bool)
    if FACTS in fired.normal:
        fa = fired.normal[FACTS] & ~rules_normal
        facts = Judgement(FACTS, level, fired.unit, n_normal, int(fa.sum()), allowed, 0, 0,
                          float(fired.normal[FACTS].mean()) if n_normal else 0.0, needed=needed)
        if facts.false_alarms > allowed:
            out[FACTS] = _left(facts, f"{facts.false_alarms} false alarms on {n_normal} held-back normal "
                                      f"{fired.unit}s where the rules are silent (allowed {allowed} at {level})",
                               Why.FALSE_ALARMS)
        else:  # facts name what they saw: kept on no false alarm, evidence or not (module docstring)
            vote_fa = fa
            out[FACTS] = _kept(facts, f"{facts.false_alarms} false alarms (allowed {allowed})")
        names = [*names, FACTS]
    for j in sorted(eligible, key=lambda x: (-x.caught, x.false_alarms, x.detector)):
        fa = vote_fa | (fired.normal[j.detector] & ~rules_normal)
        caught = vote_caught | (fired.pseudo[j.detector] & missed)
        if int(fa.sum()) > allowed:
            out[j.detector] = _left(j, f"with the members before it the vote would raise {int(fa.sum())} false "
                                       f"alarms (allowed {allowed})", Why.VOTE_FALSE_ALARMS)
        elif int(caught.sum()) == int(vote_caught.sum()):
            out[j.detector] = _left(j, "adds no catch the vote does not already have", Why.ADDS_NOTHING)
        else:
            vote_fa, vote_caught = fa, caught
            out[j.detector] = _kept(j, f"catches {j.caught} of {j.pseudo} pseudo-anomalies the rules miss with "
                                       f"{j.false_alarms} false alarms (allowed {j.allowed} on {j.units} "
                                       f"{j.unit}s)")
    return [out[n] for n in names]


def no_evidence_reason(units: int, unit: str, level: str, target_fpr: float) -> str:
    """Why `units` judged units cannot admit a learned detector at `level`."""
    return (f"left out for lack of evidence: {units:,} held-back {unit}s cannot show a false-alarm rate of "
            f"{target_fpr:g} (⌊{target_fpr:g} × {units:,}⌋ = 0 allowed; {level} needs ≥ "
            f"{needed_units(target_fpr):,} judged {unit}s)")


def _left(j: Judgement, reason: str, why: str) -> Judgement:
    return dataclasses.replace(j, kept=False, reason=reason, why=why)


def _kept(j: Judgement, reason: str) -> Judgement:
    return dataclasses.replace(j, kept=True, reason=reason, why=Why.KEPT)


# -- pseudo-anomalies -------------------------------------------------------------------------
def perturb_sessions(
    sessions: Sequence[Sequence[int]], known: set[tuple[int, ...]], tokens: Sequence[int], seed: int,
    per_session: int = 1, limit: int = 5000,
) -> tuple[list[list[int]], list[str]]:
    """Pseudo-anomalous sessions made from held-back normal ones; none equals a `known` session."""
    rng = np.random.default_rng(seed)
    out: list[list[int]] = []
    kinds: list[str] = []
    pool = [list(s) for s in sessions if len(s) >= 2]
    if not pool or not tokens:
        return out, kinds
    for s in pool:
        for _ in range(per_session):
            kind = SESSION_PERTURBATIONS[int(rng.integers(len(SESSION_PERTURBATIONS)))]
            p = _perturb(s, kind, rng, tokens)
            if p is not None and tuple(p) not in known:
                out.append(p)
                kinds.append(kind)
        if len(out) >= limit:
            break
    return out, kinds


def _perturb(s: list[int], kind: str, rng: np.random.Generator, tokens: Sequence[int]) -> list[int] | None:
    p = list(s)
    if kind == "shuffle":
        rng.shuffle(p)
    elif kind == "swap":
        i, j = (int(x) for x in rng.choice(len(p), 2, replace=False))
        p[i], p[j] = p[j], p[i]
    elif kind == "drop":
        del p[int(rng.integers(len(p)))]
    elif kind == "repeat":
        i = int(rng.integers(len(p)))
        p[i:i] = [p[i]] * 3
    else:  # inject a known event somewhere
        p.insert(int(rng.integers(len(p) + 1)), int(tokens[int(rng.integers(len(tokens)))]))
    return None if p == s else p


def relocate_lines(n: int, seed: int, share: float = 0.1, limit: int = 500) -> tuple[list[int], list[int]]:
    """A new order of `n` lines in which a sample of lines is moved to a random other position;
    returns (order, positions of the moved lines in the new order)."""
    rng = np.random.default_rng(seed)
    k = int(min(max(20, round(share * n)), limit, n // 4))
    if n < 8 or k == 0:
        return list(range(n)), []
    moved = set(int(i) for i in rng.choice(n, k, replace=False))
    rest = [i for i in range(n) if i not in moved]
    for i in sorted(moved):
        # far from where it was: at least a tenth of the stream away
        pos = int(rng.integers(len(rest) + 1))
        while abs(pos - i) < max(2, n // 10) and n > 20:
            pos = int(rng.integers(len(rest) + 1))
        rest.insert(pos, i)
    return rest, [k2 for k2, i in enumerate(rest) if i in moved]


# -- the record the bundle keeps --------------------------------------------------------------
def membership_section(judgements: Sequence[Judgement], learned: Sequence[str]) -> dict[str, Any]:
    """`manifest["ensemble"]["membership"]`: per learned detector, the levels it votes at and,
    per level, the evidence and the reason (kept only if every unit kind judged kept it)."""
    by_name: dict[str, dict[str, Any]] = {n: {"levels": [], "judged": {}} for n in learned}
    levels: dict[str, dict[str, list[Judgement]]] = {}
    for j in judgements:
        levels.setdefault(j.detector, {}).setdefault(j.level, []).append(j)
    for name in learned:
        for level, js in levels.get(name, {}).items():
            kept = all(j.kept for j in js)
            by_name[name]["judged"][level] = {
                "kept": kept,
                "reason": "; ".join(j.reason for j in js if j.kept == kept) or "kept",
                "evidence": [j.as_dict() for j in js],
            }
            if kept:
                by_name[name]["levels"].append(level)
        if not levels.get(name):
            by_name[name]["levels"] = ["low", "medium", "high"]  # nothing to judge on: keep (said so)
            by_name[name]["judged"] = {"all": {"kept": True, "reason": "no held-back data to judge on"}}
    return by_name


def left_out_lines(section: Mapping[str, Any]) -> list[str]:
    """One readable line per learned detector left out somewhere: the levels and why."""
    out: list[str] = []
    for name, m in section.items():
        reasons: dict[str, list[str]] = {}
        for level, j in m.get("judged", {}).items():
            if not j.get("kept", True):
                reasons.setdefault(j["reason"], []).append(level)
        if reasons:
            why = "; ".join(f"{'/'.join(levels)}: {reason}" for reason, levels in reasons.items())
            kept = ", ".join(m.get("levels", []))
            head = f"{name} votes at {kept} only; left out at" if kept else f"{name} left out of the vote at"
            out.append(f"{head} {why}")
    return out


def apply_membership(ensemble: dict[str, Any], judgements: Sequence[Judgement], facts: Mapping[str, Any]) -> list[str]:
    """Write the judgement into a `manifest["ensemble"]` section: each judged learned member gets
    the `levels` it votes at, and `membership` keeps the evidence and reasons. Returns one line
    per detector and level left out."""
    judged = {j.detector for j in judgements}
    learned = sorted(judged & (set(ensemble.get("members", {})) | {FACTS}))
    section = membership_section(judgements, learned)
    for name in learned:
        if name == FACTS:
            ensemble[FACTS] = {"levels": section[name]["levels"]}
        else:
            ensemble["members"][name]["levels"] = section[name]["levels"]
    ensemble["membership"] = {"rule": "trainer/membership.py", "judged_on": dict(facts), "detectors": section,
                              "no_evidence": no_evidence(judgements)}
    same = same_operating_points(ensemble)
    ensemble["same_operating_point"] = [list(levels) for levels, _ in same]
    budgets = {level: sorted({(j.unit, j.units, j.allowed) for j in judgements if j.level == level})
               for level in LEVELS}
    ensemble["budgets"] = {level: [{"unit": u, "units": n, "allowed": a} for u, n, a in b]
                           for level, b in budgets.items() if b}
    return (left_out_lines(section) + no_evidence_lines(ensemble["membership"]["no_evidence"])
            + [same_point_line(levels, voters) for levels, voters in same] + [operating_points_line(ensemble)])


def no_evidence(judgements: Sequence[Judgement]) -> dict[str, list[dict[str, Any]]]:
    """Per level, per kind of unit: the learned detectors left out for lack of evidence, and the
    units judged against the units the level needs."""
    out: dict[str, list[dict[str, Any]]] = {}
    for level in LEVELS:
        for unit in ("session", "line"):
            js = [j for j in judgements if j.level == level and j.unit == unit and j.why == Why.NO_EVIDENCE]
            if js:
                out.setdefault(level, []).append({"unit": unit, "units": js[0].units, "needs_units": js[0].needed,
                                                  "detectors": sorted(j.detector for j in js)})
    return out


def no_evidence_lines(section: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """`train`'s line per level: who was left out because the judged units cannot show its rate."""
    return [f"{level}: {', '.join(e['detectors'])} left out for lack of evidence ({e['units']:,} held-back "
            f"{e['unit']}s judged; a false-alarm rate at {level}'s budget shows only on ≥ {e['needs_units']:,})"
            for level, entries in section.items() for e in entries]


LEVELS = ("low", "medium", "high")


def voters_at(ensemble: Mapping[str, Any], level: str) -> frozenset[str]:
    """The members voting at `level` (no `levels`: every level), with `facts` when facts may raise a line there."""
    out = {name for name, m in ensemble.get("members", {}).items()
           if m.get("vote", True) and level in m.get("levels", LEVELS)}
    facts = ensemble.get(FACTS)
    if level in (facts.get("levels", ()) if isinstance(facts, Mapping) else LEVELS):  # no section: facts everywhere
        out.add(FACTS)
    return frozenset(out)


def same_operating_points(ensemble: Mapping[str, Any]) -> list[tuple[tuple[str, ...], frozenset[str]]]:
    """Runs of neighbouring sensitivities that serve one operating point: the same voters, and
    every voter a plain rule or the facts (whose thresholds do not move with the level). A learned
    voter's thresholds differ per level, so levels that share one are distinct points."""
    members = ensemble.get("members", {})

    def fixed(name: str) -> bool:
        return name == FACTS or members.get(name, {}).get("kind") == "rule"

    out: list[tuple[tuple[str, ...], frozenset[str]]] = []
    run: list[str] = []
    for level in LEVELS:
        voters = voters_at(ensemble, level)
        if run and voters == voters_at(ensemble, run[0]) and all(fixed(v) for v in voters):
            run.append(level)
            continue
        if len(run) > 1:
            out.append((tuple(run), voters_at(ensemble, run[0])))
        run = [level] if all(fixed(v) for v in voters) else []
    if len(run) > 1:
        out.append((tuple(run), voters_at(ensemble, run[0])))
    return out


def voter_label(name: str) -> str:
    """A voter's name as `train` prints it: the facts are no detector a user has heard of."""
    return "explanation facts" if name == FACTS else name


def same_point_line(levels: Sequence[str], voters: frozenset[str]) -> str:
    """`train`'s plain note that the data cannot tell these sensitivities apart."""
    judged = [level for level in levels if level != QUIET_LEVEL]
    why = (f"learned detectors never vote at {QUIET_LEVEL}, and none earned a place at {' or '.join(judged)}"
           if QUIET_LEVEL in levels else "no learned detector earned a place at any of them")
    vote = ", ".join(voter_label(v) for v in sorted(voters)) or "nobody"
    return (f"sensitivity {' and '.join(levels)} are ONE operating point on this data: the same vote "
            f"({vote}), whose rules do not depend on the level; {why} on the "
            "held-back data (train on more lines to separate them)")


def operating_points_line(ensemble: Mapping[str, Any]) -> str:
    """`train`'s one-line statement of what each sensitivity serves: its voters (beyond the
    level below) and the false alarms it was allowed on the held-back data."""
    parts: list[str] = []
    below: frozenset[str] = frozenset()
    for level in LEVELS:
        voters = voters_at(ensemble, level) - (set() if FACTS in ensemble else {FACTS})  # facts judge lines
        added, dropped = sorted(voters - below), sorted(below - voters)
        who = ", ".join(map(voter_label, added)) if not parts else " ".join(
            [*(f"+{voter_label(n)}" for n in added), *(f"-{voter_label(n)}" for n in dropped)]) or "the same voters"
        budget = "; ".join(f"{b['allowed']} false alarm{'' if b['allowed'] == 1 else 's'} allowed on "
                           f"{b['units']} held-back {b['unit']}s{'' if b['allowed'] else ': no evidence'}"
                           for b in ensemble.get("budgets", {}).get(level, []))
        note = " (learned detectors do not vote)" if level == QUIET_LEVEL else (f" ({budget})" if budget else "")
        parts.append(f"{level} = {who}{note}")
        below = voters
    return "operating points: " + "; ".join(parts)
