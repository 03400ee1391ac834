"""The template miner on real logs: grouping accuracy, typing, merges, ids, memo, state, snapshots."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from agent.errors import BundleError, ConfigError
from agent.masking import BUILTIN_MASKS, MASK_NAMES, Masker, select_masks
from agent.templates import (
    ChangeType,
    MinerConfig,
    Snapshotter,
    TemplateMatch,
    TemplateMiner,
    learn_templates,
    remap_ids,
)

REPO = Path(__file__).resolve().parents[2]
SYSTEMS = [
    *("Android", "Apache", "BGL", "HDFS", "HPC", "Hadoop", "HealthApp", "Linux"),
    *("Mac", "OpenSSH", "OpenStack", "Proxifier", "Spark", "Windows", "Zookeeper"),
]

# One generic configuration for every system (issue 12): the mean over the 15 systems and a
# floor for each. Measured with bench/grouping_accuracy.py: mean 0.968, lowest Linux 0.807.
GA_FLOOR = 0.80
MEAN_GA_FLOOR = 0.95


def _bench() -> ModuleType:
    name = "logdetect_bench_grouping_accuracy"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / "grouping_accuracy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _contents(data_dir: Path, system: str) -> list[str]:
    path = data_dir / "loghub_2k" / system / f"{system}_2k.log_structured_corrected.csv"
    with path.open(newline="", encoding="utf-8") as f:
        return [row["Content"] for row in csv.DictReader(f)]


def _all_contents(data_dir: Path) -> Iterator[tuple[str, list[str]]]:
    for system in SYSTEMS:
        yield system, _contents(data_dir, system)


# -- grouping accuracy -------------------------------------------------------------------------


def test_grouping_accuracy_metric() -> None:
    """GA counts a line only when its predicted group has exactly its true group's lines."""
    ga = _bench().grouping_accuracy
    assert ga(["a", "a", "b"], [1, 1, 2]) == 1.0
    assert ga(["a", "a", "b"], [1, 1, 1]) == 0.0  # one merged group: nothing is exact
    assert ga(["a", "a", "b", "c"], [1, 2, 3, 4]) == 0.5  # a split, b and c right


def test_grouping_metrics() -> None:
    """FGA and FTA are F1 over groups; PA compares template texts with placeholders as <*>."""
    score = _bench().score
    got = score(["a <*>", "a <*>", "b"], [1, 1, 2], ["a <NUM>", "a <NUM>", "c"])
    assert (got.ga, got.fga, got.pa) == (1.0, 1.0, 2 / 3)
    assert got.fta == 0.5  # two right groups, one with the wrong text
    split = score(["a", "a", "b"], [1, 2, 3], ["a", "a", "b"])
    assert split.fga == _bench()._f1(1, 3, 2)


def test_grouping_accuracy_with_one_configuration(data_dir: Path) -> None:
    """`logdetect templates` on each raw Loghub-2k log: GA >= 0.80 on every system, mean >= 0.95."""
    bench = _bench()
    scores = {}
    for f in bench.structured_files(data_dir):
        _, truth = bench.load_structured(f)
        ids, _ = bench.templates_command(f.parent / f"{f.parent.name}_2k.log")
        scores[f.parent.name] = bench.grouping_accuracy(truth, ids)
    assert set(scores) == set(SYSTEMS)
    below = {s: round(v, 3) for s, v in scores.items() if v < GA_FLOOR}
    assert not below, f"GA below {GA_FLOOR}: {below}"
    mean = sum(scores.values()) / len(scores)
    assert mean >= MEAN_GA_FLOOR, f"mean GA {mean:.3f} < {MEAN_GA_FLOOR}"


