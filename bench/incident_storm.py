"""Anomaly storm against open incidents: CPU per anomaly as the open incidents grow.

For each size N (10, 100, 1,000 by default) the grouper is given N unrelated open incidents
(each its own entity, template and words, all within `gap_secs`), then a storm of anomalies,
each related to one of them (round robin; by entity and, for a third of them, by template), so
the number open stays N. The storm's CPU time (process time) per anomaly is printed for the
indexed grouper (`IncidentGrouper`) and for the scan it replaced (every open incident compared,
kept here as `ScanGrouper`), in the same run, with a check that both assign the same incidents.

`--shared-word` gives every template one common word ("error"): the word index then lists
every open incident under it. `--unrelated` makes every storm anomaly a new problem (its own
entity, template and words) with `max_open` = N: each opens an incident and the stalest open
one is resolved to make room.

usage:
  python bench/incident_storm.py
  python bench/incident_storm.py --sizes 10 100 1000 --storm 5000 --shared-word
  python bench/incident_storm.py --unrelated
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.incidents import IncidentConfig, IncidentGrouper, _Open
from agent.types import (
    Anomaly,
    Explanation,
    ExplanationKind,
    Level,
    ParsedLine,
    TemplatedLine,
    Verdict,
)

T0 = 1_762_054_935.0
_NEW = (Explanation(ExplanationKind.NEW_TEMPLATE, "NEW TEMPLATE"),)


class ScanGrouper(IncidentGrouper):
    """The matcher before the index: every open incident is a candidate; the stalest and the
    quiet ones by a scan."""

    def _candidates(self, anomaly: Anomaly, words: frozenset[str]) -> Sequence[_Open]:
        return list(self._open.values())

    def _stalest(self) -> _Open:
        return min(self._open.values(), key=lambda i: i.last_seen)

    def _quiet(self, now: float) -> list[_Open]:
        return sorted([i for i in self._open.values() if self._is_stale(i, now)], key=lambda i: i.first_seen)


def word(k: int) -> str:
    """A distinct all-letter word for `k`."""
    out = ""
    while True:
        k, r = divmod(k, 26)
        out += "abcdefghijklmnopqrstuvwxyz"[r]
        if k == 0:
            return "zz" + out


def anomaly(k: int, tid: int, t: float, shared: bool) -> Anomaly:
    """An anomaly of entity `svc{k}-host` with template `tid` (words of its own)."""
    template = f"{word(3 * tid)} {word(3 * tid + 1)} <*> {word(3 * tid + 2)}" + (" error" if shared else "")
    entity = f"svc{k}-host"
    parsed = ParsedLine(f"{entity}: {template}", template, t, Level.ERROR, entity, "bench", 0)
    line = TemplatedLine(parsed, tid, template, (str(tid),), 0, True, t)
    return Anomaly(line, 2.0, Verdict.DANGER, (), _NEW)


def storm(grouper: IncidentGrouper, n: int, size: int, shared: bool,
          unrelated: bool = False) -> tuple[float, list[str | None]]:
    """Open `n` incidents, then `size` storm anomalies: CPU µs per storm anomaly, their ids."""
    for k in range(n):
        grouper.add(anomaly(k, k, T0 + k * 0.01, shared))
    ids: list[str | None] = []
    start = time.process_time()
    for i in range(size):
        k = n + i if unrelated else i % n
        tid = k if i % 3 == 0 else 1_000_000 + i  # a third repeat the incident's template
        iid, _ = grouper.add(anomaly(k, tid, T0 + n * 0.01 + i * 0.001, shared))
        ids.append(iid)
    cpu = time.process_time() - start
    if grouper.open_count != n:
        raise SystemExit(f"the storm changed the open incidents: {grouper.open_count} != {n}")
    return cpu / size * 1e6, ids


def main() -> None:
    """Print µs of CPU per storm anomaly by open incidents, indexed and scanned."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--storm", type=int, default=5000, help="anomalies in the storm")
    ap.add_argument("--shared-word", action="store_true", help="every template shares one word")
    ap.add_argument("--unrelated", action="store_true", help="every storm anomaly is a new problem")
    args = ap.parse_args()
    sys.stdout.write(f"{'open incidents':>15} {'indexed µs/anomaly':>19} {'scan µs/anomaly':>16} {'same ids':>9}\n")
    for n in args.sizes:
        config = IncidentConfig(max_open=n) if args.unrelated else IncidentConfig()
        indexed, ids = storm(IncidentGrouper(config), n, args.storm, args.shared_word, args.unrelated)
        scan, scan_ids = storm(ScanGrouper(config), n, args.storm, args.shared_word, args.unrelated)
        sys.stdout.write(f"{n:>15,} {indexed:>19.1f} {scan:>16.1f} {ids == scan_ids!s:>9}\n")


if __name__ == "__main__":
    main()
