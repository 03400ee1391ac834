"""Template mining: Drain3's tree, our masking, our memo, our persistence.

Drain3 is wrapped, never leaked. We keep its `Drain` prefix tree and clustering rules (so
templates and cluster ids are what Drain3 would produce for the same masked messages), and own
everything around it:

* **Masking** (`agent.masking`): one pass, Drain3's own masker is not used.
* **Memo**: masked message → cluster, in a bounded LRU. Most lines repeat a message shape, so
  a hit skips the tree search. The memo is exact, not approximate: an entry is valid only while
  no cluster with the same token count has been created or changed since it was stored (a
  generation counter per token count; Drain's tree is keyed by token count first), and its
  cluster has not been evicted. Under those conditions Drain's tree search would return the same
  cluster, so results, `size` counts and the cluster LRU order are identical to bare Drain3.
  A hit still increments `size` and touches the cluster LRU: `size` is the number of lines
  `add` assigned to the cluster, as in Drain3.
* **Params** come from the mask values and from the tokens at the template's `<*>` positions,
  in token order; no per-template regex runs per line.
* **Persistence**: `to_state` is plain JSON (clusters in LRU order + the prefix tree, the
  config and a fingerprint of the mask definitions); `save` writes it atomically. Drain3's
  persistence handlers and jsonpickle are never used. `from_state` refuses other format
  versions, changed masks, and (when asked) a different config.
* **Bounded state**: `max_clusters` evicts the least recently used cluster. An evicted cluster
  that reappears is created again under a NEW id (id churn: a model vocabulary keyed on the old
  id sees it as unknown), and Drain's tree nodes are never removed (only `max_children` and
  masking bound them). The memo holds at most `cache_size` entries.

Tokenisation: the message is split on whitespace after `extra_delimiters` are replaced by
spaces, and masking runs on those tokens (Drain3 masks first, then splits; with the default
`extra_delimiters=()` the two agree).

One owner: a miner is not thread-safe; call it from one thread.
"""

from __future__ import annotations

import enum
import json
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from drain3.drain import Drain, LogCluster, Node

from agent.atomic import write_atomic
from agent.errors import BundleError, ConfigError
from agent.masking import MASK_NAMES, Masker, drain3_instructions, masks_fingerprint, select_masks

if TYPE_CHECKING:
    from drain3.template_miner_config import TemplateMinerConfig

STATE_FORMAT = "logdetect.template_miner"
STATE_VERSION = 1
PARAM = "<*>"


class ChangeType(enum.Enum):
    CREATED = "cluster_created"
    CHANGED = "cluster_template_changed"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class TemplateMatch:
    template_id: int  # Drain3 cluster id, stable across restarts (see eviction above)
    template: str  # current template text, with `<*>` and mask tokens such as <NUM>, <IP>
    params: tuple[str, ...]  # this line's variable values, in token order
    change: ChangeType