@pytest.mark.parametrize("system", ["Mac", "Android"])
def test_memo_changes_nothing(data_dir: Path, system: str) -> None:
    """With the memo off every line is typed and looked up afresh: the same ids and texts."""
    lines = _contents(data_dir, system)
    cached, uncached = TemplateMiner(), TemplateMiner(MinerConfig(cache_size=0))
    for line in lines:
        a, b = cached.add(line), uncached.add(line)
        assert (a.template_id, a.template, a.params) == (b.template_id, b.template, b.params), line
    assert cached.sizes() == uncached.sizes()
    assert cached.stats.hits > len(lines) // 3


def test_masking_agrees_with_drain3_regexes(data_dir: Path) -> None:
    """The one-pass masker and the Drain3-style regexes of `drain3_config` mask alike.

    They may differ only where a lower-priority mask starts inside a higher-priority one
    (a handful of lines in 30 000).
    """
    from drain3.masking import LogMasker

    masker = Masker(BUILTIN_MASKS)
    regexes = LogMasker(MinerConfig().drain3_config().masking_instructions, "<", ">")
    total = differ = 0
    for _, lines in _all_contents(data_dir):
        for line in lines:
            total += 1
            differ += masker.mask(line) != " ".join(regexes.mask(line).split())
    assert total == 30_000
    assert differ <= 10


# -- masking and params ------------------------------------------------------------------------


_SLOT = re.compile(r"<\*>|<(?:PATH|UUID|BLK|IP|HEX|NUM)>")


def _fill(template: str, params: tuple[str, ...]) -> str:
    """Put params back into the template's `<*>` and mask slots, in order."""
    it = iter(params)
    return _SLOT.sub(lambda m: next(it), template)


def test_params_rebuild_every_line(data_dir: Path) -> None:
    """On all 30 000 lines, the template with its params filled in is the line again.

    So params are exactly the variable values, in order: whole tokens at `<*>`, mask values
    elsewhere.
    """
    for system, lines in _all_contents(data_dir):
        miner = TemplateMiner()
        for line in lines:
            m = miner.add(line)
            assert len(_SLOT.findall(m.template)) == len(m.params), (system, line, m)
            assert _fill(m.template, m.params) == " ".join(line.split()), (system, line, m)


def test_hdfs_masks_and_params(data_dir: Path) -> None:
    """A real HDFS line: block id, IPv4:port and path are masked, their values are the params."""
    raw = (data_dir / "hdfs" / "HDFS_v1_head20k_dev.log").read_text(encoding="utf-8").splitlines()
    bodies = [line.split(" ", 5)[5] for line in raw[:50]]
    miner = TemplateMiner()
    results = [miner.add(b) for b in bodies]
    receiving = next(r for b, r in zip(bodies, results, strict=True) if b.startswith("Receiving block"))
    assert receiving.template == "Receiving block <BLK> src: /<IP> dest: /<IP>"
    assert re.fullmatch(r"blk_-?\d+", receiving.params[0])
    assert all(re.fullmatch(r"\d+\.\d+\.\d+\.\d+:\d+", p) for p in receiving.params[1:])
    alloc = next(r for b, r in zip(bodies, results, strict=True) if "allocateBlock" in b)
    assert alloc.template.startswith("BLOCK* NameSystem.allocateBlock: <PATH>")
    assert alloc.params[0].startswith("/mnt/hadoop/mapred/system/job_")


@pytest.mark.parametrize(
    ("token", "masked"),
    [
        ("10.250.19.102:50010", "<IP>"),
        ("(10.0.0.1)", "(<IP>)"),
        ("fe80::1ff:fe23:4567:890a", "<IP>"),
        ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "<IP>"),
        ("12:34:56", "<NUM>:<NUM>:<NUM>"),  # a time is not an IPv6 address
        ("123e4567-e89b-12d3-a456-426614174000", "<UUID>"),
        ("blk_-1608999687919862906", "<BLK>"),
        ("/var/log/app-1/x.log", "<PATH>"),
        ("/tmp", "/tmp"),  # one segment stays a word
        ("0x1F3a", "<HEX>"),
        ("7f8a3c00d2e1", "<HEX>"),
        ("000000c4", "<HEX>"),
        ("deadbeefcafe", "deadbeefcafe"),  # no digit: a word
        ("size=-42", "size=<NUM>"),
        ("2.6.32", "<NUM>"),
        ("user123", "user123"),  # glued to letters: not a number
        ("add::feed", "add::feed"),
    ],
)
def test_mask_shapes(token: str, masked: str) -> None:
    """Each mask on the shapes it is meant for, and not on look-alikes."""
    assert Masker(BUILTIN_MASKS).mask(token) == masked


