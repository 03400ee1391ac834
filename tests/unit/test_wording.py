"""Text cut to fit, as a person reads it: incident titles, the templates an explanation names and
the lines the summary quotes end at a word, never inside one ("… LOOKIN…", "last pro…") or
inside a placeholder ("exhausted, <NU…"), and never with two ellipses ("type ……")."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from agent.explain import short_template
from agent.incidents import title_from
from agent.render import _quote
from agent.wording import clip

SYSTEMS = ("Android", "Apache", "BGL", "HDFS", "HPC", "Hadoop", "HealthApp", "Linux", "Mac", "OpenSSH",
           "OpenStack", "Proxifier", "Spark", "Windows", "Zookeeper")


def _templates_and_lines(data_dir: Path) -> list[tuple[str, str, str]]:
    """(system, Loghub's template, the line's content) for every distinct template of the 15 systems."""
    out = []
    for system in SYSTEMS:
        path = data_dir / "loghub_2k" / system / f"{system}_2k.log_structured_corrected.csv"
        seen: set[str] = set()
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                if row["EventTemplate"] not in seen:
                    seen.add(row["EventTemplate"])
                    out.append((system, row["EventTemplate"], row["Content"]))
    return out


def _ends_at_a_word(shown: str, full: str, mark: str) -> bool:
    """True when `shown` is `full` on one line, or a cut of it ending in `mark` that ends at a
    word: between two word characters only when no boundary lay in the last half of what it
    kept (one long token is cut where it must be)."""
    full = " ".join(full.split())
    if shown == full:
        return True
    kept = shown.removesuffix(mark)
    if not shown.endswith(mark) or not full.startswith(kept) or not kept:
        return False
    split = re.match(r"\w", full[len(kept)]) and re.match(r"\w", kept[-1])
    return not split or not re.search(r"[\s/\\,;:|=.(\[{]", kept[len(kept) // 2:])


@pytest.fixture(scope="module")
def real(data_dir: Path) -> list[tuple[str, str, str]]:
    """Every distinct Loghub-2k template with one line of it."""
    return _templates_and_lines(data_dir)


def test_titles_end_at_a_word(real: list[tuple[str, str, str]]) -> None:
    """Every Loghub-2k template made into an incident title: a cut title ends at a word of the
    template (Zookeeper's "Notification: … (n.round), LOOKIN…" and "starting up and setting
    last pro…" did not) and never with a doubled ellipsis (BGL's "instead of type ……")."""
    cut = 0
    for system, template, _ in real:
        title = title_from(((1, template, 1),), new_only=False)
        masked = re.sub(r"(\.{2,}\s*)?…([\s…]*…)?", "…", re.sub(r"<[A-Z_*]*>", "…", " ".join(template.split())))
        assert _ends_at_a_word(title, masked.strip(" ,;:-="), "…"), (system, template, title)
        assert "……" not in title and "...…" not in title, (system, template, title)
        assert len(title) <= 60
        cut += title.endswith("…")
    assert cut >= 50


def test_named_templates_and_quoted_lines_end_at_a_word(real: list[tuple[str, str, str]]) -> None:
    """A template an explanation names ("#12 [text]", 40 characters) never ends inside a word or
    a placeholder (the demo's "[Database connection pool exhausted, <NU…]"), and a line the
    summary quotes ("started with …", 40 characters) ends at a word of the line."""
    cut_inside_mask = 0
    for system, template, content in real:
        ours = re.sub(r"<\*>", "<NUM>", template)  # our miner's placeholders are typed: <NUM>, <IP>, …
        named = short_template(ours, 40)
        assert not re.search(r"<[A-Z*]*…$", named), (system, named)
        assert _ends_at_a_word(named, ours, "…"), (system, ours, named)
        cut_inside_mask += bool(re.search(r"<[A-Z*]*$", " ".join(ours.split())[:39]))
        quoted = _quote(content, 40)
        assert _ends_at_a_word(quoted[1:-1], content, "..."), (system, content, quoted)
    assert cut_inside_mask > 0  # the data holds the case


def test_clip_keeps_short_text_and_cuts_long_tokens_hard() -> None:
    """Text that fits is only put on one line; a dotted name is cut at a dot; one long token with
    no boundary in reach is cut where it must be."""
    assert clip("a  b\nc", 10) == "a b c"
    assert clip("x" * 80, 20) == "x" * 19 + "…"
    assert clip("[com.apple.calendar.store.log.caldav.coredav] x", 20, "...") == "[com.apple..."
