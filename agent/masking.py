"""Masking of variable tokens (IPs, numbers, ids, paths) before template mining, in one pass.

Drain3's own masker runs one lookaround regex per mask over the whole line, one after another;
on real logs that costs more than the tree search itself. Here every mask is one branch of ONE
compiled alternation, tried only on the whitespace tokens that can hold a mask at all (a digit
or a `/`), so most tokens cost one C-level scan. The values a mask replaced are kept per token:
they become the line's parameters without any per-template regex.

The masks, by name (placeholder in the template):

    path  <PATH>  /a/b/c: two or more `/`-separated segments (a lone `/tmp` stays a word)
    uuid  <UUID>  8-4-4-4-12 hex
    blk   <BLK>   HDFS block ids, blk_-?digits
    ip    <IP>    IPv4 with optional :port, IPv6 (full, or compressed with `::`; needs a digit)
    hex   <HEX>   0x…, and runs of 8+ hex characters that mix digits and letters or start with 0
    num   <NUM>   signed integers and dotted numbers (1.5, 2.6.32)

Every mask only matches a whole "word": not preceded or followed by a letter or digit (the
boundary Drain3's example masks use), so `user123` or `abc0x1` stay as they are. At one start
position the first mask in the order above wins; `drain3_instructions` gives the same bodies and
boundaries as Drain3 `MaskingInstruction`s (for a fair bare-Drain3 baseline), which agree with
this masker except where a lower-priority mask starts earlier inside a higher-priority one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from agent.errors import ConfigError

_H = "[0-9a-fA-F]"
_H4 = _H + "{1,4}"
# IPv6 has no fixed shape; these two forms (8 groups, or any `::` compression) cover what
# logs print. A digit is required so that words like `add::feed` stay words.
_IPV6 = (
    rf"(?=[0-9a-fA-F:]*\d)(?:{_H4}(?::{_H4}){{7}}"
    rf"|(?:{_H4}(?::{_H4}){{0,6}})?::{_H4}(?::{_H4}){{0,6}}"
    rf"|{_H4}(?::{_H4}){{0,6}}::)"
)
_IPV4 = r"\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?"


@dataclass(frozen=True, slots=True)
class Mask:
    """One masked kind of token: its name, placeholder and regex body."""

    name: str
    placeholder: str
    body: str  # regex without boundaries; only non-capturing groups


# Canonical priority order (see the module docstring).
BUILTIN_MASKS: tuple[Mask, ...] = (
    Mask("path", "<PATH>", r"(?:/[\w.\-~%+@=,]+){2,}/?"),
    Mask("uuid", "<UUID>", rf"{_H}{{8}}-{_H}{{4}}-{_H}{{4}}-{_H}{{4}}-{_H}{{12}}"),
    Mask("blk", "<BLK>", r"blk_-?\d+"),
    Mask("ip", "<IP>", rf"(?:{_IPV4}|{_IPV6})"),
    Mask(
        "hex",
        "<HEX>",
        # 0x…; 8+ hex chars mixing digits and letters; 8+ with a leading zero (fixed-width hex
        # such as Windows' 000000c4 next to 00000001: both <HEX>; not after "." as in 0.0239…).
        r"(?:0[xX][0-9a-fA-F]+|(?=[0-9]*[a-fA-F])(?=[a-fA-F]*\d)[0-9a-fA-F]{8,}|(?<!\.)0[0-9a-fA-F]{7,})",
    ),
    Mask("num", "<NUM>", r"[-+]?\d+(?:\.\d+)*"),
)
MASK_NAMES: tuple[str, ...] = tuple(m.name for m in BUILTIN_MASKS)
_BY_NAME = {m.name: m for m in BUILTIN_MASKS}

_LEAD = r"(?<![A-Za-z0-9])"
_TRAIL = r"(?![A-Za-z0-9])"
# Every mask needs a digit or a slash; tokens without either are never scanned further.
_MAY_HOLD_MASK = re.compile(r"[\d/]").search


def select_masks(names: Iterable[str]) -> tuple[Mask, ...]:
    """The built-in masks with these names, in canonical priority order."""
    wanted = set(names)
    unknown = sorted(wanted - set(MASK_NAMES))
    if unknown:
        raise ConfigError(f"unknown mask name(s) {unknown}; known: {list(MASK_NAMES)}")
    return tuple(m for m in BUILTIN_MASKS if m.name in wanted)


def masks_fingerprint(masks: Iterable[Mask]) -> str:
    """A short hash of the mask definitions: saved state is refused when they change."""
    h = hashlib.sha256()
    for m in masks:
        h.update(f"{m.name}\x00{m.placeholder}\x00{m.body}\x00".encode())
    h.update(f"{_LEAD}\x00{_TRAIL}".encode())
    return h.hexdigest()[:16]


def drain3_instructions(masks: Iterable[Mask]) -> list[tuple[str, str]]:
    """(regex_pattern, mask_with) pairs in Drain3's example style, for the bare-Drain3 baseline."""
    return [
        (rf"((?<=[^A-Za-z0-9])|^)({m.body})((?=[^A-Za-z0-9])|$)", m.placeholder[1:-1]) for m in masks
    ]