def test_mask_selection_and_config_validation() -> None:
    """Masks are chosen by name in canonical order; bad names and values are ConfigErrors."""
    assert MinerConfig(masks=("num", "ip")).masks == ("ip", "num")
    assert MinerConfig(masks=("uuid", "blk", "ip", "path", "hex", "num")) == MinerConfig()
    from_json = MinerConfig.from_dict({"masks": ["num"], "extra_delimiters": ["_"]})
    assert from_json == MinerConfig(masks=("num",), extra_delimiters=("_",))
    assert [m.name for m in select_masks(MASK_NAMES)] == list(MASK_NAMES)
    with pytest.raises(ConfigError, match="unknown mask"):
        MinerConfig(masks=("num", "email"))
    with pytest.raises(ConfigError, match="depth"):
        MinerConfig(depth=2)
    with pytest.raises(ConfigError, match="unknown miner config"):
        MinerConfig.from_dict({"sim_th": 0.5, "simth": 0.4})
    assert TemplateMiner(MinerConfig(masks=())).add("took 15 ms").template == "took 15 ms"


def test_extra_delimiters_split_before_masking() -> None:
    """With `_` as a delimiter, `job_123` becomes two tokens and the number is masked."""
    miner = TemplateMiner(MinerConfig(extra_delimiters=("_",)))
    m = miner.add("start job_123 now")
    assert m.template == "start job <NUM> now"
    assert m.params == ("123",)


# -- match (inference) -------------------------------------------------------------------------


def test_match_never_learns(data_dir: Path) -> None:
    """`match` returns the cluster `add` would, for known shapes; None otherwise; no state change."""
    lines = _contents(data_dir, "HDFS")
    miner = TemplateMiner()
    ids = [miner.add(line).template_id for line in lines[:1000]]
    before = json.dumps(miner.to_state(), sort_keys=True)
    for line, tid in zip(lines[:1000], ids, strict=True):
        m = miner.match(line)
        assert m is not None and m.template_id == tid and m.change is ChangeType.NONE
    assert miner.match("completely unseen message shape with eleven tokens in it ok") is None
    assert miner.match("completely unseen message shape with eleven tokens in it ok") is None  # memoised
    for line in lines[1000:]:
        miner.match(line)
    assert json.dumps(miner.to_state(), sort_keys=True) == before


def test_most_specific_template_wins() -> None:
    """A message fits a template when every word of it matches; the one with fewest values wins."""
    miner = TemplateMiner(MinerConfig(masks=()))
    for user in ("alice", "bob", "carol", "dave", "erin"):
        miner.add(f"session opened for user {user} by admin")
    general = miner.match("session opened for user zoe by admin")
    assert general is not None and general.template == "session opened for user <*> by admin"
    assert general.params == ("zoe",)
    special = miner.add("session opened for user root by cron")
    assert special.change is ChangeType.CREATED  # `cron` is not `admin`: another message
    assert miner.match("session opened for user root by cron").template_id == special.template_id  # type: ignore[union-attr]
    assert miner.match("session closed for user zoe by admin") is None


