"""How well log lines group into templates on Loghub-2k, and the miner's speed against Drain3.

    .venv/bin/python bench/grouping_accuracy.py [--data DIR] [--repeats 3] [--prefixed] [--json]

1. Per system of `loghub_2k/*/` (15 systems, 2,000 lines each), the raw `*_2k.log` goes
   through `logdetect templates --format csv --no-multiline` (headers parsed, templates
   learnt and frozen exactly as `train` does, every line matched back), with the default
   configuration: one configuration for all systems, nothing per system. The groups and
   template texts are compared with the corrected ground truth (`EventTemplate` of
   `*_structured_corrected.csv`), with the four metrics of Loghub-2.0 (Jiang et al., ISSTA'24):
     GA   grouping accuracy: share of lines whose predicted group has exactly the lines of
          their true group (Zhu et al., ICSE-SEIP'19)
     FGA  F1 over groups: a predicted group is right when it is exactly a true group
     PA   parsing accuracy: share of lines whose template text equals the true one
     FTA  F1 over templates: a template is right when its group is exactly a true group AND
          its text equals the true one
   Template texts are compared after writing mask placeholders (<NUM>, <IP>, ...) as `<*>` and
   collapsing whitespace, on both sides.
   "before" is bare Drain3 `add_log_message` on the `Content` column with the same masks and
   tree settings (which is what the miner reproduced exactly before issue 12).
2. `--prefixed`: each raw line is prefixed with three columns no known header has (epoch
   seconds, an ISO date, a host name) and the same command (`--log-format auto`) runs on that;
   its GA is shown beside the plain GA.
3. Throughput of `TemplateMiner.add` against bare Drain3 `add_log_message` with equivalent
   masking (`MinerConfig.drain3_config()`), on the message bodies of
   `hdfs/HDFS_v1_head20k_dev.log`, in the same run; best of `--repeats`, as a ratio.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from contextlib import redirect_stdout
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from agent.cli import main as logdetect  # noqa: E402
from agent.templates import MinerConfig, TemplateMiner  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("LOGDETECT_DATA", REPO.parent / "shared" / "data"))
_PLACEHOLDER = re.compile(r"<(?:[A-Z]+|\*)>")


def grouping_accuracy(truth: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """Fraction of lines whose predicted group has exactly the lines of their true group."""
    if len(truth) != len(predicted):
        raise ValueError("truth and predicted differ in length")
    if not truth:
        return 0.0
    true_groups, pred_groups = _groups(truth), _groups(predicted)
    correct = 0
    for members in pred_groups.values():
        if true_groups[truth[members[0]]] == members:  # visited in order: equal lists = equal sets
            correct += len(members)
    return correct / len(truth)


def _groups(labels: Sequence[Hashable]) -> dict[Hashable, list[int]]:
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        groups[label].append(i)
    return groups


def _f1(correct: int, predicted: int, true: int) -> float:
    if correct == 0:
        return 0.0
    precision, recall = correct / predicted, correct / true
    return 2 * precision * recall / (precision + recall)


def normalise(template: str) -> str:
    """A template text as compared: placeholders written `<*>`, whitespace collapsed."""
    return " ".join(_PLACEHOLDER.sub("<*>", template).split())


@dataclass(frozen=True)
class Scores:
    """GA, FGA, PA and FTA of one grouping against the truth, and its group count."""

    ga: float
    fga: float
    pa: float
    fta: float
    groups: int


def score(truth: Sequence[str], predicted: Sequence[Hashable], texts: Sequence[str]) -> Scores:
    """GA, FGA, PA and FTA of predicted groups and per-line template texts against the truth."""
    true_groups, pred_groups = _groups(truth), _groups(predicted)
    exact = [m for m in pred_groups.values() if true_groups[truth[m[0]]] == m]
    right_text = [m for m in exact if normalise(texts[m[0]]) == normalise(truth[m[0]])]
    pa = sum(normalise(t) == normalise(p) for t, p in zip(truth, texts, strict=True)) / len(truth)
    return Scores(
        ga=grouping_accuracy(truth, predicted),
        fga=_f1(len(exact), len(pred_groups), len(true_groups)),
        pa=pa,
        fta=_f1(len(right_text), len(pred_groups), len(true_groups)),
        groups=len(pred_groups),
    )


@dataclass(frozen=True)
class SystemResult:
    """Grouping accuracy of one Loghub system, ours and bare Drain3's."""

    system: str
    lines: int
    true_groups: int
    after: Scores
    before: Scores
    top: tuple[tuple[int, str], ...]  # (lines, template) of the most frequent templates
    prefixed_ga: float | None = None


