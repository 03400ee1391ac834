"""Token typing for the template miner: which tokens of a message are words, which are values.

Runs on the masked tokens (`agent.masking`) of a message the miner has not seen in that masked
form, so its cost is off the hot path. Generic rules, nothing tied to one log format:

* a mask placeholder, a run of letters and digits that holds a digit, and `true`/`false`/`null`
  are values: `onExtend:1514038530000` → `onExtend:<*>`, `wl0` → `<*>`; a token with no
  letters left besides values is the value `<*>` (`10:05:25`, `(1.16`, `<1`);
* `key=value` → `key=<*>` (the key is a word, the value is a value, whatever it looks like);
  a `key="quoted value` spanning tokens makes the tokens up to the closing quote values too;
* a unit abbreviation right after a value is part of it (`1.16 KB)`, `<1 sec`);
* the name of a month or weekday next to a value or another such name is a value (a date
  inside a message: `at Sun Jul  3 10:05:25 2005`).

`PARAM` (`<*>`) marks a value. A typed token that still holds letters besides `<*>` is a
"typed word" (`host.example.com:<*>`): it must match exactly, but the miner's variability
rules may turn it into `<*>`.
"""

from __future__ import annotations

import re

from agent.text_memo import remember

PARAM = "<*>"
_HAS_DIGIT = re.compile(r"\d").search
_KEY = re.compile(r"[A-Za-z_][\w.\-]*=")

# Words that are values wherever they appear: booleans and null, and the names of months and
# weekdays (a date inside a message: `at Sun Jul  3 10:05:25 2005`).
_BOOLEANS = frozenset({"true", "false", "null"})
_DATE_WORDS = frozenset(
    [
        *("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"),
        *("january", "february", "march", "april", "june", "july", "august", "september", "october"),
        *("november", "december", "mon", "tue", "wed", "thu", "fri", "sat", "sun", "monday", "tuesday"),
        *("wednesday", "thursday", "friday", "saturday", "sunday"),
    ]
)
_SEGMENT = re.compile(r"<[A-Z]+>|[A-Za-z0-9]+")
_LETTER = re.compile(r"[A-Za-z]").search


def _typed_segment(m: re.Match[str]) -> str:
    seg = m.group()
    if seg[0] == "<" or _HAS_DIGIT(seg) is not None or seg.lower() in _BOOLEANS:
        return PARAM
    return seg


def _type_token(masked: str) -> str:
    """A token's type: words stay, values become `<*>` (whole token, or the value part)."""
    key = _KEY.match(masked)
    if key is not None and key.end() < len(masked):
        return key.group() + PARAM  # key=value: the key is a word, the value a variable
    typed = _SEGMENT.sub(_typed_segment, masked)
    if PARAM not in typed:
        return typed
    if _LETTER(typed.replace(PARAM, "")) is None:
        return PARAM  # only values and punctuation: 10:05:25, (1.16), <1
    return typed


# Unit words right after a value belong to it (`1.16 KB)`, `<1 sec`): generic abbreviations.
_UNITS = frozenset(
    ["b", "kb", "mb", "gb", "tb", "kib", "mib", "gib", "tib", "ms", "us", "ns", "s", "sec", "secs", "min", "mins"]
)
_PUNCT = "()[]{},;:.'\""


_TYPE_MEMO: dict[str, str] = {}  # masked token -> `_type_token` (a pure function; emptied when full)
_TYPE_MEMO_SIZE = 65_536
_TYPE_MEMO_CHARS = 256  # longer tokens are typed afresh


def _types(masked: list[str]) -> list[str]:
    memo = _TYPE_MEMO
    out = []
    for t in masked:
        typed = memo.get(t)
        if typed is None:
            typed = _type_token(t)
            if len(t) <= _TYPE_MEMO_CHARS:
                remember(memo, t, typed, _TYPE_MEMO_SIZE)
        out.append(typed)
    return out


_UNIT, _DATE = 1, 2  # what a typed word is, stripped of punctuation and lower-cased (`_word_kind`)
_KIND_MEMO: dict[str, int] = {}  # typed token -> `_word_kind` (a pure function; emptied when full)


def _word_kind(typed: str) -> int:
    """Whether a typed token, stripped of punctuation and lower-cased, is a unit (`_UNIT`), the
    name of a month or weekday (`_DATE`), both or neither (0)."""
    word = typed.strip(_PUNCT).lower()
    kind = (_UNIT if word in _UNITS else 0) | (_DATE if word in _DATE_WORDS else 0)
    if len(typed) <= _TYPE_MEMO_CHARS:
        remember(_KIND_MEMO, typed, kind, _TYPE_MEMO_SIZE)
    return kind


