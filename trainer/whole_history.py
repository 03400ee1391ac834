"""The served templates cover the whole history, not only the part the models learned from.

Training holds back the last part of the history to set thresholds and judge the vote (data the
models did not see, the way they will meet tomorrow's logs). That split is right for calibration
but wrong for what the bundle *serves* as "seen in training": a message the user's history holds
in its last fifth is not new, and flagging it as "a template never seen in training" is a false
alarm a person sees at once (Spark's task-commit lines, first logged in the held-back part, were
6 of every 100 scanned lines).

So, after calibration, the frozen miner goes on learning the held-back messages it does not
match; the templates this adds are served as known (`vocab.json` `known_templates`: the novelty
rule and the explanation facts treat them as seen) while the learned models, which never saw
them, keep reading them as UNK (token 0). A template the history check sets aside as an incident
stays out, whichever part of the history it is in.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.templates import TemplateMiner


def extend_miner(miner: TemplateMiner, messages: Iterable[str]) -> TemplateMiner:
    """A copy of the frozen `miner` that also learnt the `messages` it does not match."""
    served = TemplateMiner.from_state(miner.to_state())
    for message in messages:
        if served.match(message) is None:
            served.add(message)
    served.consolidate()
    served.take_merges()
    return served


def served_only(miner: TemplateMiner, served: TemplateMiner, suspect: Iterable[int] = ()) -> frozenset[int]:
    """The templates `served` knows that the training `miner` does not (merged ids resolved),
    less the `suspect` ones (held back as incidents)."""
    trained = {served.resolve(t) for t in miner.templates()}
    out = set(served.templates()) - trained - set(suspect)
    return frozenset(out)