# -- typing, variability, merges -------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "typed"),
    [
        ("onExtend:1514038530000 14 0 4", ("onExtend:<*>", "<*>", "<*>", "<*>")),
        ("setLightsOn(true)", ("setLightsOn(<*>)",)),
        ("tty=NODEVssh ruser= rhost=10.0.0.1", ("tty=<*>", "ruser=", "rhost=<*>")),
        ("at Sun Jul  3 10:05:25 2005", ("at", "<*>", "<*>", "<*>", "<*>", "<*>")),
        ("lifetime <1 sec", ("lifetime", "<*>", "<*>")),
        ("850 bytes (1.16 KB) sent", ("<*>", "bytes", "<*>", "<*>", "sent")),
        ('tag="View Lock", name=x', ("tag=<*>", "<*>", "name=<*>")),
        ("This may take a while", ("This", "may", "take", "a", "while")),
        ("interface wl0 is up", ("interface", "<*>", "is", "up")),
        ("Resolved MSRA-SA-39.fareast.corp.com", ("Resolved", "MSRA-SA-<*>.fareast.corp.com")),
    ],
)
def test_token_types(message: str, typed: tuple[str, ...]) -> None:
    """Values are found by shape (digits, masks, key=, units, dates next to values), not by list."""
    from agent.masking import Masker
    from agent.token_types import typed_tokens

    masked, _ = Masker(BUILTIN_MASKS).mask_tokens(message.split())
    assert typed_tokens(masked) == typed


def test_two_forms_of_one_message_are_one_template(data_dir: Path) -> None:
    """The Linux example of issue 12: other values in key=value fields are the same template."""
    lines = _contents(data_dir, "Linux")
    miner = learn_templates(lines)
    trained = miner.match("authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=10.1.2.3")
    assert trained is not None
    other = miner.match("authentication failure; logname= uid=500 euid=500 tty=pts/2 ruser= rhost=example.org")
    assert other is not None and other.template_id == trained.template_id
    # Proxifier's close lines with and without "(x KB)" and "<1 sec": one template.
    prox = learn_templates(_contents(data_dir, "Proxifier"))
    forms = [
        "proxy.cse.cuhk.edu.hk:5070 close, 0 bytes sent, 0 bytes received, lifetime 00:01",
        "c.baidu.com:80 close, 1052 bytes (1.02 KB) sent, 113 bytes received, lifetime <1 sec",
    ]
    ids = {prox.match(f).template_id for f in forms}  # type: ignore[union-attr]
    assert len(ids) == 1
    # A frozen miner that never saw this form of the close line (sent in KB, lifetime mm:ss)
    # still knows it: same words in the same order, values elsewhere.
    first = learn_templates(_contents(data_dir, "Proxifier")[:800])
    unseen = "www.googletagservices.com:443 close, 1257 bytes (1.22 KB) sent, 540 bytes received, lifetime 04:00"
    got = first.match(unseen)
    assert got is not None and got.template_id == first.match(forms[0]).template_id  # type: ignore[union-attr]
    assert _fill(got.template, got.params) == unseen
    assert first.match("www.example.com:443 close, 12 bytes sent, lifetime 00:01") is None  # words differ


def test_constant_words_stay_apart(data_dir: Path) -> None:
    """Few words, each frequent, at one position are different messages (OpenStack's VM events)."""
    miner = learn_templates(_contents(data_dir, "OpenStack"))
    events = {
        miner.match(f"[instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] VM {e} (Lifecycle Event)").template_id  # type: ignore[union-attr]
        for e in ("Started", "Paused", "Resumed", "Stopped")
    }
    assert len(events) == 4


