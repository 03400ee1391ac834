"""The agent under hostile input and crashes (issue 14), as a real process with real Forward
clients over a Unix socket, on real Loghub lines.

- Poison: one client sends records whose times are far future or not finite; the other
  clients lose nothing, and the poison records themselves are processed with their arrival
  time (counted `bad_time`).
- Crashes: several acked clients that resend what was not acked (and now and then a chunk that
  was), `kill -9` at seeded random points, poison from one more client. Every acked record is
  in the sink exactly once, no online template id is given to two different templates, and
  every event validates against the schema.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import signal
import threading
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.token_types import is_var, typed_tokens
from ops.agent_harness import AgentProcess, ForwardClient, line_events, wait_until, write_config
from ops.conftest import SYSTEMS, lines_of

# Forward entry times that broke the pipeline before (issue 14, defect 1).
POISON_TIMES: list[Any] = [2**62, 253402300800, 1e18, math.inf, 2**64 - 1, 1e300]


def poison_entries(n: int, salt: str) -> list[list[Any]]:
    """Entries with out-of-window times; the last also carries a JSON time field "1e300"."""
    out: list[list[Any]] = []
    for i in range(n):
        line = f"poison record {salt}-{i} from the hostile client"
        t = POISON_TIMES[i % len(POISON_TIMES)]
        record: dict[str, Any] = {"log": line}
        if i % len(POISON_TIMES) == len(POISON_TIMES) - 1:
            t, record["time"] = int(time.time()), "1e300"
        out.append([t, record])
    return out


def metric(agent: AgentProcess, name: str, labels: dict[str, str]) -> float:
    """A metric's value from the agent's /metrics (0 when absent)."""
    with urllib.request.urlopen(agent.status_url() + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def ready(agent: AgentProcess) -> None:
    """Wait until the agent logs that it is ready; fail if it exited."""
    wait_until(lambda: "agent ready" in agent.log_events() or agent.proc.poll() is not None, 90, "agent ready")
    assert agent.proc.poll() is None, "\n".join(agent.raw_stderr[-20:])


def send_all(sock: Path, chunks: list[list[list[Any]]], acked: list[list[list[Any]]]) -> threading.Thread:
    """A thread that sends the chunks over Forward and records each one acked."""
    def run() -> None:
        client = ForwardClient(sock)
        try:
            for entries in chunks:
                client.send_entries(entries, uuid.uuid4().hex)
                acked.append(entries)
        finally:
            client.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_poison_times_from_one_client_cost_the_other_clients_nothing(
    bundles: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    """Three good clients and one hostile one at once: every acked record is processed exactly
    once, the poison ones with their arrival time, and each bad time is counted."""
    sock, events = tmp_path / "fwd.sock", tmp_path / "events.jsonl"
    config = tmp_path / "agent.toml"
    write_config(config, bundles["a"], tmp_path / "state", sock, events, 'time_field = "time"')
    lines = lines_of(data_dir, SYSTEMS[0])[:900] + lines_of(data_dir, SYSTEMS[1])[:300]
    now = int(time.time())
    good = [[[now, {"log": line}] for line in lines[i : i + 25]] for i in range(0, len(lines), 25)]
    poison = [poison_entries(12, str(k)) for k in range(5)]
    agent = AgentProcess(config, None)
    acked: list[list[list[Any]]] = []
    try:
        ready(agent)
        threads = [send_all(sock, good[k::3], acked) for k in range(3)]
        threads.append(send_all(sock, poison, acked))
        for thread in threads:
            thread.join(timeout=120)
        bad_time = metric(agent, "logdetect_records_repaired_total", {"component": "fwd", "reason": "bad_time"})
        agent.signal(signal.SIGTERM)
        assert agent.wait(timeout=20) == 0
    finally:
        agent.kill()
    assert len(acked) == len(good) + len(poison), "a client was not acked"
    want = Counter(str(e[1]["log"]) for e in itertools.chain.from_iterable(acked))
    got = Counter(str(e["log.raw"]) for e in line_events(events))
    assert not want - got, f"acked records missing: {list(want - got)[:3]}"
    assert not got - want, f"records emitted twice: {list(got - want)[:3]}"
    assert bad_time == 5 * 12
    assert "pipeline failed on a batch; retrying record by record" not in agent.log_events()
    # The "stopped" line counts every event written (it said 8 after 1,008 before: issue 14).
    stopped = next(e for e in agent.logs if e.get("event") == "stopped")
    assert stopped["events"] == len(events.read_bytes().splitlines())


class _FailsOn:
    """A detector wrapper that raises whenever a batch holds a line with `word` in it: a bug in
    one model that only some input triggers (the component under test is the pipeline)."""

    def __init__(self, inner: Any, word: str) -> None:
        self.inner, self.word = inner, word
        self.name, self.kind = inner.name, inner.kind

    def score_lines(self, contexts: Any) -> Any:
        if any(self.word in c.line.line.raw for c in contexts):
            raise ZeroDivisionError("a model bug")
        return self.inner.score_lines(contexts)

    def score_session(self, tokens: Any, levels: Any) -> Any:
        return self.inner.score_session(tokens, levels)

    def stats(self) -> dict[str, float]:
        return dict(self.inner.stats())


def test_a_stage_that_raises_drops_only_the_record_it_raised_on(
    bundles: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    """One micro-batch, one record a model raises on: every other record is judged and emitted;
    the culprit is returned by `take_rejected` with its stage and cause, and `DeadLetters`
    keeps it (bounded in bytes)."""
    from agent.dead_letter import DeadLetters
    from agent.detectors.cascade import Cascade
    from agent.pipeline import Pipeline, PipelineConfig
    from agent.types import LineResult, Record

    pipeline = Pipeline.from_bundle(bundles["a"], PipelineConfig(emit_all=True))
    pipeline.detectors = [_FailsOn(d, "POISON") for d in pipeline.detectors]
    # the cascade plans its calls over the detectors it was built with: re-plan over the wrapped ones
    pipeline.cascade = Cascade.plan(pipeline.detectors, pipeline.ensemble)
    now = time.time()
    lines = lines_of(data_dir, SYSTEMS[0])[:99]
    lines.insert(50, "Dec 10 06:55:46 LabSZ sshd[1]: POISON a line a model cannot score")
    outputs = [*pipeline.process([Record(line, "fwd", now) for line in lines], now), *pipeline.flush_pending(now)]
    emitted = [o for o in outputs if isinstance(o, LineResult)]
    assert len(emitted) == len(lines) - 1
    rejected = pipeline.take_rejected()
    assert [(r.stage, r.line) for r in rejected] == [("score", lines[50])]
    assert rejected[0].cause.startswith("ZeroDivisionError@test_fault_injection.py:")
    letters = DeadLetters(tmp_path / "dead.jsonl", max_bytes=4096)
    for _ in range(40):
        letters.add(rejected, now)
    assert (tmp_path / "dead.jsonl").stat().st_size <= 4096
    assert (tmp_path / "dead.jsonl.1").stat().st_size <= 4096


# --- kill -9 at random points --------------------------------------------------------------

SEED = 14
KILLS = 6
CLIENTS = 3
CHUNKS_PER_CLIENT = 70
CHUNK_RECORDS = 15


class ResendingClient(threading.Thread):
    """Sends its chunks in order, each until acked: after a lost connection it reconnects and
    resends the same chunk id (as Fluent Bit retries). Now and then it resends a chunk that
    was acked already, which must not be emitted again."""

    def __init__(self, sock: Path, chunks: list[list[list[Any]]], rng: random.Random, deadline: float) -> None:
        super().__init__(daemon=True)
        self.sock, self.chunks, self.rng, self.deadline = sock, chunks, rng, deadline
        self.ids = [uuid.uuid4().hex for _ in chunks]
        self.acked: list[list[list[Any]]] = []
        self.resends = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        client: ForwardClient | None = None
        try:
            for i, entries in enumerate(self.chunks):
                while True:
                    if time.monotonic() > self.deadline:
                        raise TimeoutError(f"chunk {i} never acked")
                    try:
                        if client is None:
                            client = ForwardClient(self.sock, timeout=10.0)
                        client.send_entries(entries, self.ids[i])
                        if i and self.rng.random() < 0.08:  # an acked chunk, sent again
                            j = self.rng.randrange(i)
                            client.send_entries(self.chunks[j], self.ids[j])
                        break
                    except (OSError, ConnectionError):
                        if client is not None:
                            client.close()
                            client = None
                        self.resends += 1
                        time.sleep(0.05)
                self.acked.append(entries)
        except BaseException as exc:
            self.error = exc
        finally:
            if client is not None:
                client.close()


@dataclass
class CrashRun:
    acked: list[list[list[Any]]]
    events: list[dict[str, Any]]
    kills: int
    resends: int
    bad_time_lines: set[str]


def _compatible(a: str, b: str) -> bool:
    """Could one template text be the other after generalisation (values → placeholders)?

    Texts are compared by the miner's own token types: an online id is the hash of a typed
    form, so after a crash the same message kind may come back first shown with other literal
    values (`rhost=a.example` then `rhost=b.example`, both typed `rhost=<*>`): same meaning.
    """
    ta, tb = typed_tokens(a.split()), typed_tokens(b.split())
    if len(ta) != len(tb):
        return False
    return all(x == y or is_var(x) or is_var(y) for x, y in zip(ta, tb, strict=True))


@pytest.fixture(scope="module")
def crash_run(bundles: dict[str, Path], data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> CrashRun:
    """Clients send while the agent is killed with SIGKILL and restarted again and again."""
    rng = random.Random(SEED)
    tmp = tmp_path_factory.mktemp("crash")
    sock, events, state = tmp / "fwd.sock", tmp / "events.jsonl", tmp / "state"
    config = tmp / "agent.toml"
    write_config(config, bundles["a"], state, sock, events)
    # OpenSSH lines are known to the bundle; Linux lines create online templates all along.
    known, novel = lines_of(data_dir, SYSTEMS[0]), lines_of(data_dir, SYSTEMS[1])
    mixed = [line for pair in itertools.zip_longest(known, novel) for line in pair if line is not None]
    per_client = CHUNKS_PER_CLIENT * CHUNK_RECORDS
    deadline = time.monotonic() + 240
    now = int(time.time())
    clients = []
    for k in range(CLIENTS):
        lines = mixed[k * per_client : (k + 1) * per_client]
        chunks = [[[now, {"log": line}] for line in lines[i : i + CHUNK_RECORDS]]
                  for i in range(0, len(lines), CHUNK_RECORDS)]
        clients.append(ResendingClient(sock, chunks, random.Random(SEED + k), deadline))
    poison = ResendingClient(sock, [poison_entries(8, f"r{n}") for n in range(30)], random.Random(SEED - 1), deadline)
    # Kill points: after so many acked chunks in all (seeded), each plus a random delay.
    total = CLIENTS * CHUNKS_PER_CLIENT
    points = sorted(rng.sample(range(total // 10, total * 8 // 10), KILLS))
    agent = AgentProcess(config, None)
    kills = 0
    try:
        ready(agent)
        for c in [*clients, poison]:
            c.start()
        for point in points:
            wait_until(lambda p=point: sum(len(c.acked) for c in clients) >= p, 120, f"{point} acked chunks")
            time.sleep(rng.uniform(0.0, 0.3))
            agent.proc.kill()  # SIGKILL: no drain, no final snapshot, no last journal entry
            agent.wait(timeout=10)
            kills += 1
            agent = AgentProcess(config, None)
            ready(agent)
        for c in [*clients, poison]:
            c.join(timeout=max(1.0, deadline - time.monotonic()))
            assert c.error is None, f"a client failed: {c.error!r}"
        agent.signal(signal.SIGTERM)
        assert agent.wait(timeout=20) == 0
    finally:
        agent.kill()
    parsed = [json.loads(raw) for raw in events.read_bytes().splitlines()]
    return CrashRun(
        acked=[chunk for c in [*clients, poison] for chunk in c.acked],
        events=parsed,
        kills=kills,
        resends=sum(c.resends for c in [*clients, poison]),
        bad_time_lines={str(e[1]["log"]) for chunk in poison.chunks for e in chunk},
    )


def test_crashes_lose_no_acked_record_and_emit_none_twice(crash_run: CrashRun) -> None:
    """Across repeated kill -9, every acked record is emitted exactly once."""
    assert crash_run.kills >= 5 and crash_run.resends > 0
    assert len(crash_run.acked) == CLIENTS * CHUNKS_PER_CLIENT + 30
    want = Counter(str(e[1]["log"]) for e in itertools.chain.from_iterable(crash_run.acked))
    lines = [e["attributes"] for e in crash_run.events if e["event_name"] == "logdetect.line"]
    got = Counter(str(a["log.raw"]) for a in lines)
    missing, twice = want - got, got - want
    assert not missing, f"{sum(missing.values())} acked records missing, e.g. {list(missing)[:2]}"
    assert not twice, f"{sum(twice.values())} records emitted twice, e.g. {list(twice)[:2]}"


def test_crashes_never_give_an_online_template_id_to_another_template(crash_run: CrashRun) -> None:
    """An online template id keeps naming the same template across crashes."""
    texts: dict[int, set[str]] = {}
    for e in crash_run.events:
        a = e["attributes"]
        if "template.text" in a and int(a["template.id"]) >= 1_000_000:
            texts.setdefault(int(a["template.id"]), set()).add(str(a["template.text"]))
    assert len(texts) >= 10, "too few online templates were seen for the check to mean anything"
    reused = {tid: sorted(t) for tid, t in texts.items() if not all(_compatible(x, y) for x in t for y in t)}
    assert not reused, f"{len(reused)} online ids named different templates, e.g. {next(iter(reused.items()))}"


def test_crashes_every_event_validates_against_the_schema(crash_run: CrashRun) -> None:
    """Every event written across the crashes validates against the schema."""
    from agent.events import json_schema

    validator = jsonschema.Draft202012Validator(json_schema())
    bad = [e for e in crash_run.events if not validator.is_valid(e)]
    assert not bad, f"{len(bad)} events do not validate, e.g. {bad[0]}"


def test_kill_right_after_a_new_template_never_reuses_its_id(bundles: dict[str, Path], tmp_path: Path) -> None:
    """Issue 14's probe: a new template, `kill -9` 0.2 s later (long before a snapshot), a
    restart, a different new template: the ids differ, and the first keeps its id."""
    sock, events, state = tmp_path / "fwd.sock", tmp_path / "events.jsonl", tmp_path / "state"
    config = tmp_path / "agent.toml"
    write_config(config, bundles["a"], state, sock, events)
    config.write_text(config.read_text().replace("snapshot_interval_secs = 0.5", "snapshot_interval_secs = 600"))
    first = "xray reactor coolant pump one started"
    second = "yankee turbine blade inspection finished without findings today"

    def send(line: str) -> None:
        client = ForwardClient(sock)
        try:
            client.send([line])
        finally:
            client.close()

    agent = AgentProcess(config, None)
    try:
        ready(agent)
        send(first)
        time.sleep(0.2)
        agent.proc.kill()
        agent.wait(timeout=10)
        agent = AgentProcess(config, None)
        ready(agent)
        send(second)
        send(first)
        agent.signal(signal.SIGTERM)
        assert agent.wait(timeout=20) == 0
    finally:
        agent.kill()
    ids = [(str(e["log.raw"]), int(str(e["template.id"]))) for e in line_events(events)]
    assert [line for line, _ in ids] == [first, second, first]
    assert ids[0][1] >= 1_000_000 and ids[1][1] >= 1_000_000
    assert ids[1][1] != ids[0][1], "a crash handed the first template's id to another template"
    assert ids[2][1] == ids[0][1], "the same template got a new id after the crash"