def load_structured(path: Path) -> tuple[list[str], list[str]]:
    """(Content, EventTemplate) columns of a Loghub structured CSV."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["Content"] for r in rows], [r["EventTemplate"] for r in rows]


def structured_files(data_dir: Path) -> list[Path]:
    """The Loghub-2k ground-truth CSVs (corrected templates), one per system."""
    return sorted((data_dir / "loghub_2k").glob("*/*_structured_corrected.csv"))


def templates_command(log: Path, log_format: str = "auto") -> tuple[list[int], list[str]]:
    """`logdetect templates --format csv --no-multiline` on one file: (ids, texts) per line."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "groups.csv"
        with redirect_stdout(io.StringIO()):
            code = logdetect(["templates", "--input", str(log), "--log-format", log_format,
                              "--no-multiline", "--format", "csv", "--output", str(out)])
        if code != 0:
            raise RuntimeError(f"logdetect templates exited {code} on {log}")
        with out.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    return [int(r["template_id"]) for r in rows], [r["template"] for r in rows]


def bare_drain3(lines: Sequence[str], config: MinerConfig) -> tuple[list[int], list[str]]:
    """Bare Drain3 on the same lines with the same masks; templates read after the last line."""
    from drain3.template_miner import TemplateMiner as Drain3Miner

    miner = Drain3Miner(config=config.drain3_config())
    ids = [miner.add_log_message(line)["cluster_id"] for line in lines]
    final = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    return ids, [final[i] for i in ids]


def prefix_lines(lines: Sequence[str]) -> list[str]:
    """Three columns no known header has in front of each line: epoch seconds, a date, a host."""
    out = []
    for i, line in enumerate(lines):
        t = 1_700_000_000 + 7 * i
        day = time.strftime("%Y-%m-%d", time.gmtime(t))
        out.append(f"{t} {day} node-{(i * 7919) % 23:02d} {line}")
    return out


def evaluate_system(path: Path, config: MinerConfig, prefixed: bool = False) -> SystemResult:
    """Grouping accuracy of one system's lines, with the bare-Drain3 baseline if asked."""
    contents, truth = load_structured(path)
    system = path.parent.name
    raw = path.parent / f"{system}_2k.log"
    ids, texts = templates_command(raw)
    if len(ids) != len(truth):
        raise RuntimeError(f"{system}: the command gave {len(ids)} lines for {len(truth)} structured rows")
    before_ids, before_texts = bare_drain3(contents, config)
    counts = Counter(ids)
    text_of = dict(zip(ids, texts, strict=True))
    top = tuple((n, text_of[tid]) for tid, n in counts.most_common(3))
    prefixed_ga = None
    if prefixed:
        with tempfile.TemporaryDirectory() as tmp:
            shifted = Path(tmp) / raw.name
            lines = raw.read_text(encoding="utf-8", errors="replace").splitlines()
            shifted.write_text("\n".join(prefix_lines(lines)) + "\n", encoding="utf-8")
            prefixed_ids, _ = templates_command(shifted)
        prefixed_ga = grouping_accuracy(truth, prefixed_ids)
    return SystemResult(
        system=system,
        lines=len(truth),
        true_groups=len(set(truth)),
        after=score(truth, ids, texts),
        before=score(truth, before_ids, before_texts),
        top=top,
        prefixed_ga=prefixed_ga,
    )


def hdfs_messages(path: Path) -> list[str]:
    """Message bodies of HDFS_v1 lines: `date time pid level component: message`."""
    out = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\r\n").split(" ", 5)
            if len(parts) == 6:
                out.append(parts[5])
    return out


@dataclass(frozen=True)
class Throughput:
    """Lines per second of our miner and of bare Drain3 on the same lines."""

    lines: int
    miner_lines_per_sec: float
    drain3_lines_per_sec: float

    @property
    def ratio(self) -> float:
        """Our speed over bare Drain3's."""
        return self.miner_lines_per_sec / self.drain3_lines_per_sec


