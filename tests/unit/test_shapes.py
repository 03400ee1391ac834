"""The shape lookup gives exactly what the frozen miner's `match` gives, and answers known shapes.

Real logs: a miner learns the first half of each Loghub 2k system (as training freezes it);
every line of the system is then matched by the miner and by the shape lookup. Edge cases of
the masks (a zero-padded hex value against a plain number, `0x`, the length of an address's
octets, digits left in a masked token, non-ASCII digits) are matched the same way.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from agent import shapes as shapes_module
from agent.shapes import ShapeMatcher, general_key, shape_key, zero_places
from agent.templates import MinerConfig, TemplateMatch, TemplateMiner, learn_templates

SYSTEMS = ("Android", "Apache", "BGL", "HDFS", "HPC", "Hadoop", "HealthApp", "Linux", "Mac", "OpenSSH",
           "OpenStack", "Proxifier", "Spark", "Windows", "Zookeeper")


def _contents(data_dir: Path, system: str) -> list[str]:
    path = data_dir / "loghub_2k" / system / f"{system}_2k.log_structured_corrected.csv"
    with path.open(newline="", encoding="utf-8") as f:
        return [row["Content"] for row in csv.DictReader(f)]


def _same(miner: TemplateMiner, messages: list[str], bare: list[str] | None = None) -> ShapeMatcher:
    """Match every message with `miner` and with a shape lookup over a copy of it (`match`,
    returned); and with another that leaves parameters unread (`lookup`): where that answers
    without them, the miner's template id and text (those messages go to `bare`), else its
    whole match."""
    shapes = ShapeMatcher(TemplateMiner.from_state(miner.to_state()))
    lazy = ShapeMatcher(TemplateMiner.from_state(miner.to_state()))  # the pipeline's short road's way
    for message in messages:
        expected = miner.match(message)
        found = lazy.lookup(message)
        if found is not None and found[2] is None:
            assert expected is not None and found[:2] == (expected.template_id, expected.template), message
            if bare is not None:
                bare.append(message)
        else:
            assert found == (None if expected is None else (expected.template_id, expected.template,
                                                             expected.params)), message
        assert shapes.match(message) == expected, message
        if expected is None:  # no template fits: its masking, as the online miner's `add` prepares it
            _, form = miner.match_form(message)
            masking = (form.tokens, form.masked, form.values, " ".join(form.masked))
            for matcher in (lazy, shapes):
                found = matcher.prepared(message)
                assert found == masking or (found is None and len(message) > shapes_module.MAX_SHAPE_CHARS), message
        assert shapes.prepared(message + " ") is None  # only for the message just looked up
    return shapes


def test_shapes_match_as_the_miner_on_real_logs(data_dir: Path) -> None:
    """Every line of 15 Loghub systems: the same template and params; most lines by shape."""
    hits = total = 0
    bare: list[str] = []  # answered without their parameters
    for system in SYSTEMS:
        path = data_dir / "loghub_2k" / system
        if not path.is_dir():
            continue
        lines = _contents(data_dir, system)
        miner = learn_templates(lines[: len(lines) // 2])
        shapes = _same(miner, lines, bare)
        hits, total = hits + shapes.hits, total + len(lines)
    assert total >= 20_000
    assert len(bare) > 0.6 * total, (len(bare), total)  # most lines: known shapes, parameters unread (69 %)
    assert hits > 0.5 * total, (hits, total)


TRAINING = [
    "load 12345678 done", "load 23456789 done", "at 0x1f ok", "at 0x2e ok", "from 1.2.3.4 port 80",
    "from 10.20.30.40 port 8080", "user u123 logged in", "user u456 logged in", "id abcdef12 seen",
    "id abcdef1 seen", "ver v.01234567 up", "ver v.12345678 up", "read /a/1/b now", "read /c/2/d now",
    "job 123e4567-e89b-12d3-a456-426614174000 ran", "job deadbeef-dead-beef-dead-beefdeadbeef ran",
    "got ٣٤ items", "got 34 items", "size=12 kb", "size=345 kb", "p /10.1.2.3:50010 q", "p /10.1.2.3:5 q",
]
VARIANTS = [
    "load 01234567 done", "load 00000000 done", "load 98765432 done", "load 0123456 done", "at 0x9 ok",
    "at 1x1f ok", "at 0X1F ok", "from 1234.2.3.4 port 80", "from 0.0.0.0 port 0", "from 99.2.3.4 port 99999",
    "user u124 logged in", "user u999 logged in", "user 124 logged in", "id abcdef99 seen", "id 0bcdef12 seen",
    "ver v.00000000 up", "ver w 01234567 up", "read /a/9/b now", "read /0/0/0 now", "job 023e4567-e89b-12d3-a456-"
    "426614174000 ran", "got ٣٥ items", "got 35 items", "size=0 kb", "size=9999 kb", "p /10.1.2.3:0 q",
    "p /0.0.0.0:50010 q", "p /1.1.1.1x:1 q", "x 0x0x0 y", "a.0x1 b", "_01234567 c", "-01234567 d",
]


def test_shapes_match_as_the_miner_on_the_edges_of_the_masks() -> None:
    """Digits whose value changes the masking (a leading 0, `0x`) or stays in the masked text."""
    miner = learn_templates(TRAINING)
    for first in (TRAINING + VARIANTS, VARIANTS + TRAINING, VARIANTS[::-1] + TRAINING[::-1]):
        _same(miner, first + first)  # the second pass meets every shape again


HEX_TRAINING = ["iar 00106570 dear 0245a8c4", "iar 00106574 dear 0245a8b0", "at 0x1b45e3a0 mask 0x10",
                "at 0x1b45e3b0 mask 0x1f", "w deadbeef 1", "w cafebabe 2", "k ab12 m", "k cd34 m"]
HEX_VARIANTS = [
    "iar 0010ffff dear 0245a8c4", "iar 0010ABCD dear 0a45a8c4", "iar 00106570 dear 1245a8c4", "iar abcdefab dear 0",
    "iar 1234567a dear 0245a8c4", "iar g0106570 dear 0245a8c4", "iar 00106570g dear 0245a8c4",
    "at 0x1b45e3a0 mask 0xff",
    "at 0xFFFF mask 0x1", "at 5x1b45e3a0 mask 0x10", "at 5x1b45e3b0 mask 0x10", "at 0xg mask 0x10", "w deadbeee 1",
    "w 0eadbeef 1", "k ab13 m", "k ef12 m", "iar 0245a8c4.0245a8c4 dear x", "iar a.0245a8c4 dear 0245a8c4",
    "id 123e4567-e89b-12d3-a456-426614174000 x", "id 123e4567-f89b-12d3-a456-426614174000 x",
    "id 123f4567-e89b-12d3-a456-426614174000 x", "blk_0245a8c4 q", "blk_0245a8c5 q", "/p/0245a8c4 r", "/p/0245a8c5 r",
]


def test_hex_letters_share_a_shape_and_match_as_the_miner() -> None:
    """Hex values that differ in their letters are looked up by one general shape (and answered
    as the miner does); runs that are no hex value (no digit, too short, next to another letter,
    not `0x`) keep their letters."""
    miner = learn_templates(HEX_TRAINING)
    for first in (HEX_TRAINING + HEX_VARIANTS, HEX_VARIANTS + HEX_TRAINING, HEX_VARIANTS[::-1]):
        _same(miner, first + first)
    # (other digits and letters: one shape; a leading zero or not: one entry each, as for digits;
    # a shape's first message is the miner's, its second learns it)
    hexes = ["iar 0245a8c4 dear 0245a8c4", "iar 0245b8f4 dear 01bbe8c4", "iar 0945F8C4 dear a245a8a4",
             "iar 0bcdef01 dear 1245a8a4", "at 0x1b45e3a0 mask 0x10", "at 0xcccccccc mask 0x20"]
    shapes = _same(miner, hexes)
    assert shapes.hits == 1 and len(shapes) == 2
    for message in hexes:  # every one answered by its shape now
        shapes.match(message)
    assert shapes.hits == 1 + len(hexes)
    assert general_key(shape_key("w deadbeef 1")) is None  # no digit: a word
    assert general_key(shape_key("k ab12 m")) is None  # too short
    assert general_key(shape_key("x g0245a8c4 y")) is None  # a letter before it
    assert general_key(shape_key("iar 0245a8c4")) == general_key(shape_key("iar a0000000")) == b"iar " + b"\xff" * 8
    assert general_key(shape_key("at 0X1F")) == b"at 0X\xff\xff"


def test_online_miner_learns_alike_from_the_shapes_masking(data_dir: Path) -> None:
    """The online miner, handed each never-seen message's masking by the shape lookup (as the
    pipeline does, through `add_parts`), learns exactly what it learns masking every message itself: the same
    templates, parameters and state (BGL's second half against a miner of its first)."""
    lines = _contents(data_dir, "BGL")
    frozen = learn_templates(lines[: len(lines) // 2])
    shapes = ShapeMatcher(TemplateMiner.from_state(frozen.to_state()))
    alone, handed = TemplateMiner(MinerConfig(content_ids=True)), TemplateMiner(MinerConfig(content_ids=True))
    prepared = 0
    for message in lines[len(lines) // 2 :] * 2:
        if shapes.lookup(message) is not None:
            continue
        masking = shapes.prepared(message)
        prepared += masking is not None
        assert TemplateMatch(*handed.add_parts(message, masking)) == alone.add(message), message
    assert prepared > 300
    assert handed.to_state() == alone.to_state()


def test_shape_key_and_zero_places() -> None:
    """The shape reads every ASCII digit as 0; only a hex value's possible first 0 is a place."""
    assert shape_key("blk_-123 at 10.2.3.4") == shape_key("blk_-987 at 99.8.7.6") == b"blk_-000 at 00.0.0.0"
    assert shape_key("got ٣٤") != shape_key("got ٣٥")
    assert zero_places("x 00000000 y") == (2,)  # a zero-padded hex value may start here
    assert zero_places("x 0x00 y") == (2,)
    assert zero_places("x 0000000 y") == ()  # seven digits: never hex
    assert zero_places("x.00000000 y") == ()  # after a dot: never a zero-padded hex value
    assert zero_places("a00000000 y") == ()  # after a letter: no mask starts here


def test_extra_delimiters_with_digits_leave_it_to_the_miner() -> None:
    """A delimiter holding a digit would split messages by their digits: no shapes then."""
    miner = learn_templates(["a1b 2 c", "a1b 3 c"], MinerConfig(extra_delimiters=("1",)))
    shapes = ShapeMatcher(TemplateMiner.from_state(miner.to_state()))
    for message in ("a1b 4 c", "a2b 4 c"):
        assert shapes.match(message) == miner.match(message)
    assert len(shapes) == 0


@pytest.mark.parametrize("message", ["", "   ", "no digits at all"])
def test_messages_without_digits(message: str) -> None:
    """Empty, blank and digit-free messages: one shape each, answered as the miner does."""
    miner = learn_templates(["no digits at all", "some digits 12"])
    _same(miner, [message, message])


def test_entries_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many shapes, and many zero flags of one shape: never more entries than the bound, and the
    answers stay the miner's after the cache is emptied."""
    monkeypatch.setattr(shapes_module, "MAX_SHAPES", 8)
    miner = learn_templates(TRAINING)
    messages = [f"load {'1' * n} done" for n in range(1, 20)]
    messages += [f"k {a}1234567 {b}1234567 {c}1234567" for a in "01" for b in "01" for c in "01"]
    long = ["load " + "1" * 600 + " done"]  # over MAX_SHAPE_CHARS: the miner answers it
    shapes = _same(miner, messages + long + messages + long)
    assert 0 < shapes._entries <= 8