def test_merges_keep_old_ids_serving(data_dir: Path, tmp_path: Path) -> None:
    """A merge maps old ids to the survivor; what models keyed by old ids knew keeps serving."""
    lines = _contents(data_dir, "OpenSSH")
    miner = TemplateMiner()
    early = [miner.add(line).template_id for line in lines[:40]]
    vocab = {tid: i + 1 for i, tid in enumerate(sorted(set(early)))}  # a model trained on these ids
    for line in lines[40:]:
        miner.add(line)
    miner.consolidate()
    aliases = miner.aliases()
    merged = [tid for tid in vocab if tid in aliases]
    assert merged, "the user names of OpenSSH should have merged some early templates"
    served = remap_ids(vocab, aliases)
    for line, old in zip(lines[:40], early, strict=True):
        now = miner.match(line)
        assert now is not None and now.template_id == miner.resolve(old)
        assert served[now.template_id] in vocab.values()  # the model gets a token it knows
    # Ids survive a restart: the restored miner gives every line the same id and text.
    path = tmp_path / "miner.json"
    miner.save(path)
    restored = TemplateMiner.load(path)
    assert restored.aliases() == aliases
    for line in lines:
        a, b = miner.match(line), restored.match(line)
        assert a is not None and b is not None and (a.template_id, a.template) == (b.template_id, b.template)


def test_content_ids_agree_across_hosts_and_restarts(data_dir: Path, tmp_path: Path) -> None:
    """With content ids the first message's form names the template: same id, any order."""
    lines = _contents(data_dir, "Zookeeper")
    config = MinerConfig(content_ids=True)
    one, two = learn_templates(lines, config), learn_templates(reversed(lines), config)
    sample = lines[::50]
    same = sum(one.match(x).template_id == two.match(x).template_id for x in sample)  # type: ignore[union-attr]
    assert same >= 0.9 * len(sample)  # a merged template keeps its lowest id: order can pick it
    assert all(tid >= 1 << 20 for tid in one.templates())  # hashes, not a counter
    one.save(tmp_path / "a.json")
    again = TemplateMiner.load(tmp_path / "a.json")
    assert all(again.match(x).template_id == one.match(x).template_id for x in sample)  # type: ignore[union-attr]


# -- persistence -------------------------------------------------------------------------------


def _run(miner: TemplateMiner, lines: list[str]) -> list[TemplateMatch]:
    return [miner.add(line) for line in lines]


@pytest.mark.parametrize(("system", "max_clusters"), [("HDFS", 20000), ("Mac", 40), ("BGL", None)])
def test_save_load_continues_like_uninterrupted(
    data_dir: Path, tmp_path: Path, system: str, max_clusters: int | None
) -> None:
    """Save after the first half, load, add the second half: same ids, templates, params, state.

    Mac with 40 clusters evicts constantly, so the restored LRU order is exercised too.
    """
    lines = _contents(data_dir, system)
    half = len(lines) // 2
    config = MinerConfig(max_clusters=max_clusters)
    straight = TemplateMiner(config)
    _run(straight, lines[:half])
    expected = _run(straight, lines[half:])

    first = TemplateMiner(config)
    _run(first, lines[:half])
    path = tmp_path / "state.json"
    written = first.save(path)
    assert written == path.stat().st_size
    restored = TemplateMiner.load(path, expected_config=config)
    assert restored.templates() == first.templates()
    assert _run(restored, lines[half:]) == expected
    assert restored.to_state() == straight.to_state()
    if max_clusters is not None and max_clusters < 100:
        assert max(r.template_id for r in expected) > max_clusters  # eviction happened


def test_state_is_plain_versioned_json(data_dir: Path, tmp_path: Path) -> None:
    """The file is plain JSON, mode 0600, with format, version, config; no jsonpickle tags."""
    miner = TemplateMiner()
    _run(miner, _contents(data_dir, "Zookeeper"))
    path = tmp_path / "state.json"
    miner.save(path)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    assert data["format"] == "logdetect.template_miner" and data["version"] == 3
    assert data["config"] == MinerConfig().to_dict()
    assert "py/" not in text
    assert len({miner.resolve(t[0]) for t in data["templates"]}) == len(miner)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left behind


