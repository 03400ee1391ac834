"""Grouping accuracy of the template miner on Loghub-2k, and its speed against bare Drain3.

    .venv/bin/python bench/grouping_accuracy.py [--data DIR] [--repeats 3] [--json]

1. Grouping accuracy (GA, Zhu et al. ICSE-SEIP'19; the Loghub-2.0 metric): a line counts as
   correct when the set of lines in its predicted group is exactly the set of lines in its
   true group. Per system of `loghub_2k/*/*_structured_corrected.csv` (the `Content` column
   against the corrected `EventTemplate`), with the default `MinerConfig` (one config for all
   systems, no per-system tuning). Predicted group = the cluster id the line was assigned to,
   read after all lines were added (clusters whose final templates happen to be equal stay
   apart). The same lines through bare Drain3 with the same masks, as Drain3 regexes, are
   shown beside it.
2. Throughput of `TemplateMiner.add` vs bare Drain3 `TemplateMiner.add_log_message` with
   equivalent masking (`MinerConfig.drain3_config()`), on the message bodies of
   `hdfs/HDFS_v1_head20k_dev.log`, in the same run; best of `--repeats`, printed as a ratio.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from agent.templates import MinerConfig, TemplateMiner  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("LOGDETECT_DATA", REPO.parent / "shared" / "data"))


def grouping_accuracy(truth: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """Fraction of lines whose predicted group has exactly the lines of their true group."""
    if len(truth) != len(predicted):
        raise ValueError("truth and predicted differ in length")
    if not truth:
        return 0.0
    true_groups: dict[Hashable, list[int]] = defaultdict(list)
    pred_groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, (t, p) in enumerate(zip(truth, predicted, strict=True)):
        true_groups[t].append(i)
        pred_groups[p].append(i)
    correct = 0
    for members in pred_groups.values():
        # Lines are visited in order, so equal member lists mean equal sets.
        if true_groups[truth[members[0]]] == members:
            correct += len(members)
    return correct / len(truth)


@dataclass(frozen=True)
class SystemResult:
    system: str
    lines: int
    true_groups: int
    ga: float
    clusters: int
    ga_bare_drain3: float


def load_structured(path: Path) -> tuple[list[str], list[str]]:
    """(Content, EventTemplate) columns of a Loghub structured CSV."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["Content"] for r in rows], [r["EventTemplate"] for r in rows]


def structured_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "loghub_2k").glob("*/*_structured_corrected.csv"))


def miner_groups(lines: Sequence[str], config: MinerConfig) -> tuple[list[int], int]:
    miner = TemplateMiner(config)
    ids = [miner.add(line).template_id for line in lines]
    return ids, len(miner)


def bare_drain3_groups(lines: Sequence[str], config: MinerConfig) -> list[int]:
    from drain3.template_miner import TemplateMiner as Drain3Miner

    miner = Drain3Miner(config=config.drain3_config())
    return [miner.add_log_message(line)["cluster_id"] for line in lines]


def evaluate_system(path: Path, config: MinerConfig, with_baseline: bool = True) -> SystemResult:
    contents, templates = load_structured(path)
    ids, clusters = miner_groups(contents, config)
    base = float("nan")
    if with_baseline:
        base = grouping_accuracy(templates, bare_drain3_groups(contents, config))
    return SystemResult(
        system=path.parent.name,
        lines=len(contents),
        true_groups=len(set(templates)),
        ga=grouping_accuracy(templates, ids),
        clusters=clusters,
        ga_bare_drain3=base,
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
    lines: int
    miner_lines_per_sec: float
    drain3_lines_per_sec: float

    @property
    def ratio(self) -> float:
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data directory")
    parser.add_argument("--repeats", type=int, default=3, help="throughput: best of this many runs")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args(argv)

    config = MinerConfig()
    files = structured_files(args.data)
    if not files:
        parser.error(f"no loghub_2k/*/*_structured_corrected.csv under {args.data}")
    results = [evaluate_system(f, config) for f in files]
    mean_ga = sum(r.ga for r in results) / len(results)
    mean_bare = sum(r.ga_bare_drain3 for r in results) / len(results)

    hdfs = args.data / "hdfs" / "HDFS_v1_head20k_dev.log"
    tput = measure_throughput(hdfs_messages(hdfs), config, args.repeats)

    if args.json:
        print(
            json.dumps(
                {
                    "config": config.to_dict(),
                    "systems": [r.__dict__ for r in results],
                    "mean_ga": mean_ga,
                    "mean_ga_bare_drain3": mean_bare,
                    "throughput": {**tput.__dict__, "ratio": tput.ratio, "input": str(hdfs)},
                }
            )
        )
        return 0

    print("Grouping accuracy on Loghub-2k (corrected templates), default MinerConfig")
    print(f"{'system':<11} {'lines':>5} {'groups':>6} {'clusters':>8} {'GA':>6} {'bare Drain3 GA':>15}")
    for r in results:
        print(
            f"{r.system:<11} {r.lines:>5} {r.true_groups:>6} {r.clusters:>8} {r.ga:>6.3f} "
            f"{r.ga_bare_drain3:>15.3f}"
        )
    print(f"{'mean':<11} {'':>5} {'':>6} {'':>8} {mean_ga:>6.3f} {mean_bare:>15.3f}")
    print()
    print(f"Throughput on {hdfs.name} bodies ({tput.lines} lines, cold miner, best of {args.repeats})")
    print(f"  TemplateMiner.add            {tput.miner_lines_per_sec:>10,.0f} lines/s")
    print(f"  bare Drain3 add_log_message  {tput.drain3_lines_per_sec:>10,.0f} lines/s (same masks)")
    print(f"  ratio                        {tput.ratio:>10.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
