"""Small readers of the labelled data shared by several test modules."""

from __future__ import annotations

import re
from pathlib import Path

from agent.types import Level, ParsedLine, TemplatedLine

_VAR = re.compile(r"^(?=.*\d)\S+$")
_LEVELS = {"INFO": Level.INFO, "WARNING": Level.WARN, "ERROR": Level.ERROR, "FATAL": Level.FATAL}


def bgl_lines(path: Path, vocab: dict[str, int], known: set[int] | None) -> list[tuple[str, TemplatedLine]]:
    """BGL lines as (label, TemplatedLine), with a crude template (digit-bearing words are
    variables); `vocab` is shared across calls, `known` marks templates seen in training."""
    out = []
    for n, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
        parts = raw.split(" ", 9)
        if len(parts) < 10:
            continue
        words = parts[9].split()
        template = " ".join("<*>" if _VAR.match(w) else w for w in words)
        tid = vocab.setdefault(template, len(vocab) + 1)
        new = known is not None and tid not in known
        pl = ParsedLine(
            raw, parts[9], float(parts[1]), _LEVELS.get(parts[8], Level.UNKNOWN), parts[3], "bgl", n
        )
        params = tuple(w for w in words if _VAR.match(w))
        out.append(
            (parts[0], TemplatedLine(pl, tid, template, params, 0 if new else tid, new, float(parts[1])))
        )
    return out