def test_odd_messages_and_surrogates(tmp_path: Path) -> None:
    """Empty, blank and NUL-bearing messages mine; lone surrogates survive save and load."""
    miner = TemplateMiner()
    assert miner.add("").template == ""
    assert miner.add("   ").template_id == miner.add("").template_id
    assert miner.add("nul\x00byte 7").params == ("7",)
    odd = miner.add("bad \udc80 byte 42")
    path = tmp_path / "state.json"
    miner.save(path)
    restored = TemplateMiner.load(path)
    assert restored.template(odd.template_id) == "bad \udc80 byte <NUM>"
    assert restored.match("bad \udc80 byte 43") is not None


def test_state_refusals(data_dir: Path, tmp_path: Path) -> None:
    """Other versions, other masks, another config, garbage and missing files: BundleError."""
    miner = TemplateMiner()
    _run(miner, _contents(data_dir, "HDFS")[:200])
    good = miner.to_state()

    with pytest.raises(BundleError, match="version"):
        TemplateMiner.from_state({**good, "version": 2})
    with pytest.raises(BundleError, match="format"):
        TemplateMiner.from_state({"py/object": "drain3.drain.Drain"})
    with pytest.raises(BundleError, match="mask definitions"):
        TemplateMiner.from_state({**good, "masks_fingerprint": "0" * 16})
    with pytest.raises(BundleError, match="config"):
        TemplateMiner.from_state(good, expected_config=MinerConfig(sim_th=0.5))
    with pytest.raises(BundleError, match="invalid config"):
        TemplateMiner.from_state({**good, "config": {**good["config"], "depth": 1}})
    with pytest.raises(BundleError, match="malformed"):
        TemplateMiner.from_state({**good, "groups": {"not": "a list"}})
    with pytest.raises(BundleError, match="malformed"):
        TemplateMiner.from_state({**good, "templates": [[1, 1]]})
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\x80not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        TemplateMiner.load(bad)
    with pytest.raises(BundleError, match="cannot read"):
        TemplateMiner.load(tmp_path / "missing.json")
    assert TemplateMiner.from_state(good, expected_config=MinerConfig()).templates() == miner.templates()


