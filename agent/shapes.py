"""Template lookup keyed by a message's raw shape: known shapes skip masking.

The frozen training miner masks every message token by token (`agent.masking`) before it can
look the masked message up. Most messages of a running system differ from one seen before
only in their numbers (block ids, addresses, ports, counts), and the masks decide on a number
by its digits' *places*, not their values: every character class of the masks holds all ten
ASCII digits alike; a mask starts only where no letter or digit precedes, so it never starts
inside a run of digits nor splits one; and the only digit written literally is the `0` that
starts a hex value (`0x…`, a zero-padded `0…` of eight or more hex characters), which is then
the first digit of its run. So two messages that are the same with every ASCII digit read as
`0` (the *shape*, `shape_key`: one C-level `bytes.translate`) and that agree on `0` at the
places where a hex value could start with it (`zero_places`, fixed by the shape) are masked
alike: the same spans of the same masks, each covering whole digit runs. A masked token that
still holds a digit (`user123`, `ssh2`) keeps the message's own, so the entry keeps the text of
those tokens and a message must repeat them exactly (else the miner answers it); then its
masked message is the first one's, and so is the frozen miner's template. What changes is the
parameters, read straight off the message's tokens by the form's slots (a wholly masked token
is its own value), with no regex except inside partly masked tokens.

Hex values print letters too (`iar 0245a8c4`, `at 0x1b45e3a0`): each value would be its own
shape. Where a run of ASCII letters and digits (none before or after it) is a `0x` value, or
eight or more hex characters holding a digit and a letter, some mask covers it whole, whatever
its characters: the hex mask takes any such run (`0x…`, and hex runs that mix digits and
letters), no mask can start or end inside it (none starts or ends next to a letter or digit),
and the masks that could cover more (path, UUID) take any hex character alike (the one literal
letter, `blk_`'s b, is followed by an l, which no such run holds). So a message whose raw shape
is new is looked up again by its *general* shape (`general_key`: such a run's hex characters
read as the byte 0xFF, which UTF-8 never holds, so no raw shape is a general one; its length
kept, so every place stays where it was), and learnt under that.

Only real forms are kept: a form fitted by a template's words alone (`_by_words`) is
remembered by the miner under its first message, and is left to it. A shape is learnt on its
second message (the first is answered by the miner alone): most new shapes are seen once. The
cache is bounded (emptied when full). `tests/unit/test_shapes.py` compares it with `TemplateMiner.match` on
real logs and on the edge cases of the masks.
"""

from __future__ import annotations

import re

from agent.templates import ChangeType, Prepared, TemplateMatch, TemplateMiner
from agent.token_types import values_of

MAX_SHAPES = 4_096  # entries kept across all shapes (all emptied when full): ≤ ≈ 12 MiB
MAX_SHAPE_CHARS = 512  # longer messages are matched by the miner directly

_STR_AS_ZERO = str.maketrans("0123456789", "0000000000")
_AS_ZERO = bytes.maketrans(b"0123456789", b"0000000000")
_ASCII_DIGIT = re.compile(r"[0-9]").search
# A digit run where a mask may start (no letter or digit before it): its `0` may start a hex value
_RUN_START = re.compile(r"(?<![A-Za-z0-9])0")
_HEX_RUN = re.compile(r"[0-9a-fA-F]*")
# A whole run of ASCII letters and digits (in a shape) that is a `0x` value or eight or more hex
# characters: the only runs `_general_run` can change (a shorter one never calls it back)
_HEX_WORD = re.compile(rb"(?<![A-Za-z0-9])(?:0[xX][0-9a-fA-F]+|[0-9a-fA-F]{8,})(?![A-Za-z0-9])")
_HEX_LETTERS = re.compile(rb"[a-fA-F]")
_ANY_HEX = bytes.maketrans(b"0123456789abcdefABCDEF", b"\xff" * 22)

# How a form's parameter slot reads the message's token (`_Template.slots`, by `kind`).
_TOKEN = 0  # the whole token (a whole-token mask value, or a `<*>` position)
_NONE = 1  # nothing (a mask slot whose token held no mask value)
_MASKED = 2  # the mask values inside a partly masked token
_TYPED = 3  # the values at the `<*>` parts of a typed token (`key=<*>`)
_SLICE = 4  # the one mask value inside a token, between text of fixed lengths (`/<IP>`)

Parts = tuple[int, str, tuple[str, ...]]  # a match as (template id, template text, params)
Found = tuple[int, str, tuple[str, ...] | None]  # ... params None while not read (`ShapeMatcher.lookup`)
_Plan = tuple[tuple[int, int, int, int, str], ...]  # (token index, kind, chars before, chars after, typed)
# Where the masks of a shape no template fits stand: its masked tokens and key (the same for every
# message of the shape), and per masked token (index, None for the whole token, else the spans)
_Masking = tuple[list[str], str, tuple[tuple[int, tuple[tuple[int, int], ...] | None], ...]]
# (template id or None, template text, (token index, text) every message of the shape repeats, plan,
# the masking when no template fits)
_Entry = tuple[int | None, str, tuple[tuple[int, str], ...], _Plan, _Masking | None]
# A shape key's entry: its zero places, and (zero flags there -> the entry, None for a virtual form)
_Shape = tuple[tuple[int, ...], dict[tuple[bool, ...], _Entry | None]]


