"""Template mining: typed tokens, a Drain-style prefix tree, and merges on position variability.

The miner is incremental: `add` learns one message at a time, `match` looks one up without
learning. What it does with a message:

1. **Tokens and masks.** The message is split on whitespace (after `extra_delimiters`) and
   masked in one pass (`agent.masking`: IPs, numbers, hex, UUIDs, paths, block ids).
2. **Memo.** The masked message is the key of a bounded LRU memo. Most lines repeat a masked
   shape, so a hit costs one dict lookup. An entry stays valid while no template with the same
   token count was created, merged or evicted since it was stored (a generation per token
   count), so a hit always gives what a fresh lookup would.
3. **Token typing** (on a memo miss, `agent.token_types`): values (mask values, letter-digit
   runs with a digit, `key=` values, units after a value, dates next to a value) become `<*>`;
   the other tokens are words and must match exactly.
4. **Prefix tree.** Drain's layout: token count, then the first `depth - 2` typed tokens, then a
   leaf of *forms* (fixed-length token patterns). A value routes to the `<*>` branch; unlike
   Drain the search also follows the `<*>` branch when a word has its own child, so a form that
   became variable in an early position is still found. A message fits a form when every
   non-`<*>` token of the form equals the message's; the most specific form wins (fewest
   `<*>`, then the lowest id). Nodes that hold nothing any more are pruned.
5. **New form, merges.** A message that fits no form creates one, filed for each position p in a
   *sibling group*: the forms equal to it everywhere but at p. Position p holds values (Brain's
   position-wise variability) when the group's tokens at p include `<*>`, or number
   `var_min_values` (5) or more, or include three typed values (`host-<*>.corp:<*>`), or two
   words known to be values (seen after `key=`, or at a merged position), or two words that also
   stand together at one position of another message (job or table names). Few constant words,
   each frequent (`VM Started` / `VM Paused`), stay different messages. The group's forms then
   merge into one with `<*>` at p, under the lowest id. Three or more forms with the same words
   in the same places merge too. Forms with the same words in the same order but other values
   (a value that took another number of tokens: `<1 sec`, `(1.16 KB)`) are one template with
   several forms. `consolidate` re-checks every form once learning is done.
6. **Ids.** A template's id is the lowest id of its forms; merged ids become aliases of it
   (`resolve`, `aliases`, `take_merges`), and `remap_ids` re-keys anything keyed by old ids,
   so a model that knew an old id keeps being served through the survivor.

`match` (the frozen miner of a bundle) never learns: a same-length form fits, or else a message
with exactly the words, in order, of one template and values elsewhere is that template, or else
a message that differs from a same-length form only where both tokens look like values (a host,
a dotted name, a path, a quoted string: `token_types.value_like`) and repeats at least `sim_th`
of its tokens is a variant of that template (a history that held one value there could not
learn that it varies); a different word keeps it new.

Template text: words as they are; a value position shows the one token it has always held
(`ssh2`), or its masked form when all lines had the same one (`/<IP>`, `<NUM>`), or its typed
form (`key=<*>`, `onExtend:<*>`), else `<*>`. `params` are the values at the shown value
positions in token order, so the text with its params filled in is the line again.

Ids: by default in order of creation (1, 2, …). With `content_ids` an id is derived from the
typed form of the message that created the template (a 40-bit hash, probing on the rare
collision), so the same first message gives the same id on every host and after a crash that
lost the snapshot; merges still keep the lowest id.

Persistence: `to_state` is plain versioned JSON (forms in LRU order, aliases, sibling groups,
value words, the config and a fingerprint of the mask definitions); `save` writes it
atomically. The tree, the indexes and the memo are rebuilt or refilled, never saved.

Bounded state: `max_clusters` evicts the least recently used form (the id lives on while the
template has another form); a shape seen again after eviction creates a new form under a new id
(with `content_ids`, the same id again). Sibling groups and indexes hold only live forms; the
memo holds at most `cache_size` entries.

One owner: a miner is not thread-safe; call it from one thread.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import orjson

from agent.atomic import write_atomic
from agent.errors import BundleError, ConfigError
from agent.masking import MASK_NAMES, Masker, drain3_instructions, masks_fingerprint, select_masks
from agent.save_timer import SaveTimer
from agent.text_memo import remember
from agent.token_types import (
    PARAM,
    fits_typed,
    is_var,
    is_word,
    key_value,
    shown,
    typed_tokens,
    value_like,
    values_of,
)

__all__ = ["PARAM", "ChangeType", "MinerConfig", "Snapshotter", "TemplateMatch", "TemplateMiner", "learn_templates"]

STATE_FORMAT = "logdetect.template_miner"
STATE_VERSION = 3
V = TypeVar("V")
_ID_BITS = 40
_MAX_VALUE_WORDS = 50_000  # words learnt to be values, kept as evidence (bounded)
_SHAPE_MIN_FORMS = 3
_MAX_MERGE_LOG = 4096
_VIRTUAL = -1  # memo: `match` fitted the message to a template through its words (`_by_words`)
_MAX_VIRTUAL = 4096  # forms with the same words in place before the rest is taken as values
_PREPARED_ENTRIES = 1024  # messages whose tokens and masking `add` remembers (emptied when full) ...
_PREPARED_CHARS = 256  # ... when at most this long: ≤ ≈ 1.5 MiB


class ChangeType(enum.Enum):
    """What adding a line did to the miner: created a cluster, changed a template, or nothing."""

    CREATED = "cluster_created"
    CHANGED = "cluster_template_changed"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class TemplateMatch:
    """A line's template: its stable id, the current text, the line's parameters, the change made."""

    template_id: int  # stable across restarts; after a merge, the surviving id
    template: str  # current template text, with `<*>` and mask tokens such as <NUM>, <IP>
    params: tuple[str, ...]  # this line's variable values, in token order
    change: ChangeType


# A message as `TemplateMiner.add` prepares it: tokens, masked tokens, mask values by token index,
# memo key (the masked tokens joined)
Prepared = tuple[list[str], list[str], dict[int, tuple[str, ...]], str]


@dataclass(frozen=True)
class MinerConfig:
    """Drain settings and masks; stored in the bundle so the agent mines exactly like training."""

    # Drain's similarity threshold: the share of a known form's tokens a variant of it must repeat
    # exactly to be served as it (`match`, `_by_values`); also the bare-Drain3 baseline's.
    sim_th: float = 0.4
    depth: int = 4
    max_children: int = 100
    max_clusters: int | None = 20000
    extra_delimiters: tuple[str, ...] = ()
    masks: tuple[str, ...] = MASK_NAMES
    cache_size: int = 20_000  # ~3 KiB per entry on long novel messages: a sidecar budget item
    var_min_values: int = 5  # different words at one position that make it a value position
    content_ids: bool = False  # ids from the first message's typed form instead of a counter

    def __post_init__(self) -> None:
        # Accept lists (a config that went through JSON) but store tuples: the config is hashable.
        object.__setattr__(self, "extra_delimiters", tuple(self.extra_delimiters))
        # Masks apply in one canonical priority order, whatever order they are named in.
        object.__setattr__(self, "masks", tuple(m.name for m in select_masks(self.masks)))
        if not 0.0 <= self.sim_th <= 1.0:
            raise ConfigError(f"miner sim_th must be within [0, 1], got {self.sim_th}")
        if self.depth < 3:
            raise ConfigError(f"miner depth must be at least 3, got {self.depth}")
        if self.max_children < 2:
            raise ConfigError(f"miner max_children must be at least 2, got {self.max_children}")
        if self.max_clusters is not None and self.max_clusters < 1:
            raise ConfigError(f"miner max_clusters must be positive or None, got {self.max_clusters}")
        if self.cache_size < 0:
            raise ConfigError(f"miner cache_size must be >= 0, got {self.cache_size}")
        if any(not d or d.isspace() for d in self.extra_delimiters):
            raise ConfigError("miner extra_delimiters must be non-blank strings")
        if self.var_min_values < 2:
            raise ConfigError(f"miner var_min_values must be at least 2, got {self.var_min_values}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values."""
        d = asdict(self)
        d["extra_delimiters"] = list(self.extra_delimiters)
        d["masks"] = list(self.masks)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MinerConfig:
        """Settings from JSON; an unknown key is a ConfigError naming the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown miner config key(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    def drain3_config(self) -> Any:
        """An explicit Drain3 `TemplateMinerConfig` with these tree settings and masks.

        Never reads a `drain3.ini`. Used by the bench's bare-Drain3 baseline.
        """
        from drain3.masking import MaskingInstruction
        from drain3.template_miner_config import TemplateMinerConfig

        cfg = TemplateMinerConfig()
        cfg.drain_sim_th = self.sim_th
        cfg.drain_depth = self.depth
        cfg.drain_max_children = self.max_children
        cfg.drain_max_clusters = self.max_clusters
        cfg.drain_extra_delimiters = list(self.extra_delimiters)
        cfg.masking_instructions = [
            MaskingInstruction(pattern, name)
            for pattern, name in drain3_instructions(select_masks(self.masks))
        ]
        cfg.mask_prefix, cfg.mask_suffix = "<", ">"
        cfg.parametrize_numeric_tokens = True
        cfg.profiling_enabled = False
        return cfg


class _Template:
    """One template: typed tokens, line count, and how each variable position is shown."""

    __slots__ = (
        "consts", "display", "fixed", "id", "leaf", "nwild", "rests", "shape", "size", "skeleton", "slots", "text",
        "tokens", "words",
    )

    def __init__(
        self, tid: int, tokens: tuple[str, ...], display: list[str | None], size: int, fixed: Iterable[int] = ()
    ) -> None:
        self.id = tid
        self.tokens = tokens
        self.skeleton = tuple(t for t in tokens if t != PARAM)
        # What a message must match: (position, token) of every non-`<*>` token.
        self.consts = tuple((i, t) for i, t in enumerate(tokens) if t != PARAM)
        self.nwild = len(tokens) - len(self.consts)
        self.words = tuple(t for t in tokens if is_word(t))
        self.shape = tuple(t if is_word(t) else PARAM for t in tokens)
        self.size = size
        # Per position: None for a word; the shown token for a variable position.
        self.display = display
        # Variable positions that held one and the same unmasked token on every line so far
        # (`ssh2`): shown as that token, no param. Only unmasked tokens: a memo hit (same
        # masked message) then has the same token there.
        self.fixed = set(fixed)
        # The tree path to this form's leaf: (node, key) per level, the leaf last (key None).
        self.leaf: list[tuple[dict[Any, Any], Any]] | None = None
        # Per position, the sibling-group digest of the form without it (`TemplateMiner._rest_of`),
        # made when first asked: the tokens never change, and a group's key holds the same string.
        self.rests: list[str | None] | None = None
        self.text = ""
        self.slots: tuple[tuple[int, int], ...] = ()
        self.refresh()

    def refresh(self) -> None:
        shown = [t if d is None else d for t, d in zip(self.tokens, self.display, strict=True)]
        self.text = " ".join(shown)
        # (position, how to read its params): 0 = mask values, 1 = whole token, 2 = typed parts.
        slots = []
        for i, d in enumerate(self.display):
            if d is None or i in self.fixed:
                continue
            if d == PARAM:
                slots.append((i, 1))
            elif d == self.tokens[i]:
                slots.append((i, 2))  # a typed token such as key=<*>: the values inside it
            else:
                slots.append((i, 0))  # the masked form: the mask values
        self.slots = tuple(slots)


def _fits(consts: tuple[tuple[int, str], ...], typed: tuple[str, ...]) -> bool:
    for i, t in consts:  # noqa: SIM110 - a plain loop: twice as fast as all() on this hot miss path
        if typed[i] != t:
            return False
    return True


def content_id(typed: tuple[str, ...]) -> int:
    """A 40-bit id from a typed token sequence (the same on every host and every run)."""
    digest = hashlib.blake2b("\x1f".join(typed).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - _ID_BITS) or 1


@dataclass
class MemoStats:
    """Hits and misses of the masked-message memo."""

    hits: int = 0
    misses: int = 0


@dataclass(frozen=True, slots=True)
class MatchedForm:
    """How `TemplateMiner.match_form` matched a message: its tokens, masked tokens, the mask
    values per token index, the match, the form's parameter slots and typed tokens, and whether the form was
    virtual (fitted by the template's words only)."""

    tokens: list[str]
    masked: list[str]
    values: dict[int, tuple[str, ...]]
    match: TemplateMatch | None
    slots: tuple[tuple[int, int], ...]
    typed: tuple[str, ...]
    virtual: bool


# A memo entry: (template id or None for "nothing fits", generation of its token count,
# usable by `add` (False when `match` found nothing and `add` must still create)).
_Entry = tuple[int | None, int]


class TemplateMiner:
    """Drain's prefix-tree layout (our implementation), token typing, merges, a memo and atomic JSON state."""

    def __init__(self, config: MinerConfig | None = None, max_tokens: int | None = None) -> None:
        self.config = config if config is not None else MinerConfig()
        # A byte bound beside `max_clusters`: tokens across live forms (each costs the indexes
        # ≈ 1 KiB on never-seen words), so long new messages cannot hold more MiB than short
        # ones. Not part of the saved state: the owner sets it (`limit_tokens`).
        self.max_tokens = max_tokens
        self._live_tokens = 0
        masks = select_masks(self.config.masks)
        self._masker = Masker(masks)
        self._fingerprint = masks_fingerprint(masks)
        self._delimiters = self.config.extra_delimiters
        self._templates: OrderedDict[int, _Template] = OrderedDict()  # LRU order, oldest first
        self._alias: dict[int, int] = {}  # merged id -> surviving id
        self._groups: dict[tuple[int, str], dict[str, list[int]]] = {}  # (pos, rest) -> word -> ids
        self._tree: dict[Any, Any] = {}
        self._skeletons: dict[tuple[str, ...], list[int]] = {}  # non-`<*>` tokens -> form ids
        self._word_skeletons: dict[tuple[str, ...], list[int]] = {}  # words only -> form ids
        self._shapes: dict[tuple[str, ...], list[int]] = {}  # words in place, values as `<*>`
        # (token count, place, word) of each form's first word that is not value-like -> form ids:
        # a variant repeats every such word of its form (`_by_values`)
        self._first_words: dict[tuple[int, int, str], dict[int, None]] = {}
        self._word_groups: dict[str, set[tuple[int, str]]] = {}  # word -> groups it is in (rebuilt)
        self._values: set[str] = set()  # words learnt to be values (key=value, merged positions)
        self._memo: OrderedDict[str, _Entry] = OrderedDict()
        self._prepared: dict[str, tuple[list[str], list[str], dict[int, tuple[str, ...]], str]] = {}  # `_prepare`
        self._virtual: OrderedDict[str, _Template] = OrderedDict()  # memo key -> `_by_words` form
        self._generation: dict[int, int] = {}
        self._counter = 0
        self.revision = 0  # number of `add` calls; the snapshotter saves only when it moved
        self.merges = 0
        self._merged: list[tuple[int, int]] = []  # (old id, surviving id) not yet taken
        self.stats = MemoStats()

    # -- the hot path -------------------------------------------------------------------------

    def tokens(self, message: str) -> list[str]:
        """The message's tokens as the miner splits them (whitespace and `extra_delimiters`)."""
        return self._tokens(message)

    def _tokens(self, message: str) -> list[str]:
        if not self._delimiters:
            return message.split()
        for delimiter in self._delimiters:
            message = message.replace(delimiter, " ")
        return message.split()

    def _remember(self, key: str, entry: _Entry) -> None:
        memo = self._memo
        memo[key] = entry
        if len(memo) > self.config.cache_size:
            memo.popitem(last=False)

    @staticmethod
    def _params(tpl: _Template, tokens: list[str], values: dict[int, tuple[str, ...]]) -> tuple[str, ...]:
        out: list[str] = []
        for i, how in tpl.slots:
            if how == 0:
                out.extend(values.get(i, ()))
            elif how == 1:
                out.append(tokens[i])
            else:
                out.extend(values_of(tpl.tokens[i], tokens[i]))
        return tuple(out)

    def _cached(self, key: str, ntokens: int) -> _Entry | None:
        entry = self._memo.get(key)
        if entry is None or entry[1] != self._generation.get(ntokens, 0):
            return None
        tid = entry[0]
        if tid is not None and tid not in self._templates:
            return None
        self._memo.move_to_end(key)
        return entry

    def _prepare(self, message: str) -> tuple[list[str], list[str], dict[int, tuple[str, ...]], str]:
        """The message's tokens, masked tokens, mask values and memo key (a pure function of the
        message: remembered for short messages, since a learning miner sees the same lines
        again and again). The lists are shared: read, never changed."""
        found = self._prepared.get(message)
        if found is None:
            tokens = self._tokens(message)
            masked, values = self._masker.mask_tokens(tokens)
            found = (tokens, masked, values, " ".join(masked))
            if len(message) <= _PREPARED_CHARS:
                remember(self._prepared, message, found, _PREPARED_ENTRIES)
        return found

    def add(self, message: str, prepared: Prepared | None = None) -> TemplateMatch:
        """Learn from one message (training, and online mining) and return its template.
        `prepared`: the message's tokens, masked tokens, mask values and memo key as `add` would
        prepare them, when the caller already has them (`ShapeMatcher.prepared`: the frozen
        miner masked the message, or its shape tells), so it is not masked again."""
        return TemplateMatch(*self.add_parts(message, prepared))

    def add_parts(self, message: str, prepared: Prepared | None = None
                  ) -> tuple[int, str, tuple[str, ...], ChangeType]:
        """`add`, its match as (template id, template text, params, change): no object per
        message (the pipeline's online miner learns every never-seen line)."""
        self.revision += 1
        if prepared is None:
            prepared = self._prepare(message)
        elif len(message) <= _PREPARED_CHARS:
            remember(self._prepared, message, prepared, _PREPARED_ENTRIES)
        tokens, masked, values, key = prepared
        ntokens = len(masked)
        entry = self._cached(key, ntokens)
        if entry is not None and entry[0] is not None:
            self.stats.hits += 1
            hit = self._templates[entry[0]]
            hit.size += 1
            self._templates.move_to_end(hit.id)
            tid = self._alias.get(hit.id, hit.id)
            return tid, hit.text, self._params(hit, tokens, values), ChangeType.NONE

        self.stats.misses += 1
        typed = typed_tokens(masked)
        self._learn_values(masked, typed)
        tpl = self._best_fit(typed)
        if tpl is None:
            tpl = self._create(typed, tokens, masked)
            change = ChangeType.CREATED
            tpl = self._merge_siblings(tpl)
        else:
            tpl.size += 1
            change = ChangeType.CHANGED if self._show(tpl, typed, tokens, masked) else ChangeType.NONE
        self._templates.move_to_end(tpl.id)
        self._evict()
        self._remember(key, (tpl.id, self._generation.get(ntokens, 0)))
        return self._owner(tpl.id), tpl.text, self._params(tpl, tokens, values), change

    def _learn_values(self, masked: list[str], typed: tuple[str, ...]) -> None:
        """Words that follow `key=` are values; remembered as evidence for `_variable`."""
        known = self._values
        for m, t in zip(masked, typed, strict=True):
            value = key_value(t, m)
            if value is not None and len(known) < _MAX_VALUE_WORDS:
                known.add(value)

    def masked_key(self, message: str) -> str:
        """A message's masked tokens, joined: messages with the same key are learnt alike (the
        memo's key). Distributed training mines one message per key (trainer/distributed.py)."""
        return " ".join(self._masker.mask_tokens(self._tokens(message))[0])

    def match(self, message: str) -> TemplateMatch | None:
        """The template this message fits as it is, without learning; None when none does.

        A form of the same length fits, or else the message has exactly the words, in order, of
        one template's forms and values elsewhere (a value that took another number of tokens,
        as `add` would have merged it), or else it is a variant of a form of the same length
        that differs only where both look like values (`_by_values`: a history that held one
        host name, intent or dotted class there). Never creates, merges or changes a template, never
        touches `size` or the LRU.
        """
        tokens = self._tokens(message)
        masked, values = self._masker.mask_tokens(tokens)
        tpl, _ = self._match_masked(tokens, masked)
        if tpl is None:
            return None
        return TemplateMatch(self._owner(tpl.id), tpl.text, self._params(tpl, tokens, values), ChangeType.NONE)

    def match_form(self, message: str) -> tuple[TemplateMatch | None, MatchedForm]:
        """`match`, and how the message matched (`agent.shapes` answers messages of the same
        raw shape from it without masking them)."""
        tokens = self._tokens(message)
        masked, values = self._masker.mask_tokens(tokens)
        tpl, virtual = self._match_masked(tokens, masked)
        if tpl is None:
            return None, MatchedForm(tokens, masked, values, None, (), (), virtual)
        found = TemplateMatch(self._owner(tpl.id), tpl.text, self._params(tpl, tokens, values), ChangeType.NONE)
        return found, MatchedForm(tokens, masked, values, found, tpl.slots, tpl.tokens, virtual)

    def match_prepared(self, message: str) -> tuple[tuple[int, str, tuple[str, ...]] | None, Prepared]:
        """`match` as (template id, text, params), None when nothing fits, and the message as
        `add` prepares it (`agent.shapes` hands that to the online miner when nothing fits): no
        match object, no form."""
        tokens = self._tokens(message)
        masked, values = self._masker.mask_tokens(tokens)
        key = " ".join(masked)
        tpl, _ = self._match_masked(tokens, masked, key)
        if tpl is None:
            return None, (tokens, masked, values, key)
        return (self._owner(tpl.id), tpl.text, self._params(tpl, tokens, values)), (tokens, masked, values, key)

    def values_within(self, token: str) -> tuple[str, ...]:
        """The mask values inside a token that is not wholly one value, in order."""
        return self._masker.values_within(token)

    def spans_within(self, token: str) -> list[tuple[int, int]]:
        """Where `values_within` finds its values in the token."""
        return self._masker.spans_within(token)

    def _match_masked(self, tokens: list[str], masked: list[str], key: str | None = None
                      ) -> tuple[_Template | None, bool]:
        """The form `match` finds for a masked message (`key`: its masked tokens joined, when
        the caller has them), and whether it was fitted by its words only (a virtual form,
        remembered by its first message)."""
        if key is None:
            key = " ".join(masked)
        ntokens = len(masked)
        memo = self._memo
        entry = memo.get(key)
        tpl: _Template | None
        if entry is None or entry[1] != self._generation.get(ntokens, 0):
            self.stats.misses += 1
            typed = typed_tokens(masked)
            tpl = self._best_fit(typed)
            tid: int | None = None if tpl is None else tpl.id
            if tpl is None:
                tpl = self._by_words(typed, tokens, masked)
                if tpl is None:
                    tpl = self._by_values(typed)
                if tpl is not None:
                    tid = _VIRTUAL
                    self._virtual[key] = tpl
                    if len(self._virtual) > _MAX_VIRTUAL:
                        self._virtual.popitem(last=False)
            self._remember(key, (tid, self._generation.get(ntokens, 0)))
        else:
            self.stats.hits += 1
            memo.move_to_end(key)
            if entry[0] == _VIRTUAL:
                tpl = self._virtual.get(key)
                if tpl is not None and self.resolve(tpl.id) is None:
                    tpl = None
            else:
                tpl = None if entry[0] is None else self._templates.get(entry[0])
            tid = entry[0]
        return tpl, tid == _VIRTUAL

    def _by_words(self, typed: tuple[str, ...], tokens: list[str], masked: list[str]) -> _Template | None:
        """A form for `typed` under the one template whose forms have its words in order."""
        # the skeleton and words a form of `typed` would have (`_Template`), without building one
        words = tuple([t for t in typed if is_word(t)])
        ids = [*self._skeletons.get(tuple([t for t in typed if t != PARAM]), ()), *self._word_skeletons.get(words, ())]
        owners = {self._owner(i) for i in ids if i in self._templates}
        if len(owners) != 1 or len(words) < 2:
            return None
        display: list[str | None] = [shown(t, masked[i], tokens[i]) if is_var(t) else None for i, t in enumerate(typed)]
        return _Template(owners.pop(), typed, display, 0)

    def _by_values(self, typed: tuple[str, ...]) -> _Template | None:
        """A form for `typed` under a known template it differs from only where both look like
        values: a variant of a message whose history only ever held one or two values there.

        A form of the same length qualifies when, at each of its fixed tokens, the message has
        the same token, or both tokens are `value_like` (a host, a dotted name, a path, a quoted
        string, a typed value), or the message's token fits the form's typed token
        (`chdir(<*>)` ← `chdir(pwd)`); and it keeps Drain's similarity: at least `sim_th` of
        the message's tokens equal the form's fixed tokens, one of them a word that is not
        value-like. A different word anywhere (`syslogd` for `cupsd`, `LEADING` for `LOOKING`,
        `file-read-data` for `mach-lookup`) is a different message. Of several, the form with
        the fewest differences wins, then the one with more lines, then the lower id. The
        variant is shown as the form with `<*>` at the positions that differed. Only forms whose
        first word that is not value-like stands at its place in the message are checked
        (`_first_words`): a variant repeats every such word.
        """
        need = self.config.sim_th * len(typed)
        likes: dict[int, bool] = {}
        best: _Template | None = None
        best_rank: tuple[int, int, int] | None = None
        best_diffs: list[int] = []
        templates = self._templates
        n = len(typed)
        index = self._first_words
        candidates = [fid for i, tok in enumerate(typed) for fid in index.get((n, i, tok), ())]
        for fid in candidates:
            form = templates[fid]
            diffs: list[int] = []
            same = words = 0
            for i, t in form.consts:
                m = typed[i]
                if t == m:
                    same += 1
                    words += not value_like(t)
                    continue
                like = likes.get(i)
                if like is None:
                    like = likes[i] = value_like(m)
                if not ((like and value_like(t)) or fits_typed(t, m)):
                    break
                diffs.append(i)
            else:
                if not words or same < need:
                    continue
                rank = (len(diffs), -form.size, fid)
                if best_rank is None or rank < best_rank:
                    best, best_rank, best_diffs = form, rank, diffs
        if best is None:
            return None
        tokens = list(best.tokens)
        display = list(best.display)
        for i in best_diffs:
            tokens[i] = display[i] = PARAM
        return _Template(self._owner(best.id), tuple(tokens), display, 0, best.fixed.difference(best_diffs))

    # -- the tree -----------------------------------------------------------------------------

    def _route(self, typed: tuple[str, ...]) -> tuple[Any, ...]:
        return (len(typed), *typed[: self.config.depth - 2])

    def _best_fit(self, typed: tuple[str, ...]) -> _Template | None:
        best: _Template | None = None
        best_rank: tuple[int, int] | None = None
        templates = self._templates
        all_values = all(t == PARAM for t in typed)
        for tid in self._leaf_ids(self._route(typed)):
            tpl = templates.get(tid)
            if tpl is None or not _fits(tpl.consts, typed):
                continue
            if not tpl.consts and not all_values:
                continue  # a form of values only (`0x1f`) is not a pattern for words
            rank = (tpl.nwild, tid)
            if best_rank is None or rank < best_rank:
                best, best_rank = tpl, rank
        return best

    def _leaf_ids(self, route: tuple[Any, ...]) -> list[int]:
        """Ids in every leaf the route can reach, following the `<*>` branch as well."""
        nodes = [self._tree]
        for step in route:
            nxt = []
            for node in nodes:
                child = node.get(step)
                if child is not None:
                    nxt.append(child)
                if step != PARAM:
                    wild = node.get(PARAM)
                    if wild is not None:
                        nxt.append(wild)
            nodes = nxt
            if not nodes:
                return []
        out: list[int] = []
        for node in nodes:
            out.extend(node.get(None, ()))
        return out

    def _file(self, tpl: _Template) -> None:
        node = self._tree
        path: list[tuple[dict[Any, Any], Any]] = []
        for step in self._route(tpl.tokens):
            child = node.get(step)
            if child is None:
                # Drain's max_children: a full node sends new words down the `<*>` branch.
                if step != PARAM and len(node) >= self.config.max_children:
                    step = PARAM
                    child = node.get(step)
                if child is None:
                    child = node[step] = {}
            path.append((node, step))
            node = child
        leaf = node.setdefault(None, [])
        leaf.append(tpl.id)
        path.append((node, None))
        tpl.leaf = path

    @staticmethod
    def _unfile(tpl: _Template) -> None:
        """Take a form out of its leaf, and prune the nodes that hold nothing any more."""
        path, tpl.leaf = tpl.leaf, None
        if not path:
            return
        leaf_node = path[-1][0]
        ids = leaf_node.get(None)
        if ids is not None and tpl.id in ids:
            ids.remove(tpl.id)
            if not ids:
                del leaf_node[None]
        for node, step in reversed(path[:-1]):
            child = node.get(step)
            if child is not None and not child:
                del node[step]
            else:
                break

    # -- creation, display, merges, eviction ----------------------------------------------------

    def _new_id(self, typed: tuple[str, ...]) -> int:
        if not self.config.content_ids:
            self._counter += 1
            return self._counter
        tid = content_id(typed)
        while tid in self._templates or tid in self._alias:
            tid = tid % ((1 << _ID_BITS) - 1) + 1  # linear probing on a collision
        return tid

    def _bump(self, ntokens: int) -> None:
        self._generation[ntokens] = self._generation.get(ntokens, 0) + 1

    def _owner(self, form_id: int) -> int:
        return self._alias.get(form_id, form_id)

    def _create(self, typed: tuple[str, ...], tokens: list[str], masked: list[str]) -> _Template:
        display: list[str | None] = [
            shown(t, masked[i], tokens[i]) if is_var(t) else None for i, t in enumerate(typed)
        ]
        fixed = [i for i, t in enumerate(typed) if is_var(t) and masked[i] == tokens[i]]
        for i in fixed:
            display[i] = tokens[i]
        tpl = _Template(self._new_id(typed), typed, display, 1, fixed)
        self._add_form(tpl)
        return tpl

    def _add_form(self, tpl: _Template) -> None:
        self._templates[tpl.id] = tpl
        self._live_tokens += len(tpl.tokens)
        self._index(tpl)
        self._bump(len(tpl.tokens))
        self._group(tpl)

    def _index(self, tpl: _Template) -> None:
        """File a form in the tree and the skeleton indexes (all rebuilt, never saved)."""
        self._file(tpl)
        first = self._first_word(tpl)
        if first is not None:
            self._first_words.setdefault(first, {})[tpl.id] = None
        if len(tpl.skeleton) >= 2:
            self._skeletons.setdefault(tpl.skeleton, []).append(tpl.id)
        if len(tpl.words) >= 2:
            self._word_skeletons.setdefault(tpl.words, []).append(tpl.id)
            self._shapes.setdefault(tpl.shape, []).append(tpl.id)

    def _drop_form(self, tpl: _Template) -> None:
        del self._templates[tpl.id]
        self._live_tokens -= len(tpl.tokens)
        self._unfile(tpl)
        self._ungroup(tpl)
        self._bump(len(tpl.tokens))
        indexes = ((self._skeletons, tpl.skeleton), (self._word_skeletons, tpl.words), (self._shapes, tpl.shape))
        for index, key in indexes:
            ids = index.get(key)
            if ids is not None and tpl.id in ids:
                ids.remove(tpl.id)
                if not ids:
                    del index[key]
        first = self._first_word(tpl)
        if first is not None:
            same_word = self._first_words.get(first, {})
            same_word.pop(tpl.id, None)
            if not same_word:
                self._first_words.pop(first, None)

    @staticmethod
    def _first_word(tpl: _Template) -> tuple[int, int, str] | None:
        """(token count, place, word) of the form's first fixed token that is not value-like."""
        for i, t in tpl.consts:
            if not value_like(t):
                return len(tpl.tokens), i, t
        return None

    def _show(self, tpl: _Template, typed: tuple[str, ...], tokens: list[str], masked: list[str]) -> bool:
        """Fold one more line's shown forms into the template; True when its text changed."""
        changed = False
        for i, d in enumerate(tpl.display):
            if d is None or d == tpl.tokens[i]:
                continue
            if i in tpl.fixed:
                if tokens[i] != d:
                    tpl.fixed.discard(i)
                    tpl.display[i] = tpl.tokens[i]
                    changed = True
                continue
            if shown(typed[i], masked[i], tokens[i]) != d:
                tpl.display[i] = tpl.tokens[i]
                changed = True
        if changed:
            tpl.refresh()
        return changed

    @staticmethod
    def _rest(tokens: tuple[str, ...], pos: int) -> str:
        """The form without position `pos`, as a short digest: a sibling group's key costs the
        same for a 500-token message as for a 5-token one (the text would cost O(n) per key)."""
        rest = "\x1f".join(tokens[:pos]) + "\x1e" + "\x1f".join(tokens[pos + 1 :])
        return hashlib.blake2b(rest.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()

    @classmethod
    def _rest_of(cls, tpl: _Template, pos: int) -> str:
        """`_rest(tpl.tokens, pos)`, kept on the form: grouping, ungrouping and every sibling check
        (`_still`) of a form ask for the same digests again."""
        rests = tpl.rests
        if rests is None:
            rests = tpl.rests = [None] * len(tpl.tokens)
        rest = rests[pos]
        if rest is None:
            rest = rests[pos] = cls._rest(tpl.tokens, pos)
        return rest

    def _group(self, tpl: _Template) -> None:
        if len(tpl.skeleton) < 2:
            return  # a merge must leave a word or typed token: no all-`<*>` templates
        groups = self._groups
        for pos, tok in enumerate(tpl.tokens):
            key = (pos, self._rest_of(tpl, pos))
            words = groups.setdefault(key, {})
            words.setdefault(tok, []).append(tpl.id)
            if tok != PARAM:
                self._word_groups.setdefault(tok, set()).add(key)

    def _ungroup(self, tpl: _Template) -> None:
        """Take a form out of its sibling groups (groups stay as big as the live forms)."""
        if len(tpl.skeleton) < 2:
            return
        groups, word_groups = self._groups, self._word_groups
        for pos, tok in enumerate(tpl.tokens):
            key = (pos, self._rest_of(tpl, pos))
            words = groups.get(key)
            if words is None:
                continue
            ids = words.get(tok)
            if ids is not None and tpl.id in ids:
                ids.remove(tpl.id)
                if not ids:
                    del words[tok]
                    found = word_groups.get(tok)
                    if found is not None:
                        found.discard(key)
                        if not found:
                            del word_groups[tok]
            if not words:
                del groups[key]

    def _shared_elsewhere(self, words: Iterable[str], key: tuple[int, str]) -> bool:
        """Whether two of `words` also stand at one position of another message: then they are
        values that messages share (job or table names), not what tells messages apart."""
        seen: dict[tuple[int, str], int] = {}
        for word in words:
            for other in self._word_groups.get(word, ()):
                if other != key:
                    seen[other] = seen.get(other, 0) + 1
                    if seen[other] >= 2:
                        return True
        return False

    def _variable(self, words: dict[str, list[_Template]], key: tuple[int, str]) -> bool:
        """Whether the words seen at one position of otherwise equal templates are values."""
        if len(words) < 2:
            return False
        if PARAM in words or len(words) >= self.config.var_min_values:
            return True
        if sum(PARAM in w for w in words) >= 3:
            return True  # values of one kind with other constant parts (host names, job ids)
        known = self._values
        return sum(w in known for w in words) >= 2 or self._shared_elsewhere(words, key)

    def _merge_siblings(self, tpl: _Template) -> _Template:
        """Merge `tpl` with its siblings at every position where the words are variable."""
        merged = True
        while merged and len(tpl.skeleton) > 2:
            merged = False
            for pos, tok in enumerate(tpl.tokens):
                if tok == PARAM:
                    continue
                key = (pos, self._rest_of(tpl, pos))
                words = self._groups.get(key)
                if not words:
                    continue
                live: dict[str, list[_Template]] = {}
                for word, ids in list(words.items()):
                    # Drop ids that left, or whose form changed (a merge survivor keeps its id).
                    ids[:] = [i for i in dict.fromkeys(ids) if self._still(i, pos, word, key[1])]
                    if ids:
                        live[word] = [self._templates[i] for i in ids]
                    else:
                        del words[word]
                if not self._variable(live, key):
                    continue
                tpl = self._merge([t for ts in live.values() for t in ts])
                merged = True
                break
        return self._merge_skeleton(self._merge_shape(tpl))

    def _still(self, tid: int, pos: int, word: str, rest: str) -> bool:
        tpl = self._templates.get(tid)
        return (
            tpl is not None
            and pos < len(tpl.tokens)
            and tpl.tokens[pos] == word
            and self._rest_of(tpl, pos) == rest
        )

    def _merge(self, members: list[_Template]) -> _Template:
        """One form with `<*>` where `members` (same length) differ replaces them."""
        members = list({t.id: t for t in members}.values())
        survivor = min(members, key=lambda t: t.id)
        tokens = list(survivor.tokens)
        display = list(survivor.display)
        for t in members:
            for i, tok in enumerate(t.tokens):
                if tok != tokens[i]:
                    tokens[i] = display[i] = PARAM
        for t in members:
            for i, d in enumerate(t.display):
                if d != display[i]:
                    display[i] = tokens[i]
        fixed = set.intersection(*(t.fixed for t in members))
        fixed = {i for i in fixed if display[i] == survivor.display[i] and tokens[i] == survivor.tokens[i]}
        known = self._values
        for t in members:
            for i, tok in enumerate(t.tokens):
                if tokens[i] == PARAM and tok != PARAM and len(known) < _MAX_VALUE_WORDS:
                    known.add(tok)
        owners = {self._owner(t.id) for t in members}
        for t in members:
            self._drop_form(t)
        merged = _Template(survivor.id, tuple(tokens), display, sum(t.size for t in members), fixed)
        self._add_form(merged)
        self._unite(owners | {merged.id}, dead={t.id for t in members if t is not survivor})
        self.merges += 1
        return merged

    def _merge_shape(self, tpl: _Template) -> _Template:
        """Three or more forms with the same words in the same places: values elsewhere."""
        ids = self._shapes.get(tpl.shape, [])
        members = [self._templates[i] for i in ids if i in self._templates]
        if len(members) < _SHAPE_MIN_FORMS or len(tpl.words) < 2:
            return tpl
        return self._merge(members)

    def _merge_skeleton(self, tpl: _Template) -> _Template:
        """Forms with the same words in the same order but other values are one template."""
        ids = self._skeletons.get(tpl.skeleton, [])
        owners = {self._owner(i) for i in ids if i in self._templates}
        # Only words in common (typed values such as host:<*> aside): one template when the
        # lengths differ, i.e. some value took another number of tokens.
        n = len(tpl.tokens)
        templates = self._templates
        owners.update(
            self._owner(i)
            for i in self._word_skeletons.get(tpl.words, ())
            if i in templates and len(templates[i].tokens) != n
        )
        if len(owners) > 1:
            self._unite(owners, dead=set())
            self.merges += 1
        return tpl

    def _unite(self, owners: set[int], dead: set[int]) -> None:
        """Make the lowest of `owners` the template id of all of them; `dead` forms alias it."""
        root = min(self._owner(o) for o in owners)
        alias = self._alias
        moved = {o for o in owners if o != root} | dead
        for old in moved:
            alias[old] = root
            self._merged.append((old, root))
        if len(self._merged) > _MAX_MERGE_LOG:  # nobody drains it (a training miner): keep it short
            del self._merged[: len(self._merged) - _MAX_MERGE_LOG]
        for old, new in alias.items():
            if new in moved:
                alias[old] = root
        alias.pop(root, None)

    def take_merges(self) -> list[tuple[int, int]]:
        """(old id, surviving id) of the merges since the last call, oldest first: the owner of
        state keyed by template id moves it along (the pipeline's explainer windows)."""
        merged, self._merged = self._merged, []
        return merged

    def consolidate(self) -> int:
        """Re-check every form for variable positions and equal skeletons; returns merges.

        `add` checks a form when it is created; words learnt to be values later (a key=value
        value, a merged position) can make an earlier group variable. The trainer calls this
        once after the training lines.
        """
        before = self.merges
        for tid in list(self._templates):
            tpl = self._templates.get(tid)
            if tpl is not None:
                self._merge_siblings(tpl)
        return self.merges - before

    def limit_tokens(self, max_tokens: int | None) -> None:
        """Bound the tokens held across live forms (None: no bound); evicts at once if over."""
        if max_tokens is not None and max_tokens < 1:
            raise ConfigError(f"miner max_tokens must be positive or None, got {max_tokens}")
        self.max_tokens = max_tokens
        self._evict()

    def live_tokens(self) -> int:
        """Tokens across live forms: what `max_tokens` bounds."""
        return self._live_tokens

    def _over(self) -> bool:
        limit, budget = self.config.max_clusters, self.max_tokens
        if limit is not None and len(self._templates) > limit:
            return True
        # The newest form always stays, however long: a single message cannot empty the miner
        # and then be dropped itself.
        return budget is not None and self._live_tokens > budget and len(self._templates) > 1

    def _evict(self) -> None:
        while self._over():
            tpl = next(iter(self._templates.values()))
            self._drop_form(tpl)
            # The id lives on while another form of the template is live (`_root_form`).
            owner = self._owner(tpl.id)
            self._alias.pop(tpl.id, None)
            if not any(o == owner and f in self._templates for f, o in self._alias.items()):
                for old in [o for o, n in self._alias.items() if n == owner]:
                    del self._alias[old]

    # -- inspection ---------------------------------------------------------------------------

    def _root_form(self, template_id: int) -> _Template | None:
        tid = self._alias.get(template_id, template_id)
        tpl = self._templates.get(tid)
        if tpl is not None and self._alias.get(tid) is None:
            return tpl
        for fid, owner in self._alias.items():  # the owner form was evicted: its first heir
            if owner == tid and fid in self._templates:
                return self._templates[fid]
        return None

    def resolve(self, template_id: int) -> int | None:
        """The template id `template_id` is now (itself, or its merge survivor); None if gone."""
        tid = self._alias.get(template_id, template_id)
        return tid if self._root_form(tid) is not None else None

    def aliases(self) -> dict[int, int]:
        """Merged id -> surviving id, for every merge whose survivor is live."""
        return {old: new for old, new in self._alias.items() if self.resolve(new) is not None}

    def template(self, template_id: int) -> str | None:
        """The current text of a template, or None when no cluster has that id."""
        tpl = self._root_form(template_id)
        return None if tpl is None else tpl.text

    def templates(self) -> dict[int, str]:
        """Every live template's text by id."""
        out: dict[int, str] = {}
        for tid in self._templates:
            owner = self._owner(tid)
            if owner not in out:
                form = self._root_form(owner)
                if form is not None:
                    out[owner] = form.text
        return out

    def sizes(self) -> dict[int, int]:
        """Lines assigned to each template by `add` (all its forms, merged ones included)."""
        out: dict[int, int] = {}
        for tid, t in self._templates.items():
            owner = self._owner(tid)
            out[owner] = out.get(owner, 0) + t.size
        return out

    def __len__(self) -> int:
        return len({self._owner(tid) for tid in self._templates})

    @property
    def memo_size(self) -> int:
        """Entries in the masked-message memo."""
        return len(self._memo)

    # -- persistence --------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this miner is, as plain JSON values.

        Templates are listed least recently used first. The tree is rebuilt from them and the
        memo is a pure cache: neither is saved.
        """
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "masks_fingerprint": self._fingerprint,
            "config": self.config.to_dict(),
            "counter": self._counter,
            "templates": [
                [t.id, t.size, list(t.tokens), list(t.display), sorted(t.fixed)] for t in self._templates.values()
            ],
            "aliases": [[old, new] for old, new in self._alias.items()],
            "groups": [
                [pos, rest, [[word, ids] for word, ids in words.items()]]
                for (pos, rest), words in self._groups.items()
            ],
            "values": sorted(self._values),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], expected_config: MinerConfig | None = None) -> TemplateMiner:
        """Rebuild a miner from `to_state` output; BundleError on anything we did not write.

        With `expected_config`, also refuse a state saved under a different configuration.
        """
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise BundleError("not a logdetect template-miner state (wrong or missing 'format')")
        version = state.get("version")
        if version != STATE_VERSION:
            raise BundleError(
                f"template-miner state version {version!r} is not supported (this build reads "
                f"version {STATE_VERSION}); retrain or delete the snapshot"
            )
        try:
            config = MinerConfig.from_dict(state["config"])
        except (ConfigError, KeyError, TypeError) as exc:
            raise BundleError(f"template-miner state has an invalid config: {exc}") from exc
        if expected_config is not None and config != expected_config:
            raise BundleError(
                f"template-miner state was saved with config {config} but {expected_config} is "
                "configured; retrain or delete the snapshot"
            )
        miner = cls(config)
        if state.get("masks_fingerprint") != miner._fingerprint:
            raise BundleError(
                "template-miner state was saved with different mask definitions; retrain or "
                "delete the snapshot"
            )
        try:
            miner._counter = int(state["counter"])
            for tid, size, tokens, display, fixed in state["templates"]:
                if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                    raise TypeError(f"template {tid} tokens are not a list of strings")
                if not isinstance(display, list) or len(display) != len(tokens):
                    raise TypeError(f"template {tid} display does not match its tokens")
                shown = [None if d is None else str(d) for d in display]
                tpl = _Template(int(tid), tuple(tokens), shown, int(size), (int(i) for i in fixed))
                miner._templates[tpl.id] = tpl
                miner._live_tokens += len(tpl.tokens)
                miner._index(tpl)
            miner._alias = {int(old): int(new) for old, new in state["aliases"]}
            for pos, rest, words in state["groups"]:
                key = (int(pos), str(rest))
                miner._groups[key] = {str(w): [int(i) for i in ids] for w, ids in words}
                for w in miner._groups[key]:
                    if w != PARAM:
                        miner._word_groups.setdefault(w, set()).add(key)
            miner._values = {str(v) for v in state["values"]}
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"template-miner state is malformed: {exc}") from exc
        if config.max_clusters is not None and len(miner._templates) > config.max_clusters:
            raise BundleError("template-miner state holds more templates than its max_clusters")
        return miner

    def save(self, path: Path) -> int:
        """Write the state atomically (temp file in the same dir, fsync, rename); returns bytes."""
        state = self.to_state()
        try:
            data = orjson.dumps(state)
        except orjson.JSONEncodeError:
            # Lone surrogates (a source that decoded with surrogateescape) are not UTF-8;
            # the stdlib writes them as \udcXX escapes, and `load` reads those back.
            data = json.dumps(state, ensure_ascii=True, separators=(",", ":")).encode("ascii")
        write_atomic(Path(path), data)
        return len(data)

    @classmethod
    def load(cls, path: Path, expected_config: MinerConfig | None = None) -> TemplateMiner:
        """A miner restored from its state file; the config must match the one expected."""
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise BundleError(f"cannot read template-miner state {path}: {exc.strerror or exc}") from exc
        try:
            state = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            try:  # written by the stdlib fallback of `save` (escaped lone surrogates)?
                state = json.loads(raw)
            except ValueError:
                raise BundleError(f"template-miner state {path} is not valid JSON: {exc}") from exc
        return cls.from_state(state, expected_config)


def learn_templates(messages: Iterable[str], config: MinerConfig | None = None) -> TemplateMiner:
    """A miner that learnt `messages` in order and then consolidated: what training freezes."""
    miner = TemplateMiner(config)
    add = miner.add
    for message in messages:
        add(message)
    miner.consolidate()
    return miner


def remap_ids(by_id: dict[int, V], aliases: dict[int, int]) -> dict[int, V]:
    """`by_id` with every merged id's entry also under its surviving id (the survivor's own
    entry wins): a vocabulary or profile keyed by old ids keeps serving after merges."""
    out = dict(by_id)
    for old, new in sorted(aliases.items()):
        if old in by_id and new not in out:
            out[new] = by_id[old]
    return out


class Snapshotter:
    """Saves a miner on a timer (call `maybe_save` from the processing loop) and at shutdown.

    The clock is passed in. The first `maybe_save` starts the timer; a save happens when
    `interval_secs` have passed since the last one AND the miner learnt something since.
    Saves run on the caller's thread (the miner's owner), between lines, never per change.
    """

    def __init__(self, miner: TemplateMiner, path: Path, interval_secs: float = 60.0) -> None:
        self.miner = miner
        self.path = Path(path)
        self.interval_secs = interval_secs
        self._timer = SaveTimer(interval_secs)
        self._saved_revision: int | None = None
        self.saves = 0

    def maybe_save(self, now: float) -> bool:
        """Save the miner when the interval has passed and it changed; True when it saved."""
        if not self._timer.due(now) or self.miner.revision == self._saved_revision:
            return False
        self.save_now()
        return True

    def save_now(self) -> int:
        """Save the miner now; return the bytes written."""
        revision = self.miner.revision
        size = self.miner.save(self.path)
        self._saved_revision = revision
        self.saves += 1
        return size
