"""A never-seen line that repeats a known message but for a word says which message and which
word (issue 11: an alert a person can judge): OpenSSH_2k's history has "Disconnecting: Too many
authentication failures for root [preauth]" twice, too few for the miner to make the user a
parameter, and its scanned half "… for admin [preauth]"."""

from __future__ import annotations

from pathlib import Path

from loghub_halves import halves, scan_records

from agent.template_twins import TemplateTwins
from agent.types import Anomaly
from trainer.train import TrainOptions, train


def test_a_new_template_names_the_known_one_it_repeats(data_dir: Path, tmp_path: Path) -> None:
    """The "admin" line is still new, and its NEW TEMPLATE fact names the "root" template with
    its 2 training lines and the word that differs; a new line like no known one ("fatal: Write
    failed: Connection reset by peer") says only that it is new."""
    train_part, scan_part, _ = halves(data_dir, "OpenSSH")
    bundle = train(train_part, TrainOptions(output=tmp_path / "m", models=("novel_set",), progress=False)).bundle
    _, outputs = scan_records(bundle, scan_part)
    new = {o.line.line.message: o for o in outputs if isinstance(o, Anomaly) and o.line.is_new}
    admin = new["Disconnecting: Too many authentication failures for admin [preauth]"]
    (fact,) = [e for e in admin.explanations if e.kind.value == "NEW_TEMPLATE"]
    facts = dict(fact.facts)
    assert fact.text.startswith("NEW TEMPLATE: Never seen before in training data; the same words as #")
    assert fact.text.endswith('(2 training lines) but "admin" where it had "root"'), fact.text
    assert facts["like_count"] == 2 and facts["differs"] == [["admin", "root"]]
    (other,) = [e for e in new["fatal: Write failed: Connection reset by peer [preauth]"].explanations
                if e.kind.value == "NEW_TEMPLATE"]
    assert other.text == "NEW TEMPLATE: Never seen before in training data"


def test_twins_agree_on_three_words_and_differ_in_at_most_two() -> None:
    """Placeholders agree with anything; the punctuation a differing word shares with the known
    one is not said; a message that differs in as many words as it shares is no twin."""
    twins = TemplateTwins({
        1: {"template": "PM response took <NUM> ms (<NUM>, powerd)", "count": 7},
        2: {"template": "Started generating hashes for <*>", "count": 1},
    })
    found = twins.find("PM response took <NUM> ms (<NUM>, WeChat)")
    assert found is not None and (found.template_id, found.count, found.differs) == (1, 7, (("WeChat", "powerd"),))
    assert twins.find("Finished checking signatures for disk0") is None
    assert twins.find("PM response took") is None