def shape_key(message: str) -> bytes:
    """The message (UTF-8) with every ASCII digit as `0`: one C-level pass."""
    return message.encode("utf-8", "surrogatepass").translate(_AS_ZERO)


def _general_run(m: re.Match[bytes]) -> bytes:
    run = m.group()
    if run[1:2] in (b"x", b"X") and run[:1] == b"0":  # a `0x` value (or a digit, x: its zero flag tells)
        return run[:2] + run[2:].translate(_ANY_HEX)
    if len(run) >= 8 and b"0" in run and _HEX_LETTERS.search(run) is not None:  # digits and letters
        return run.translate(_ANY_HEX)
    return run


def general_key(shape: bytes) -> bytes | None:
    """The shape with its hex values' characters read as the byte 0xFF (see the module
    docstring): in a run of ASCII letters and digits, none before or after it, those after a
    `0x`, or all of eight or more hex characters holding a digit (a `0` in a shape) and a
    letter. None when the shape holds no such run."""
    general = _HEX_WORD.sub(_general_run, shape)
    return general if general != shape else None


def zero_places(shape: str) -> tuple[int, ...]:
    """Where a digit's being `0` can change the masking of a message of this shape (the message
    with every ASCII digit as `0`): the first digit of a run with no letter or digit before it
    that a hex mask could start with (`0x…`, or eight or more hex characters not after a `.`)."""
    places = []
    for m in _RUN_START.finditer(shape):
        p = m.start()
        if shape[p + 1 : p + 2] in ("x", "X"):
            places.append(p)
            continue
        run = _HEX_RUN.match(shape, p)
        if (p == 0 or shape[p - 1] != ".") and run is not None and run.end() - p >= 8:
            places.append(p)
    return tuple(places)


def _zeros_at(message: str, places: tuple[int, ...]) -> tuple[bool, ...]:
    """Whether the message holds a `0` at each of its shape's zero places."""
    if not places:
        return ()
    if len(places) == 1:
        return (message[places[0]] == "0",)
    if len(places) == 2:  # (BGL's `iar <HEX> dear <HEX>`)
        return (message[places[0]] == "0", message[places[1]] == "0")
    return tuple([message[p] == "0" for p in places])


def _parts(found: TemplateMatch | None) -> Parts | None:
    return None if found is None else (found.template_id, found.template, found.params)