class Masker:
    """Masks the tokens of a message; see the module docstring for what is masked."""

    def __init__(self, masks: Iterable[Mask], clean_cache_size: int = 8192) -> None:
        self.masks = tuple(masks)
        # Tokens already seen to hold no mask (the words of the log): a set lookup is cheaper
        # than the regex scan. Filled until full, never evicted: bounded, and a pure cache.
        self._clean: set[str] = set()
        self._clean_cap = clean_cache_size
        self._placeholder = {m.name: m.placeholder for m in self.masks}
        if self.masks:
            alternation = "|".join(f"(?P<{m.name}>{m.body})" for m in self.masks)
            pattern: re.Pattern[str] | None = re.compile(f"{_LEAD}(?:{alternation}){_TRAIL}")
        else:
            pattern = None
        self._pattern = pattern

    def mask_tokens(self, tokens: list[str]) -> tuple[list[str], dict[int, tuple[str, ...]]]:
        """Masked copy of `tokens` and, per masked token index, the values it replaced in order."""
        pattern = self._pattern
        if pattern is None:
            return tokens, {}
        may_hold = _MAY_HOLD_MASK
        placeholder = self._placeholder
        match = pattern.match
        clean = self._clean
        out = tokens
        values: dict[int, tuple[str, ...]] = {}
        for i, tok in enumerate(tokens):
            if tok in clean:
                continue
            if may_hold(tok) is None:
                if len(clean) < self._clean_cap:
                    clean.add(tok)
                continue
            m = match(tok)
            if m is not None and m.end() == len(tok):
                # The common case: the whole token is one value (a block id, an IP, a count).
                if out is tokens:
                    out = list(tokens)
                out[i] = placeholder[m.lastgroup]  # type: ignore[index]
                values[i] = (tok,)
                continue
            pieces: list[str] = []
            found: list[str] = []
            pos = 0
            for m in pattern.finditer(tok):
                pieces.append(tok[pos : m.start()])
                pieces.append(placeholder[m.lastgroup])  # type: ignore[index]
                found.append(m.group())
                pos = m.end()
            if found:
                pieces.append(tok[pos:])
                if out is tokens:
                    out = list(tokens)
                out[i] = "".join(pieces)
                values[i] = tuple(found)
        return out, values

    def values_within(self, token: str) -> tuple[str, ...]:
        """The values `mask_tokens` finds in a token that is not wholly one value, in order."""
        if self._pattern is None:
            return ()
        return tuple(m.group() for m in self._pattern.finditer(token))

    def spans_within(self, token: str) -> list[tuple[int, int]]:
        """Where `values_within` finds its values in the token, as (start, end)."""
        if self._pattern is None:
            return []
        return [m.span() for m in self._pattern.finditer(token)]

    def mask(self, message: str) -> str:
        """The masked message with tokens joined by single spaces (for tests and tools)."""
        return " ".join(self.mask_tokens(message.split())[0])