@dataclass(frozen=True)
class MinerConfig:
    sim_th: float = 0.4
    depth: int = 4
    max_children: int = 100
    max_clusters: int | None = 20000
    extra_delimiters: tuple[str, ...] = ()
    masks: tuple[str, ...] = MASK_NAMES
    cache_size: int = 20_000  # ~3 KiB per entry on long novel messages: a sidecar budget item

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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["extra_delimiters"] = list(self.extra_delimiters)
        d["masks"] = list(self.masks)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MinerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown miner config key(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    def drain3_config(self) -> TemplateMinerConfig:
        """An explicit Drain3 config equal to this one, masks as Drain3 regexes.

        Never reads a `drain3.ini`. Used by the bench's bare-Drain3 baseline; the miner itself
        builds Drain from the same values and masks on its own.
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


class _ClusterLRU(OrderedDict[int, LogCluster]):
    """Drain's `id_to_cluster` when bounded: same semantics as Drain3's LogClusterCache.

    `get` does not touch (fast_match tests candidates with it), `[]` touches, inserting past
    `maxsize` evicts the least recently used. Ours, rather than cachetools', because the
    iteration order IS the LRU order, which `to_state` saves so a restored miner evicts
    exactly as the original would have.
    """

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.maxsize = maxsize

    def __getitem__(self, key: int) -> LogCluster:
        value = super().__getitem__(key)
        self.move_to_end(key)
        return value

    def __setitem__(self, key: int, value: LogCluster) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.maxsize:
            self.popitem(last=False)


# A memo entry: (cluster or None for "match found nothing", generation of its token count,
# template text, indices of `<*>` in the template, usable by `add`).
_Entry = tuple[LogCluster | None, int, str, tuple[int, ...], bool]


@dataclass
class MemoStats:
    hits: int = 0
    misses: int = 0


class TemplateMiner:
    def __init__(self, config: MinerConfig | None = None) -> None:
        self.config = config if config is not None else MinerConfig()
        masks = select_masks(self.config.masks)
        self._masker = Masker(masks)
        self._fingerprint = masks_fingerprint(masks)
        self._drain = Drain(
            depth=self.config.depth,
            sim_th=self.config.sim_th,
            max_children=self.config.max_children,
            max_clusters=None,
            extra_delimiters=(),  # applied by us, before masking
            param_str=PARAM,
            parametrize_numeric_tokens=True,
        )
        if self.config.max_clusters is not None:
            self._drain.id_to_cluster = _ClusterLRU(self.config.max_clusters)
        self._bounded = self.config.max_clusters is not None
        self._delimiters = self.config.extra_delimiters
        self._memo: OrderedDict[str, _Entry] = OrderedDict()
        self._generation: dict[int, int] = {}
        self.revision = 0  # number of `add` calls; the snapshotter saves only when it moved
        self.stats = MemoStats()

    # -- the hot path -------------------------------------------------------------------------

    def _tokens(self, message: str) -> list[str]:
        if not self._delimiters:
            return message.split()
        for delimiter in self._delimiters:
            message = message.replace(delimiter, " ")
        return message.split()

    def _valid(self, entry: _Entry, ntokens: int) -> bool:
        cluster = entry[0]
        if entry[1] != self._generation.get(ntokens, 0):
            return False
        if cluster is None or not self._bounded:
            return True
        return self._drain.id_to_cluster.get(cluster.cluster_id) is cluster

    def _remember(self, key: str, entry: _Entry) -> None:
        memo = self._memo
        memo[key] = entry
        memo.move_to_end(key)
        if len(memo) > self.config.cache_size:
            memo.popitem(last=False)

    @staticmethod
    def _params(
        tokens: list[str], values: dict[int, tuple[str, ...]], wild: tuple[int, ...]
    ) -> tuple[str, ...]:
        if not wild:
            if not values:
                return ()
            if len(values) == 1:
                return next(iter(values.values()))
            return tuple(chain.from_iterable(values.values()))
        wild_set = set(wild)
        out: list[str] = []
        for i in sorted(wild_set.union(values)):
            if i in wild_set:
                out.append(tokens[i])  # the raw token, masks and all
            else:
                out.extend(values[i])
        return tuple(out)

    def _entry_for(self, cluster: LogCluster, ntokens: int, learnable: bool) -> _Entry:
        template_tokens = cluster.log_template_tokens
        wild = tuple(i for i, t in enumerate(template_tokens) if t == PARAM)
        return (cluster, self._generation.get(ntokens, 0), " ".join(template_tokens), wild, learnable)

    def add(self, message: str) -> TemplateMatch:
        """Learn from one message (training, and online mining) and return its template."""
        self.revision += 1
        tokens = self._tokens(message)
        masked, values = self._masker.mask_tokens(tokens)
        key = " ".join(masked)
        ntokens = len(masked)
        entry = self._memo.get(key)
        drain = self._drain
        if entry is not None and entry[4] and self._valid(entry, ntokens):
            cluster = entry[0]
            if cluster is not None:  # always so for `add` entries (entry[4])
                self.stats.hits += 1
                self._memo.move_to_end(key)
                cluster.size += 1
                if self._bounded:  # touch the cluster LRU as Drain does (`id_to_cluster[id]`)
                    drain.id_to_cluster.move_to_end(cluster.cluster_id)
                params = self._params(tokens, values, entry[3])
                return TemplateMatch(cluster.cluster_id, entry[2], params, ChangeType.NONE)

        self.stats.misses += 1
        cluster = drain.tree_search(drain.root_node, masked, drain.sim_th, False)
        if cluster is None:
            drain.clusters_counter += 1
            cluster = LogCluster(masked, drain.clusters_counter)
            drain.id_to_cluster[cluster.cluster_id] = cluster
            drain.add_seq_to_prefix_tree(drain.root_node, cluster)
            change = ChangeType.CREATED
        else:
            new_tokens = tuple(drain.create_template(masked, cluster.log_template_tokens))
            if new_tokens == cluster.log_template_tokens:
                change = ChangeType.NONE
            else:
                cluster.log_template_tokens = new_tokens
                change = ChangeType.CHANGED
            cluster.size += 1
            drain.id_to_cluster[cluster.cluster_id]  # touch the cluster LRU as Drain does
        if change is not ChangeType.NONE:
            # Any other message of this token count may now land elsewhere: its memo entries lapse.
            self._generation[ntokens] = self._generation.get(ntokens, 0) + 1
        entry = self._entry_for(cluster, ntokens, learnable=True)
        self._remember(key, entry)
        return TemplateMatch(cluster.cluster_id, entry[2], self._params(tokens, values, entry[3]), change)

    def match(self, message: str) -> TemplateMatch | None:
        """The template this message fits as it is, without learning; None when none does.

        First the cluster `add` would choose, if it would not have to change; otherwise Drain's
        exact match (all non-`<*>` tokens equal) over every cluster with this token count.
        Never creates or changes a cluster, never touches `size` or the LRU.
        """
        tokens = self._tokens(message)
        masked, values = self._masker.mask_tokens(tokens)
        key = " ".join(masked)
        ntokens = len(masked)
        entry = self._memo.get(key)
        if entry is None or not self._valid(entry, ntokens):
            self.stats.misses += 1
            entry = self._lookup(masked, key, ntokens)
            self._remember(key, entry)
        else:
            self.stats.hits += 1
            self._memo.move_to_end(key)
        cluster = entry[0]
        if cluster is None:
            return None
        params = self._params(tokens, values, entry[3])
        return TemplateMatch(cluster.cluster_id, entry[2], params, ChangeType.NONE)

    def _lookup(self, masked: list[str], key: str, ntokens: int) -> _Entry:
        drain = self._drain
        cluster = drain.tree_search(drain.root_node, masked, drain.sim_th, False)
        if cluster is not None:
            fitted = tuple(drain.create_template(masked, cluster.log_template_tokens))
            if fitted == cluster.log_template_tokens:  # `add` would take it unchanged
                return self._entry_for(cluster, ntokens, learnable=True)
        # Drain tokenises `key` exactly as `masked` (single spaces, no extra delimiters).
        cluster = drain.match(key, full_search_strategy="fallback")
        if cluster is None:
            return (None, self._generation.get(ntokens, 0), "", (), False)
        return self._entry_for(cluster, ntokens, learnable=False)

    # -- inspection ---------------------------------------------------------------------------

    def template(self, template_id: int) -> str | None:
        cluster = self._drain.id_to_cluster.get(template_id)
        return None if cluster is None else cluster.get_template()

    def templates(self) -> dict[int, str]:
        return {cid: c.get_template() for cid, c in self._drain.id_to_cluster.items()}

    def sizes(self) -> dict[int, int]:
        """Lines assigned to each live cluster by `add` (memo hits included)."""
        return {cid: c.size for cid, c in self._drain.id_to_cluster.items()}

    def __len__(self) -> int:
        return len(self._drain.id_to_cluster)

    @property
    def memo_size(self) -> int:
        return len(self._memo)

    # -- persistence --------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this miner is, as plain JSON values.

        Clusters are listed least recently used first; the tree keeps its (possibly stale)
        cluster id lists as they are, so the restored tree is identical, not just equivalent.
        The memo is a pure cache and is not saved.
        """
        drain = self._drain
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "masks_fingerprint": self._fingerprint,
            "config": self.config.to_dict(),
            "clusters_counter": drain.clusters_counter,
            "clusters": [
                [c.cluster_id, c.size, list(c.log_template_tokens)] for c in drain.id_to_cluster.values()
            ],
            "tree": _node_to_json(drain.root_node),
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
        drain = miner._drain
        try:
            drain.clusters_counter = int(state["clusters_counter"])
            store = drain.id_to_cluster
            for cid, size, tokens in state["clusters"]:
                if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                    raise TypeError(f"cluster {cid} tokens are not a list of strings")
                cluster = LogCluster(tokens, int(cid))
                cluster.size = int(size)
                store[cluster.cluster_id] = cluster
            drain.root_node = _node_from_json(state["tree"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"template-miner state is malformed: {exc}") from exc
        if config.max_clusters is not None and len(drain.id_to_cluster) > config.max_clusters:
            raise BundleError("template-miner state holds more clusters than its max_clusters")
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


def _node_to_json(node: Node) -> list[Any]:
    children = {tok: _node_to_json(child) for tok, child in node.key_to_child_node.items()}
    return [list(node.cluster_ids), children]


def _node_from_json(data: Any) -> Node:
    if not (isinstance(data, list) and len(data) == 2 and isinstance(data[1], dict)):
        raise TypeError("tree node must be [cluster_ids, {token: node}]")
    node = Node()
    node.cluster_ids = [int(cid) for cid in data[0]]
    node.key_to_child_node = {str(tok): _node_from_json(child) for tok, child in data[1].items()}
    return node




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
        self._last: float | None = None
        self._saved_revision: int | None = None
        self.saves = 0

    def maybe_save(self, now: float) -> bool:
        if self._last is None:
            self._last = now
            return False
        if now - self._last < self.interval_secs:
            return False
        self._last = now
        if self.miner.revision == self._saved_revision:
            return False
        self.save_now()
        return True

    def save_now(self) -> int:
        revision = self.miner.revision
        size = self.miner.save(self.path)
        self._saved_revision = revision
        self.saves += 1
        return size