class ShapeMatcher:
    """`TemplateMiner.match` of a frozen miner, answered by the message's shape when known."""

    def __init__(self, miner: TemplateMiner) -> None:
        self.miner = miner
        # Extra delimiters with a digit would split messages by their digits' values.
        self._usable = not any(_ASCII_DIGIT(d) for d in miner.config.extra_delimiters)
        self._split = miner.config.extra_delimiters == ()
        # (an extra delimiter could be a hex letter: then only raw shapes are kept)
        self._general = self._split
        # shape -> (zero places, zero flags there -> the entry, None for a virtual form)
        self._shapes: dict[bytes, _Shape] = {}
        self._entries = 0  # entries across all shapes (bounded by MAX_SHAPES)
        # Shapes seen once, not learnt: most shapes of a stream that are new are one-offs (an sshd
        # stream's user names: 85 of the 90 shapes its 1,000 scanned lines bring are seen once),
        # so a shape's entry is built on its second message; the first is the miner's to answer.
        self._once: set[bytes] = set()
        # The last message no template fitted, and its masking (or the miner's form of it): the
        # online miner learns it next without masking it again (`prepared`)
        self._unmatched: tuple[str, Prepared | None, _Masking | None] | None = None
        self.hits = 0
        self.misses = 0

    def match(self, message: str) -> TemplateMatch | None:
        """What `miner.match(message)` returns (the miner is frozen: never learns)."""
        found = self.parts(message)
        return None if found is None else TemplateMatch(*found, ChangeType.NONE)

    def parts(self, message: str) -> Parts | None:
        """`match(message)` as (template id, template text, params), None when nothing fits."""
        found = self._find(message, True)
        return None if found is None else (found[0], found[1], found[2] or ())

    def lookup(self, message: str) -> Found | None:
        """`parts(message)`, its parameters left unread (None) when the message's shape is known
        and they are not empty: a line that needs none (the pipeline's short road without keys)
        skips reading them (`parts` reads them later, when needed). One shape lookup per message:
        a shape not known yet is learnt, and answered with its parameters."""
        return self._find(message, False)

    def _find(self, message: str, with_params: bool) -> Found | None:
        if not self._usable or len(message) > MAX_SHAPE_CHARS:
            return _parts(self.miner.match(message))
        key = message.encode("utf-8", "surrogatepass").translate(_AS_ZERO)  # shape_key
        key, shape = self._known(key)
        if shape is None:
            once = self._once
            if key in once:
                return self._learn(message, key, None)
            if len(once) >= MAX_SHAPES:
                once.clear()
            once.add(key)
            self.misses += 1
            return self._miner_match(message)
        places, by_zeros = shape
        zeros = _zeros_at(message, places)
        if zeros not in by_zeros:
            return self._learn(message, key, zeros)
        entry = by_zeros[zeros]
        if entry is None:  # a virtual form: the miner's own memo answers it
            return _parts(self.miner.match(message))
        tid, text, checks, plan, masking = entry
        if checks or (plan and with_params):
            tokens = message.split() if self._split else self.miner.tokens(message)
            for i, held in checks:
                if tokens[i] != held:  # another masked message: ask the miner (not remembered)
                    self.misses += 1
                    return self._miner_match(message)
        self.hits += 1
        if tid is None:
            self._unmatched = (message, None, masking)
            return None
        if not plan:
            return tid, text, ()
        if not with_params:
            return tid, text, None
        params: list[str] = []
        for i, kind, start, end, typed in plan:
            if kind == _TOKEN:
                params.append(tokens[i])
            elif kind == _SLICE:
                tok = tokens[i]
                params.append(tok[start : len(tok) - end])
            elif kind == _TYPED:
                params.extend(values_of(typed, tokens[i]))
            elif kind == _MASKED:
                params.extend(self.miner.values_within(tokens[i]))
        return tid, text, tuple(params)

    def _miner_match(self, message: str) -> Parts | None:
        """The frozen miner's answer (its masking kept when no template fits: `prepared`)."""
        found, prepared = self.miner.match_prepared(message)
        if found is None:
            self._unmatched = (message, prepared, None)
        return found

    def prepared(self, message: str) -> Prepared | None:
        """`message` as the online miner's `add` would prepare it (`TemplateMiner.add`'s
        `prepared`), when it is the message the last lookup found no template for; else None.
        Messages of one shape mask alike, at the same places (see the module docstring), so a
        known shape's masked tokens and key are its first message's, and its values are read off
        the tokens where that message's were."""
        last = self._unmatched
        if last is None or last[0] is not message:
            return None
        _, done, masking = last
        if done is not None or masking is None:
            return done
        masked, key, spans = masking
        tokens = message.split() if self._split else self.miner.tokens(message)
        values: dict[int, tuple[str, ...]] = {}
        for i, at in spans:
            tok = tokens[i]
            values[i] = (tok,) if at is None else tuple([tok[a:b] for a, b in at])
        return tokens, masked, values, key

    def _known(self, key: bytes) -> tuple[bytes, _Shape | None]:
        """The shape entry of a message's shape key, else of its general shape (hex values read
        as any hex): the key it is (or would be learnt) under, and the entry, None if unknown."""
        shape = self._shapes.get(key)
        if shape is None and self._general:
            general = general_key(key)
            if general is not None:
                return general, self._shapes.get(general)
        return key, shape

    def _learn(self, message: str, key: bytes, zeros: tuple[bool, ...] | None) -> Parts | None:
        self.misses += 1
        found, form = self.miner.match_form(message)
        shapes = self._shapes
        if self._entries >= MAX_SHAPES:
            shapes.clear()
            self._entries = 0
            zeros = None
        if zeros is None:
            places = zero_places(message.translate(_STR_AS_ZERO))
            shapes[key] = (places, {})
            zeros = tuple([message[p] == "0" for p in places])
        by_zeros = shapes[key][1]
        self._entries += 1
        if form.virtual:
            by_zeros[zeros] = None
            return _parts(found)
        tokens, values = form.tokens, form.values
        # a digit left in a masked token is the message's own: it must repeat
        checks = tuple((i, tok) for i, (tok, masked) in enumerate(zip(tokens, form.masked, strict=True))
                       if _ASCII_DIGIT(masked) is not None)
        plan: list[tuple[int, int, int, int, str]] = []
        for i, how in form.slots:
            tok = tokens[i]
            if how == 1:
                plan.append((i, _TOKEN, 0, 0, ""))
            elif how == 2:
                plan.append((i, _TYPED, 0, 0, form.typed[i]))
            elif (held := values.get(i)) is None:
                plan.append((i, _NONE, 0, 0, ""))
            elif held == (tok,):
                plan.append((i, _TOKEN, 0, 0, ""))
            elif len(spans := self.miner.spans_within(tok)) == 1:
                # one value inside text that is the same in every message of the shape
                plan.append((i, _SLICE, spans[0][0], len(tok) - spans[0][1], ""))
            else:
                plan.append((i, _MASKED, 0, 0, ""))
        if found is None:
            at = tuple((i, None if held == (tokens[i],) else tuple(self.miner.spans_within(tokens[i])))
                       for i, held in values.items())
            masking: _Masking = (form.masked, " ".join(form.masked), at)
            by_zeros[zeros] = (None, "", checks, (), masking)
            self._unmatched = (message, None, masking)
            return None
        by_zeros[zeros] = (found.template_id, found.template, checks, tuple(plan), None)
        return _parts(found)

    def __len__(self) -> int:
        return len(self._shapes)
