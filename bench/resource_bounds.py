"""Resource bounds: peak RSS of the agent pipeline under 10^6 distinct entities and a stream of
ever-new templates, against the configured caps and the deployment memory limits.

Phase 1 sends real OpenSSH lines (Loghub 2k, the system the bundle was trained on), each from a
new entity (`field:session`): without the entity cap the per-entity windows would grow without
end. Phase 2 sends messages made of words never seen before (3-40 tokens), so the online
template miner keeps creating templates past its `max_clusters` cap (from the bundle's miner
settings; least recently used evicted) and every line is a NEW_TEMPLATE anomaly for the
incident grouper. Phase 3 sends 1,000 never-seen lines of 1 MB each through a line source's
decoder (stdin, file, socket and ZeroMQ cut lines at `max_line_bytes`, 64 KiB by default), and
phase 4 sends Forward requests of one 10 MB record each through the Forward codec (cut at
`max_record_bytes`, 64 KiB by default); both make every line a new template and an anomaly.
The bundle is trained in a subprocess, so this process holds only what the agent holds (no
torch, no scikit-learn).

RSS is sampled from /proc/self/statm along each phase; the peak is getrusage's ru_maxrss. A
bounded pipeline plateaus: once a cap is reached, the growth over the rest of a phase is small.

usage:
  python bench/resource_bounds.py                        # 10^6 entities, 30,000 new templates
  python bench/resource_bounds.py --entities 200000 --templates 5000 --max-entities 20000
  python bench/resource_bounds.py --entities 0 --templates 0 --huge-lines 1000 --forward-records 100
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("LOGDETECT_DATA", REPO.parent / "shared" / "data"))
PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 2**20



def deployment_limits_mib() -> list[tuple[str, float]]:
    """The memory limits the agent is deployed with: the k8s manifests' agent container limits
    and the systemd unit's MemoryMax=, read from packaging/ and systemd/."""
    units = {"Ki": 2**-10, "Mi": 1, "Gi": 2**10, "K": 2**-10, "M": 1, "G": 2**10}

    def mib(text: str) -> float:
        m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i?)?", text.strip())
        if m is None:
            raise ValueError(f"unreadable memory quantity {text!r}")
        return float(m.group(1)) * units.get(m.group(2) or "", 2**-20)

    out: list[tuple[str, float]] = []
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        for path in sorted((REPO / "packaging" / "k8s").glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                spec = (doc or {}).get("spec", {}).get("template", {}).get("spec", {})
                for c in spec.get("initContainers", []) + spec.get("containers", []):
                    if c["name"] == "logdetect":
                        out.append((f"k8s {path.stem} limit", mib(c["resources"]["limits"]["memory"])))
    unit = (REPO / "systemd" / "logdetect.service").read_text()
    found = re.search(r"^MemoryMax=(\S+)$", unit, re.M)
    if found:
        out.append(("systemd MemoryMax", mib(found.group(1))))
    return out


def rss_mib() -> float:
    """Resident memory now, in MiB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE / MIB


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def fresh_words(i: int, n: int = 3) -> str:
    """`n` alphabetic words unique to `i` (no digits: masking must not fold them together)."""
    words = []
    for k in range(n):
        x, w = i * n + k + 1, ""
        while x:
            x, r = divmod(x, 26)
            w += chr(97 + r)
        words.append("q" + w)
    return " ".join(words)


def train_bundle(log: Path, out: Path) -> None:
    """Train a small bundle on `log` with the CLI in a subprocess."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "train",
            "--input",
            str(log),
            "--output",
            str(out),
            "--models",
            "isolation_forest",
            "--quiet",
        ],
        check=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )


def fresh_message(i: int) -> str:
    """A message no template matches: fresh words, 3-40 tokens (real new templates vary in
    length, and Drain's first tree level is the token count)."""
    return f"{fresh_words(i, 3 + i % 38)} happened"


