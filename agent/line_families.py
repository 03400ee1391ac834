"""Families of lines that a person reads as one thing although they share no words.

A crash report dumps the machine's state as fields, one or a few per line: `r24=0x0ffea4c8
r25=0x00000003 …`, `fpr29=0xffffffff ffffffff …`, `dbcr0=0x0 dbsr=0x0 ccr0=0x40002000`,
`Machine State Register: 0x0002f900`, `minus normalized number..........0`, `lr:00004ad8
cr:48000084 …`. Each field line is a
template of its own (BGL has over a hundred), and a sample of a crash report holds a different
few each time, so the same failure (a compute node's kernel dying) shows up as a new template
every time it recurs. After masking their values such lines have almost no content words, so
the incident grouper's variant rule (words in common) cannot relate them either.

`family_of` names the family of a *field dump* line: the line is only fields (`name=value`
(or `name:value`) pairs, or one label followed by `: ` or a dot leader and then values) at a severity of ERROR or
worse (a crash report, not a status line), from one component. Two never-seen templates of one
family are the same new behaviour (`agent/incidents.py`, rule 1). Anything with a word among its
values ("Lustre mount FAILED : bglio559 : point …", "rts: kernel terminated for reason 1004",
"MACHINE CHECK DCR read timeout (mc=e08x …)") is not a dump and keeps its own template's rules.

`reason_head` names the other family: one message ending in different reasons after its last
`: ` ("ciod: LOGIN chdir(<*>) failed: No such file or directory" and "…: Input/output error",
"ciod: Error loading <PATH>: invalid or missing program image, Permission denied" and "…:
program image too big, <NUM> > <NUM>"). The part before the reason must say something (three
content words or more): "kernel: …" or "ERROR: …" alone relates nothing.

A third family is the machine's *corrected errors*: a line below ERROR that reports errors
detected and corrected ("3 L3 EDRAM error(s) (dcr 0x0157) detected and corrected", "1 ddr
error(s) detected and corrected on rank 0, symbol 24 over 335 seconds", "1 torus receiver x+
input pipe error(s) … detected and corrected", "torus sender z- retransmission error(s) …
detected and corrected"). The hardware healed itself; what an operator reads from them is one
story, the machine's hardware health (their rate, and which part keeps reporting them), whatever
unit each names. Uncorrected or uncorrectable errors ("not corrected", "uncorrectable") are
failures and are not in it, nor is a line without an error word ("… a correctable ddr.").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from agent.types import Level, ParsedLine

# A value in a dump: a hex word, a number (with a unit or a dotted version), or a bracketed unit.
_VALUE = r"(?:0x[0-9a-fA-F]+|[0-9a-fA-F]{8,}|[-+]?\d[\w.]*|\(\w*\))"
_VALUES = rf"{_VALUE}(?:[\s,]+{_VALUE})*"
# `name=value` (or `name:value`) fields only, maybe with bare values after them
# (`fpr29=0xffffffff ffffffff`, `lr:00004ad8 cr:48000084 xer:20000002`).
_FIELDS = re.compile(rf"[A-Za-z][\w.]*[=:]{_VALUE}(?:[\s,]+(?:[A-Za-z][\w.]*[=:])?{_VALUE})*")
# One label and its values: `Machine State Register: 0x0002f900`, `fraction rounded.......0`,
# `program interrupt: privileged instruction...0`.
_LABELLED = re.compile(rf"[A-Za-z][\w /&()+-]*?(?::\s+|(?<=[\w)])\.{{3,}}\s*){_VALUES}"
                       rf"|[A-Za-z][\w :/&()+-]*?(?<=[\w)])\.{{3,}}\s*{_VALUES}")
_MAX_CHARS = 256  # a dump line is short; longer messages are not looked at

FIELD_DUMP = "field dump"
CORRECTED_ERRORS = "corrected errors"
# "corrected" or "correctable" (not "uncorrected", "uncorrectable": \b), not negated, with an
# error word; checked on the masked template or the message alike.
_CORRECTED = re.compile(r"\b(?:corrected|correctable)\b", re.IGNORECASE)
_NEGATED = re.compile(r"\b(?:not|never|cannot|can't|couldn't)\s+(?:be\s+|been\s+)?corrected\b", re.IGNORECASE)
_ERROR_WORD = re.compile(r"\berrors?\b", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"<[A-Z_*]*>")
_CONTENT_WORD = re.compile(r"[A-Za-z][A-Za-z_]{2,}")
_MIN_HEAD_WORDS = 3


def is_field_dump(message: str) -> bool:
    """Whether `message` is only fields: `name=value` pairs, or a label and its values."""
    text = message.strip()
    if not text or len(text) > _MAX_CHARS:
        return False
    return _FIELDS.fullmatch(text) is not None or _LABELLED.fullmatch(text) is not None


def is_corrected_error(message: str) -> bool:
    """Whether `message` reports errors that were corrected (and not that they were not)."""
    text = message[:_MAX_CHARS]
    return (_CORRECTED.search(text) is not None and _ERROR_WORD.search(text) is not None
            and _NEGATED.search(text) is None)


def family_of(line: ParsedLine) -> tuple[str, str, Level] | None:
    """The family a never-seen line belongs to beyond its template: (kind, software component,
    level) of a severe field dump or of a corrected-error report below ERROR, or None (most
    lines: their template is their family). The component is the header's `facility` where the
    format has one (BGL's KERNEL: its `component` is the node, a place, and a crash report is
    the same failure on any node), else the line's component (a syslog program)."""
    return family_from(line.level, line.message, line.component, line.fields)


def family_from(level: Level, message: str, component: str, fields: Sequence[tuple[str, str]]
                ) -> tuple[str, str, Level] | None:
    """`family_of` from the line's pieces (level, message, component, header fields): the
    pipeline's counted road builds no line object."""
    if level >= Level.ERROR:
        if not is_field_dump(message):
            return None
        return FIELD_DUMP, _facility(fields) or component, level
    if not is_corrected_error(message):
        return None
    return CORRECTED_ERRORS, _facility(fields) or component, level


def _facility(fields: Sequence[tuple[str, str]]) -> str | None:
    """The header's `facility` field (`ParsedLine.field`)."""
    for key, value in fields:
        if key == "facility":
            return value
    return None


def reason_head(template: str) -> str | None:
    """The message before the reason a template ends with (the text before its last `: `, every
    token holding a placeholder written `<*>`), when it holds at least three content words;
    None otherwise."""
    cut = template.rfind(": ", 0, _MAX_CHARS)
    if cut <= 0:
        return None
    # A token holding a value is that value's slot, however the miner wrote it: "chdir(<*>)" in
    # a template the online miner made, "<*>" in the frozen one's.
    head = " ".join("<*>" if _PLACEHOLDER.search(token) else token for token in template[:cut].split())
    words = _CONTENT_WORD.findall(_PLACEHOLDER.sub(" ", head))
    return head if len(words) >= _MIN_HEAD_WORDS else None