def test_drain3_ini_in_cwd_is_ignored(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drain3.ini in the working directory changes nothing (it would change bare Drain3)."""
    lines = _contents(data_dir, "OpenSSH")[:500]
    reference = [(m.template_id, m.template) for m in _run(TemplateMiner(), lines)]

    (tmp_path / "drain3.ini").write_text(
        "[DRAIN]\nsim_th = 0.95\ndepth = 6\nmax_children = 3\n"
        '[MASKING]\nmasking = [{"regex_pattern": "\\\\S+", "mask_with": "ALL"}]\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    from drain3.template_miner import TemplateMiner as Drain3Miner

    assert Drain3Miner().config.drain_sim_th == 0.95  # the file is one Drain3 would read
    assert MinerConfig().drain3_config().drain_sim_th == 0.4
    assert [(m.template_id, m.template) for m in _run(TemplateMiner(), lines)] == reference


# -- bounded state -----------------------------------------------------------------------------


def test_bounded_clusters_and_memo(data_dir: Path) -> None:
    """max_clusters and cache_size hold on Mac (341 true templates); evicted ids are not reused."""
    lines = _contents(data_dir, "Mac")
    miner = TemplateMiner(MinerConfig(max_clusters=30, cache_size=50))
    first_id = miner.add(lines[0]).template_id
    for line in lines[1:]:
        miner.add(line)
        assert len(miner) <= 30 and len(miner._templates) <= 30
        assert miner.memo_size <= 50
    # The indexes follow the live forms: no tree node, sibling group or index entry of an evicted one.
    forms = list(miner._templates.values())
    assert len(miner._groups) <= sum(len(t.tokens) for t in forms)

    def leaves(node: dict[object, object]) -> int:
        return sum(len(v) if k is None else leaves(v) for k, v in node.items())  # type: ignore[arg-type]

    assert leaves(miner._tree) == len(forms)
    assert sorted(i for ids in miner._first_words.values() for i in ids) == sorted(
        t.id for t in forms if TemplateMiner._first_word(t) is not None)
    assert miner.template(first_id) is None  # evicted long ago
    again = miner.add(lines[0])
    assert again.template_id != first_id  # documented churn: an evicted id is not reused


def test_token_budget_bounds_long_messages(data_dir: Path) -> None:
    """`limit_tokens` bounds the tokens held across forms (the miner's bytes), not only the count:
    long never-seen messages evict the least recently used forms; the newest always stays."""
    lines = _contents(data_dir, "Mac")
    miner = TemplateMiner(MinerConfig(max_clusters=None))
    for line in lines:
        miner.add(line)
    unbounded = miner.live_tokens()
    assert unbounded == sum(len(t.tokens) for t in miner._templates.values())
    miner.limit_tokens(unbounded // 4)  # takes effect at once
    assert miner.live_tokens() <= unbounded // 4
    for i, line in enumerate(lines):
        long = f"{line} " + " ".join(f"fresh{i}word{k}" for k in range(150))
        miner.add(long)
        assert miner.live_tokens() == sum(len(t.tokens) for t in miner._templates.values())
        assert miner.live_tokens() <= unbounded // 4
    assert len(miner._groups) <= miner.live_tokens()
    miner.limit_tokens(1)  # one form longer than the whole budget: it alone stays
    assert len(miner) == 1 and miner.template(miner.add(lines[-1]).template_id) is not None
    # The budget is the owner's setting, not saved state; the count is rebuilt on load.
    again = TemplateMiner.from_state(miner.to_state())
    assert again.max_tokens is None and again.live_tokens() == miner.live_tokens()


def test_sizes_count_lines(data_dir: Path) -> None:
    """Cluster sizes add up to the lines added (memo hits included), without eviction."""
    lines = _contents(data_dir, "HDFS")
    miner = TemplateMiner(MinerConfig(max_clusters=None))
    _run(miner, lines)
    assert sum(miner.sizes().values()) == len(lines)
    assert miner.stats.hits > len(lines) // 2


# -- snapshots ---------------------------------------------------------------------------------


def test_snapshotter_timer_and_shutdown(data_dir: Path, tmp_path: Path) -> None:
    """Saves only after the interval and only when something was learnt; save_now always writes."""
    lines = _contents(data_dir, "HDFS")
    miner = TemplateMiner()
    path = tmp_path / "state" / "miner.json"
    path.parent.mkdir()
    snap = Snapshotter(miner, path, interval_secs=60.0)
    t0 = 1_700_000_000.0
    assert snap.maybe_save(t0) is False  # starts the timer
    _run(miner, lines[:100])
    assert snap.maybe_save(t0 + 59.0) is False
    assert not path.exists()
    assert snap.maybe_save(t0 + 60.0) is True
    assert TemplateMiner.load(path).templates() == miner.templates()
    assert snap.maybe_save(t0 + 200.0) is False  # nothing new learnt
    _run(miner, lines[100:200])
    assert snap.maybe_save(t0 + 230.0) is False  # interval counts from the last check that fired
    assert snap.maybe_save(t0 + 261.0) is True
    _run(miner, lines[200:])
    size = snap.save_now()
    assert size == path.stat().st_size
    assert TemplateMiner.load(path).to_state() == miner.to_state()
    assert sorted(os.listdir(path.parent)) == ["miner.json"]


def test_a_form_of_values_only_is_no_pattern_for_words(data_dir: Path) -> None:
    """Android logs one-token messages of values and of words: a word stays novel (issue 11's
    novel-event recall), it does not fit the all-`<*>` form of the values."""
    miner = learn_templates(_contents(data_dir, "Android")[:800])
    assert miner.match("mHeadsUpExistenceChangedRunnable") is None
    assert miner.match("abandonAudioFocus") is None
