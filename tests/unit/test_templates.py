"""The template miner on real logs: Drain3's results, our masking, memo, state and snapshots."""

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
from agent.templates import ChangeType, MinerConfig, Snapshotter, TemplateMatch, TemplateMiner

REPO = Path(__file__).resolve().parents[2]
SYSTEMS = [
    *("Android", "Apache", "BGL", "HDFS", "HPC", "Hadoop", "HealthApp", "Linux"),
    *("Mac", "OpenSSH", "OpenStack", "Proxifier", "Spark", "Windows", "Zookeeper"),
]

# Grouping accuracy floors with the default MinerConfig: measured (bench/grouping_accuracy.py)
# minus 0.02. Low values (Proxifier, OpenStack) are Drain's known weak spots on these corrected
# templates (variable token counts, GET/POST merged), not masking bugs.
GA_FLOOR = {
    "Android": 0.80,
    "Apache": 0.98,
    "BGL": 0.94,
    "HDFS": 0.97,
    "HPC": 0.86,
    "Hadoop": 0.94,
    "HealthApp": 0.88,
    "Linux": 0.66,
    "Mac": 0.66,
    "OpenSSH": 0.70,
    "OpenStack": 0.27,
    "Proxifier": 0.0,
    "Spark": 0.90,
    "Windows": 0.55,
    "Zookeeper": 0.94,
}
MEAN_GA_FLOOR = 0.74


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


def test_grouping_accuracy_floor_per_system(data_dir: Path) -> None:
    """GA on every Loghub-2k system stays above its floor, and so does the mean."""
    bench = _bench()
    scores = {}
    for f in bench.structured_files(data_dir):
        result = bench.evaluate_system(f, MinerConfig(), with_baseline=False)
        scores[result.system] = result.ga
    assert set(scores) == set(GA_FLOOR)
    below = {s: round(v, 3) for s, v in scores.items() if v < GA_FLOOR[s]}
    assert not below, f"GA below floor: {below}"
    mean = sum(scores.values()) / len(scores)
    assert mean >= MEAN_GA_FLOOR, f"mean GA {mean:.3f} < {MEAN_GA_FLOOR}"


# -- same results as bare Drain3 ---------------------------------------------------------------


@pytest.mark.parametrize("masks", [(), MASK_NAMES], ids=["no-masks", "masks"])
@pytest.mark.parametrize("max_clusters", [None, 12])
def test_memo_gives_exactly_drain3_results(
    data_dir: Path, max_clusters: int | None, masks: tuple[str, ...]
) -> None:
    """Ids, change types, templates and sizes equal bare Drain3's, with and without eviction.

    Without masks both see the same tokens: this isolates the memo, the LRU and our copy of
    Drain's add step. With masks (Drain3 gets them as regexes) the memo is hit on most lines;
    ids still agree on these systems. 12 clusters forces many evictions.
    """
    from drain3.template_miner import TemplateMiner as Drain3Miner

    config = MinerConfig(masks=masks, max_clusters=max_clusters)
    hits = 0
    for system in ("HDFS", "Mac", "Windows", "OpenSSH"):
        ours, bare = TemplateMiner(config), Drain3Miner(config=config.drain3_config())
        for line in _contents(data_dir, system):
            got, want = ours.add(line), bare.add_log_message(line)
            assert (got.template_id, got.change.value) == (want["cluster_id"], want["change_type"]), line
            # One Mac line masks differently (see test_masking_agrees_with_drain3_regexes).
            assert masks or got.template == want["template_mined"], line
        assert ours.sizes() == {c.cluster_id: c.size for c in bare.drain.clusters}, system
        hits += ours.stats.hits
    if masks:
        assert hits > 4000, "the memo was hardly used"


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


def test_match_uses_exact_fallback() -> None:
    """When the best `add` candidate would need to change, an exact match elsewhere is found."""
    miner = TemplateMiner(MinerConfig(masks=()))
    miner.add("A x y G")
    miner.add("A z w G")  # -> "A <*> <*> G"
    c3 = miner.add("A B C F")
    assert miner.match("A B C G") is not None
    assert miner.match("A B C G").template == "A <*> <*> G"  # type: ignore[union-attr]
    assert miner.match("A B C F").template_id == c3.template_id  # type: ignore[union-attr]
    assert miner.match("A B Q R") is None


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
    assert data["format"] == "logdetect.template_miner" and data["version"] == 1
    assert data["config"] == MinerConfig().to_dict()
    assert "py/" not in text
    assert len(data["clusters"]) == len(miner)
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
        TemplateMiner.from_state({**good, "tree": {"not": "a node"}})
    with pytest.raises(BundleError, match="malformed"):
        TemplateMiner.from_state({**good, "clusters": [[1, 1]]})
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
    """max_clusters and cache_size hold on Mac (341 true templates); evicted shapes get new ids."""
    lines = _contents(data_dir, "Mac")
    miner = TemplateMiner(MinerConfig(max_clusters=30, cache_size=50))
    first_id = miner.add(lines[0]).template_id
    for line in lines[1:]:
        miner.add(line)
        assert len(miner) <= 30
        assert miner.memo_size <= 50
    assert miner.template(first_id) is None  # evicted long ago
    again = miner.add(lines[0])
    assert again.change is ChangeType.CREATED and again.template_id != first_id  # documented churn


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