def main() -> int:
    """Feed new entities, then new templates, and check memory stays bounded."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entities", type=int, default=1_000_000, help="phase 1: records, each a new entity")
    ap.add_argument("--templates", type=int, default=30_000, help="phase 2: records, each a new template")
    ap.add_argument("--max-entities", type=int, default=100_000, help="entity cap (PipelineConfig)")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--secs-per-record", type=float, default=0.01, help="log time between records")
    ap.add_argument("--huge-lines", type=int, default=1000, help="phase 3: never-seen lines of 1 MB each")
    ap.add_argument("--forward-records", type=int, default=100, help="phase 4: Forward records of 10 MB each")
    ap.add_argument("--samples", type=int, default=10, help="RSS samples per phase")
    ap.add_argument("--log", default=str(DATA / "loghub_2k" / "OpenSSH" / "OpenSSH_2k.log"))
    ap.add_argument("--bundle", help="use this bundle (trained on --log's system) instead of training one")
    args = ap.parse_args()

    import msgpack

    from agent.parsing import ParserConfig
    from agent.pipeline import Pipeline, PipelineConfig
    from agent.types import Record
    from plugins.forward_codec import RequestDecoder
    from plugins.records import FieldMap, LineDecoder, LineSplitter

    known = [ln for ln in Path(args.log).read_text(errors="replace").splitlines() if ln.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(args.bundle) if args.bundle else Path(tmp) / "model"
        if not args.bundle:
            train_bundle(Path(args.log), bundle)
        rss_start = rss_mib()
        config = PipelineConfig(
            parser=ParserConfig(log_format="syslog", entity="field:session", multiline=False),
            state_dir=Path(tmp) / "state",
            max_entities=args.max_entities,
            snapshot_interval_secs=3600.0,
        )
        pipe = Pipeline.from_bundle(bundle, config)
        max_templates = pipe.online_miner.config.max_clusters
        rss_loaded = rss_mib()
        print(f"bundle loaded: RSS {rss_loaded:.0f} MiB (interpreter + imports {rss_start:.0f} MiB)")
        print(
            f"caps: max_entities={args.max_entities:,}, online templates (max_clusters)={max_templates:,}, "
            "window lines per entity, memo caches and open incidents: pipeline defaults"
        )
        base_ts = 1_700_000_000.0
        clock = [0]

        def record(line: str, entity: str) -> Record:
            clock[0] += 1
            return Record(
                line=line,
                source="bench",
                received_at=base_ts + clock[0] * args.secs_per_record,
                fields=(("session", entity),),
            )

        def run(
            name: str, n: int, make: Callable[[int], Record], batch_size: int = args.batch
        ) -> list[tuple[int, float, float]]:
            print(f"\n{name}")
            print(f"{'records':>10} {'entities':>9} {'online tmpl':>11} {'RSS MiB':>8} {'rec/s':>8}")
            if n == 0:
                return [(0, rss_mib(), 0.0)]
            step = max(batch_size, n // max(1, args.samples))
            t0 = time.perf_counter()
            samples: list[tuple[int, float, float]] = []
            done, next_sample = 0, step
            while done < n:
                batch = [make(i) for i in range(done, min(done + batch_size, n))]
                pipe.process(batch, base_ts + clock[0] * args.secs_per_record)
                done += len(batch)
                if done >= next_sample or done == n:
                    next_sample += step
                    rate = done / (time.perf_counter() - t0)
                    samples.append((done, rss_mib(), rate))
                    print(
                        f"{done:>10,} {len(pipe.features.entities):>9,} "
                        f"{len(pipe.online_miner.templates()):>11,} {samples[-1][1]:>8.0f} {rate:>8,.0f}",
                        flush=True,
                    )
            return samples

        ent = run(
            f"phase 1: {args.entities:,} records of known lines, each from a new entity",
            args.entities,
            lambda i: record(known[i % len(known)], f"e{i}"),
        )
        tpl = run(
            f"phase 2: {args.templates:,} records, each a never-seen template (100 entities)",
            args.templates,
            lambda i: record(f"Dec 10 06:55:46 LabSZ sshd[{i % 30000}]: {fresh_message(i)}", f"t{i % 100}"),
        )
        # Phase 3: what a line source hands on for a 1 MB line (cut at max_line_bytes).
        splitter, decoder = LineSplitter(), LineDecoder(source="bench", format="plain")

        def huge_line(i: int) -> Record:
            words = fresh_words(i, 1_000) + " "  # 8 KB of never-seen words, then more of them
            line = f"Dec 10 06:55:46 LabSZ sshd[{i}]: " + words * (1_000_000 // len(words) + 1)
            (cut,) = splitter.feed(line[:1_000_000].encode() + b"\n")
            out = decoder.decode(cut, base_ts + clock[0] * args.secs_per_record)
            assert isinstance(out, Record)
            clock[0] += 1
            return Record(out.line, "bench", out.received_at, fields=(("session", f"h{i % 100}"),))

        huge = run(
            f"phase 3: {args.huge_lines:,} never-seen lines of 1 MB (a line source cuts at 64 KiB)",
            args.huge_lines,
            huge_line,
            batch_size=16,
        )
        # Phase 4: Forward requests of one 10 MB record each, through the Forward codec.
        fwd = RequestDecoder("bench", FieldMap(message=("log",), entity="session"))

        def forward_record(i: int) -> Record:
            text = f"Dec 10 06:55:46 LabSZ sshd[{i}]: {fresh_words(i + 10**6, 6)} " + "z" * 10_000_000
            request = msgpack.packb(["app", [[int(base_ts), {"log": text, "session": f"f{i % 100}"}]]])
            decoded = fwd.decode(msgpack.unpackb(request, raw=True), base_ts + clock[0] * args.secs_per_record)
            clock[0] += 1
            return decoded.records[0]

        big = run(
            f"phase 4: {args.forward_records:,} Forward records of 10 MB (cut at max_record_bytes, 64 KiB)",
            args.forward_records,
            forward_record,
            batch_size=4,
        )
        pipe.close(base_ts + clock[0] * args.secs_per_record)

    peak = peak_rss_mib()
    print()
    phases = (
        ("phase 1 (entities)", ent),
        ("phase 2 (templates)", tpl),
        ("phase 3 (1 MB lines)", huge),
        ("phase 4 (10 MB Forward)", big),
    )
    for name, samples in phases:
        half = next(rss for n, rss, _ in samples if n >= samples[-1][0] // 2)
        print(
            f"{name}: RSS at half {half:.0f} MiB, at end {samples[-1][1]:.0f} MiB, highest sample "
            f"{max(rss for _, rss, _ in samples):.0f} MiB (second-half growth {samples[-1][1] - half:+.0f} MiB), "
            f"{samples[-1][2]:,.0f} rec/s"
        )
    print(f"peak RSS {peak:.0f} MiB (getrusage ru_maxrss) with max_entities={args.max_entities:,}")
    for name, limit in deployment_limits_mib():
        verdict = "within" if peak < limit else "OVER"
        print(f"  {name:<22} {limit:>6.0f} MiB: {verdict} ({peak / limit:.0%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