def measure_throughput(lines: Sequence[str], config: MinerConfig, repeats: int = 3) -> Throughput:
    """Best-of-`repeats` lines/s from a cold miner, ours and bare Drain3, interleaved."""
    from drain3.template_miner import TemplateMiner as Drain3Miner

    best_ours = best_bare = float("inf")
    for _ in range(max(1, repeats)):
        ours = TemplateMiner(config)
        add = ours.add
        started = time.perf_counter()
        for line in lines:
            add(line)
        best_ours = min(best_ours, time.perf_counter() - started)

        bare = Drain3Miner(config=config.drain3_config())
        add_bare = bare.add_log_message
        started = time.perf_counter()
        for line in lines:
            add_bare(line)
        best_bare = min(best_bare, time.perf_counter() - started)
    return Throughput(len(lines), len(lines) / best_ours, len(lines) / best_bare)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def main(argv: Sequence[str] | None = None) -> int:
    """Print grouping accuracy per system and the throughput ratio."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data directory")
    parser.add_argument("--repeats", type=int, default=3, help="throughput: best of this many runs")
    parser.add_argument("--prefixed", action="store_true", help="also run on lines with unknown header columns")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args(argv)

    config = MinerConfig()
    files = structured_files(args.data)
    if not files:
        parser.error(f"no loghub_2k/*/*_structured_corrected.csv under {args.data}")
    results = [evaluate_system(f, config, args.prefixed) for f in files]
    hdfs = args.data / "hdfs" / "HDFS_v1_head20k_dev.log"
    tput = measure_throughput(hdfs_messages(hdfs), config, args.repeats)

    metrics = ("ga", "fga", "pa", "fta")
    means = {f"{side}_{m}": _mean([getattr(getattr(r, side), m) for r in results])
             for side in ("after", "before") for m in metrics}
    if args.json:
        print(json.dumps({
            "config": config.to_dict(),
            "systems": [asdict(r) for r in results],
            "means": means,
            "throughput": {**asdict(tput), "ratio": tput.ratio, "input": str(hdfs)},
        }))
        return 0

    print("Loghub-2k (corrected templates): `logdetect templates` with the default configuration; "
          "before = bare Drain3")
    head = f"{'system':<10} {'groups':>6} {'tpl':>4} |  {'GA':>5} {'FGA':>5} {'PA':>5} {'FTA':>5} | before:"
    head += f" {'GA':>5} {'FGA':>5} {'PA':>5} {'FTA':>5}"
    if args.prefixed:
        head += f" | {'prefixed GA':>11} {'diff':>6}"
    print(head)
    for r in results:
        a, b = r.after, r.before
        row = (f"{r.system:<10} {r.true_groups:>6} {a.groups:>4} |  {a.ga:>5.3f} {a.fga:>5.3f} {a.pa:>5.3f} "
               f"{a.fta:>5.3f} |        {b.ga:>5.3f} {b.fga:>5.3f} {b.pa:>5.3f} {b.fta:>5.3f}")
        if r.prefixed_ga is not None:
            row += f" | {r.prefixed_ga:>11.3f} {r.prefixed_ga - a.ga:>+6.3f}"
        print(row)
    row = f"{'mean':<10} {'':>6} {'':>4} |  " + " ".join(f"{means['after_' + m]:>5.3f}" for m in metrics)
    row += " |        " + " ".join(f"{means['before_' + m]:>5.3f}" for m in metrics)
    if args.prefixed:
        row += f" | {_mean([r.prefixed_ga or 0.0 for r in results]):>11.3f}"
    print(row)
    print()
    print("Most frequent templates per system (lines, template):")
    for r in results:
        print(f"  {r.system}")
        for n, text in r.top:
            print(f"    {n:>5}  {text[:150]}")
    print()
    print(f"Throughput on {hdfs.name} bodies ({tput.lines} lines, cold miner, best of {args.repeats})")
    print(f"  TemplateMiner.add            {tput.miner_lines_per_sec:>10,.0f} lines/s")
    print(f"  bare Drain3 add_log_message  {tput.drain3_lines_per_sec:>10,.0f} lines/s (same masks)")
    print(f"  ratio                        {tput.ratio:>10.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