def typed_tokens(masked: list[str]) -> tuple[str, ...]:
    """Each masked token's type: words stay, values become `<*>` (quoted values span tokens)."""
    out = _types(masked)
    n = len(out)
    quoted = False  # inside a key="quoted value" that spans tokens: the rest is the value too
    for i, tok in enumerate(masked):
        if quoted:
            out[i] = PARAM
            quoted = tok.count('"') % 2 == 0
        elif '="' in tok and tok.count('"') % 2 == 1:
            quoted = True
    kinds = _KIND_MEMO
    for i in range(n):
        typed = out[i]
        if typed == PARAM:
            continue
        kind = kinds.get(typed)
        if kind is None:
            kind = _word_kind(typed)
        if not kind:  # neither a unit nor a date word: it stays
            continue
        after_value = i > 0 and out[i - 1] == PARAM
        if (after_value and kind & _UNIT) or (kind & _DATE and (after_value or _dateish(out, i + 1))):
            out[i] = PARAM
    return tuple(out)


def is_var(typed: str) -> bool:
    """Whether a typed token holds a variable part."""
    return PARAM in typed


def is_word(typed: str) -> bool:
    """A word, or a key=<*> (its key is a word): what a message's skeleton is made of."""
    return PARAM not in typed or (typed.endswith("=" + PARAM) and typed.count(PARAM) == 1)


def shown(typed: str, masked: str, raw: str) -> str:
    """How a variable position shows one line: its masked form when that is clean."""
    if typed == PARAM and masked != raw and _HAS_DIGIT(masked) is None:
        return masked
    return typed


_PATTERNS: dict[str, re.Pattern[str]] = {}


def values_of(typed: str, raw: str) -> tuple[str, ...]:
    """The values at the `<*>` parts of a typed token such as `onExtend:<*>`."""
    pattern = _PATTERNS.get(typed)
    if pattern is None:
        body = "(.*?)".join(re.escape(part) for part in typed.split(PARAM))
        pattern = re.compile(body + r"\Z", re.DOTALL)
        if len(_PATTERNS) < 4096:
            _PATTERNS[typed] = pattern
    m = pattern.match(raw)
    return m.groups() if m is not None else (raw,)


# A name of three or more dotted parts: a domain, a Java class or package, an intent action. It
# starts only where a run of name characters starts, so a long run is read once, not once per
# character (a 20,000-character token took 3.3 s without the lookbehind).
_DOTTED = re.compile(r"(?<![\w$-])[\w$-]+(?:\.[\w$-]+){2,}").search
_INNER_KEY = re.compile(r"[^=]=[A-Za-z0-9]").search  # `key=value` inside a token (`Surface(name=X)`)


_LIKE_MEMO: dict[str, bool] = {}  # typed token -> `value_like` (a pure function; emptied when full)


def value_like(typed: str) -> bool:
    """Whether a typed token looks like a parameter even where the history saw one value only.

    It holds a value (`<*>`: `hm.baidu.com:<*>`, `QQ(<*>)`), a quoted string, a path (`/`), a
    name of three or more dotted parts (`android.intent.action.TIME_TICK`, `com.apple.networkd`),
    or a `key=value` inside it (`Surface(name=InputMethod)`). Plain, hyphenated, CamelCase and
    UPPER_CASE words (`cupsd`, `file-read-data`, `minSessionTimeout`, `FAIL_CONTAINER_CLEANUP`)
    and two-part names (`autopurge.purgeInterval`) are not: where they differ, the message differs.
    """
    like = _LIKE_MEMO.get(typed)
    if like is None:
        like = (
            PARAM in typed
            or typed.count('"') >= 2
            or "/" in typed
            or _DOTTED(typed) is not None
            or _INNER_KEY(typed) is not None
        )
        if len(typed) <= _TYPE_MEMO_CHARS:  # bounded like the typing memo: no long hostile tokens kept
            remember(_LIKE_MEMO, typed, like, _TYPE_MEMO_SIZE)
    return like


def fits_typed(typed: str, token: str) -> bool:
    """Whether `token` fits a typed token with fixed parts (`chdir(<*>)`), each `<*>` taking at
    least one character (`chdir(pwd)` fits, `rhost=` does not fit `rhost=<*>`)."""
    if PARAM not in typed or typed == PARAM:
        return False
    # Each fixed part at its leftmost place after the last (a glob of `<*>` only matches greedily
    # so): linear in the token, where a regex of lazy groups backtracks on a long hostile one.
    first, *middle, last = typed.split(PARAM)
    if not token.startswith(first):
        return False
    end = len(first)
    for part in middle:
        at = token.find(part, end + 1)
        if at < 0:
            return False
        end = at + len(part)
    return len(token) - len(last) > end and token.endswith(last)


def _dateish(out: list[str], i: int) -> bool:
    return i < len(out) and (PARAM in out[i] or out[i].strip(_PUNCT).lower() in _DATE_WORDS)


def key_value(typed: str, masked: str) -> str | None:
    """The word value of a `key=<*>` token (`user=root` → `root`); None for other tokens."""
    if not typed.endswith("=" + PARAM) or typed.count(PARAM) != 1:
        return None
    value = masked[len(typed) - len(PARAM) :]
    if not value or _HAS_DIGIT(value) is not None or "<" in value:
        return None
    return value
