"""The agent's TOML config: model, state dir, pipeline settings, sources and sinks.

    model = "/var/lib/logdetect/model"        # required: the bundle `logdetect train` wrote
    state_dir = "/var/lib/logdetect/state"    # optional: Drain3 snapshots, file offsets

    [pipeline]   sensitivity, emit_all, snapshot_interval_secs, idle_entity_secs, max_entities,
                 device, intra_op_threads
    [parser]     the fields of agent.parsing.ParserConfig
    [agent]      queue_records, batch_records, tick_interval_secs, shutdown_budget_secs
    [sources.<id>]  type = a registered source type, then its options
    [sinks.<id>]    type = a registered sink type, then its options

Source and sink types come from the registry the caller hands in (by default every registry
installed under the `logdetect.components` entry points, see agent/components.py); each
`ComponentConfig` carries its type's spec, so the daemon builds it without importing plugins.
`logdetect print-config` lists every option with its default and help.

Every problem is collected, not just the first: unknown keys name the key and the valid ones,
wrong types name the expected type. Relative paths (`model`, `state_dir`, `path` options) are
relative to the config file's directory.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from agent.components import Registry, SinkType, SourceType, installed_registry, option
from agent.errors import ConfigError
from agent.types import Sensitivity

DEVICES = ("auto", "cpu", "cuda")
ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


@dataclass(frozen=True)
class PipelineSettings:
    """`[pipeline]`: how lines are scored (maps onto agent.pipeline.PipelineConfig)."""

    sensitivity: Sensitivity = option(Sensitivity.MEDIUM, "where on the calibrated curve to alert (low: fewest)")
    emit_all: bool = option(False, "also emit a logdetect.line event for every processed line")
    dynamic_thresholds: bool = option(False, "scale thresholds by the hour-of-day multipliers learned at training")
    snapshot_interval_secs: float = option(60.0, "how often template state is snapshotted to state_dir")
    idle_entity_secs: float = option(600.0, "an entity (session) quiet this long is closed and judged")
    max_entities: int = option(100_000, "entities kept in memory (least recently seen go first)")
    max_online_templates: int = option(5_000, "templates born after training kept (least recently used go first)")
    max_online_template_tokens: int = option(
        65_536, "tokens kept across those templates (≈ 1 KiB each: the online miner's byte bound)"
    )
    device: str = option("auto", "auto | cpu | cuda (ONNX Runtime provider)")
    intra_op_threads: int = option(1, "ONNX Runtime threads: keep a sidecar off the host's cores")
    learn_after: int = option(0, "learn a new template after this many occurrences with no other anomaly "
                                 "around (0: never; learned templates are kept in state_dir)")
    learn_min_hours: float = option(6.0, "... spread over at least this many hours")
    episode_gap_secs: float = option(
        3600.0, "one incident per episode of trouble: never-seen lines on one stream, or anomalies on one "
                "entity or component, with no quiet gap longer than this between them")
    incident_gap_secs: float = option(
        300.0, "other related anomalies (shared values, words, training neighbours) join an incident this close")
    new_behaviour_days: float = option(
        365.0, "a never-seen template (or a variant of it) that comes back within this long is an update of "
               "its first incident, not a new one")

    def problems(self) -> list[str]:
        """Every invalid value in [pipeline], as messages naming the option (empty when valid)."""
        out: list[str] = []
        if self.device not in DEVICES:
            out.append(f"device = {self.device!r}: use one of {', '.join(DEVICES)}")
        counts = (self.intra_op_threads, self.max_entities, self.max_online_templates, self.max_online_template_tokens)
        if min(counts) < 1:
            out.append(
                "intra_op_threads, max_entities, max_online_templates and max_online_template_tokens must be >= 1"
            )
        if self.learn_after < 0 or self.learn_min_hours < 0:
            out.append("learn_after and learn_min_hours must be >= 0")
        if self.snapshot_interval_secs <= 0 or self.idle_entity_secs <= 0:
            out.append("snapshot_interval_secs and idle_entity_secs must be > 0")
        if min(self.episode_gap_secs, self.incident_gap_secs, self.new_behaviour_days) <= 0:
            out.append("episode_gap_secs, incident_gap_secs and new_behaviour_days must be > 0")
        return out


@dataclass(frozen=True)
class AgentSettings:
    """`[agent]`: the runtime around the pipeline."""

    queue_records: int = option(10_000, "records queued between sources and the pipeline (backpressure)")
    batch_records: int = option(1024, "records handed to the pipeline at once")
    tick_interval_secs: float = option(1.0, "timers: idle sessions, incident resolution, snapshots")
    shutdown_budget_secs: float = option(5.0, "SIGTERM: drain, close and flush within this time")
    multiline_flush_secs: float = option(
        0.2, "input idle this long: release a held multi-line record (and ack it)"
    )
    metrics_listen: str = option("127.0.0.1:9847", '/metrics /livez /readyz on loopback; "" turns it off')
    metrics_allow_remote: bool = option(
        False, "true to bind metrics_listen off-host (Kubernetes probes, Prometheus)"
    )
    log_level: str = option("info", "debug | info | warning | error (logs go to stderr)")
    log_format: str = option("json", "json | console | auto")
    host_name: str = option("", 'resource `host.name` of every event (fleet joins); "" = this machine\'s hostname')

    def problems(self) -> list[str]:
        """Every invalid value in [agent], as messages naming the option (empty when valid)."""
        out: list[str] = []
        if self.metrics_listen:
            from agent.http_status import is_loopback, parse_listen

            try:
                host, _ = parse_listen(self.metrics_listen)
            except ConfigError as exc:
                out.append(str(exc))
            else:
                if not is_loopback(host) and not self.metrics_allow_remote:
                    out.append(f"metrics_listen {self.metrics_listen!r} is not a loopback address: "
                               "set metrics_allow_remote = true to serve it off-host")
        if self.log_level not in ("debug", "info", "warning", "error"):
            out.append(f"log_level = {self.log_level!r}: use debug, info, warning or error")
        if self.log_format not in ("json", "console", "auto"):
            out.append(f"log_format = {self.log_format!r}: use json, console or auto")
        if self.queue_records < 1 or self.batch_records < 1:
            out.append("queue_records and batch_records must be >= 1")
        if self.tick_interval_secs <= 0 or self.shutdown_budget_secs <= 0 or self.multiline_flush_secs <= 0:
            out.append("tick_interval_secs, shutdown_budget_secs and multiline_flush_secs must be > 0")
        return out


Spec = TypeVar("Spec", SourceType, SinkType)


@dataclass(frozen=True)
class ComponentConfig(Generic[Spec]):
    """One `[sources.<id>]` or `[sinks.<id>]` table: its options dataclass built, and the
    registered type (`spec`) whose factory builds the component."""

    id: str
    type: str
    options: Any
    spec: Spec


@dataclass(frozen=True)
class FleetSettings:
    """`[fleet]`: how `logdetect fleet` groups the anomaly events of many agents (agent/fleet.py)."""

    window_secs: float = option(600.0, "the same template on other hosts within this time joins the incident")
    quiet_secs: float = option(900.0, "a fleet incident with no new anomaly for this long resolves")
    min_hosts: int = option(2, "hosts an incident needs before it is emitted (one host: that agent's own)")
    max_open: int = option(10_000, "open fleet incidents at most (the stalest resolves first)")

    def problems(self) -> list[str]:
        """Every invalid value in [fleet], as messages naming the option (empty when valid)."""
        out: list[str] = []
        if self.window_secs <= 0 or self.quiet_secs <= 0:
            out.append("window_secs and quiet_secs must be > 0")
        if self.min_hosts < 1 or self.max_open < 1:
            out.append("min_hosts and max_open must be >= 1")
        return out


@dataclass(frozen=True)
class AgentConfig:
    """The whole agent config, validated, with paths resolved against the config file."""

    path: Path
    model: Path
    state_dir: Path | None
    pipeline: PipelineSettings
    parser: dict[str, Any]
    agent: AgentSettings
    sources: tuple[ComponentConfig[SourceType], ...]
    sinks: tuple[ComponentConfig[SinkType], ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)
    registry: Registry | None = None  # the component registry this config was checked against
    fleet: FleetSettings = field(default_factory=FleetSettings)  # `logdetect fleet` only

    def pipeline_config(self) -> Any:
        """The lead's `agent.pipeline.PipelineConfig` for these settings."""
        from agent.drift import DriftConfig
        from agent.onnx_session import RuntimeOptions
        from agent.pipeline import PipelineConfig

        return PipelineConfig(
            parser=parser_config(self.parser),
            sensitivity=self.pipeline.sensitivity,
            runtime=RuntimeOptions(
                intra_op_threads=self.pipeline.intra_op_threads, device=self.pipeline.device
            ),
            state_dir=self.state_dir,
            snapshot_interval_secs=self.pipeline.snapshot_interval_secs,
            idle_entity_secs=self.pipeline.idle_entity_secs,
            max_entities=self.pipeline.max_entities,
            max_online_templates=self.pipeline.max_online_templates,
            max_online_template_tokens=self.pipeline.max_online_template_tokens,
            emit_all=self.pipeline.emit_all,
            dynamic_thresholds=self.pipeline.dynamic_thresholds,
            drift=DriftConfig(learn_after=self.pipeline.learn_after, min_hours=self.pipeline.learn_min_hours),
            incident_gap_secs=self.pipeline.incident_gap_secs,
            episode_gap_secs=self.pipeline.episode_gap_secs,
            new_behaviour_secs=self.pipeline.new_behaviour_days * 86400.0,
        )


def _parser_config_class() -> Any:
    """agent.parsing.ParserConfig, looked up at run time (the agent's parser owns its fields)."""
    return importlib.import_module("agent.parsing").ParserConfig


def parser_config(table: dict[str, Any]) -> Any:
    """The [parser] table as a ParserConfig; None (= the bundle's settings) when empty."""
    if not table:
        return None
    ParserConfig = _parser_config_class()
    values = dict(table)
    for f in dataclasses.fields(ParserConfig):
        # TOML has arrays, dataclasses at boundaries want tuples.
        if isinstance(values.get(f.name), list):
            values[f.name] = tuple(values[f.name])
    return ParserConfig(**values)


# --- building dataclasses from TOML tables, collecting problems ---


def _type_ok(expected: Any, value: Any) -> tuple[bool, Any]:
    """(ok, converted value) for the simple types options use; a choice is an Enum, written as
    its value in TOML."""
    if isinstance(expected, type) and issubclass(expected, enum.Enum):
        if isinstance(value, expected):
            return True, value
        try:
            return True, expected(value)
        except ValueError:
            return False, value
    if expected is bool:
        return isinstance(value, bool), value
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if expected is str:
        return isinstance(value, str), value
    if typing.get_origin(expected) is list:
        if isinstance(value, str):  # `message_field = "log"` for a one-element list
            return True, [value]
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return ok, value
    if typing.get_origin(expected) in (typing.Union, type(int | None)):
        args = [a for a in typing.get_args(expected) if a is not type(None)]
        if value is None:
            return True, None
        return _type_ok(args[0], value) if args else (True, value)
    return True, value


def _type_name(expected: Any) -> str:
    if isinstance(expected, type) and issubclass(expected, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in expected)
    if typing.get_origin(expected) is list:
        return "a list of strings"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        expected, str(expected)
    )


def build_dataclass(cls: type[Any], table: dict[str, Any], where: str, problems: list[str]) -> Any:
    """`cls(**table)` with unknown keys and wrong types reported; None if any problem."""
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    ok = True
    for key, value in table.items():
        if key not in valid:
            problems.append(f"{where}: unknown key {key!r} (valid keys: {', '.join(valid)})")
            ok = False
            continue
        good, converted = _type_ok(hints[key], value)
        if not good:
            problems.append(f"{where}.{key}: expected {_type_name(hints[key])}, got {value!r}")
            ok = False
            continue
        values[key] = converted
    if not ok:
        return None
    try:
        obj = cls(**values)
    except (TypeError, ValueError) as exc:
        problems.append(f"{where}: {exc}")
        return None
    check = getattr(obj, "problems", None)
    if check is not None:
        problems.extend(f"{where}: {p}" for p in check())
    return obj


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


TOP_KEYS = ("model", "state_dir", "pipeline", "parser", "agent", "sources", "sinks", "fleet")


def parse_config(
    text: str, path: Path, registry: Registry | None = None, *, need_model: bool = True
) -> tuple[AgentConfig | None, list[str]]:
    """Parse config text against the component `registry` (default: the installed one);
    (config or None, every problem found). `logdetect fleet` reads anomaly events, not logs,
    and needs no model (`need_model=False`)."""
    components = registry if registry is not None else installed_registry()
    problems: list[str] = []
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [f"{path}: not valid TOML: {exc}"]
    base = path.parent
    for key in raw:
        if key not in TOP_KEYS:
            problems.append(f"unknown top-level key {key!r} (valid keys: {', '.join(TOP_KEYS)})")
    model_value = raw.get("model")
    model = None
    if model_value is None and not need_model:
        model = Path()
    elif not isinstance(model_value, str) or not model_value:
        problems.append('model: required, the model bundle directory (model = "/path/to/bundle")')
    else:
        model = _resolve(base, model_value)
    state_value = raw.get("state_dir")
    state_dir = None
    if state_value is not None:
        if not isinstance(state_value, str) or not state_value:
            problems.append("state_dir: expected a directory path string")
        else:
            state_dir = _resolve(base, state_value)

    def table(name: str) -> dict[str, Any]:
        value = raw.get(name, {})
        if not isinstance(value, dict):
            problems.append(f"[{name}] must be a table")
            return {}
        return value

    pipeline = build_dataclass(PipelineSettings, table("pipeline"), "pipeline", problems)
    agent = build_dataclass(AgentSettings, table("agent"), "agent", problems)
    fleet = build_dataclass(FleetSettings, table("fleet"), "fleet", problems)
    parser = table("parser")
    _check_parser(parser, problems)

    sources = _components(table("sources"), "sources", components.sources, base, problems)
    sinks = _components(table("sinks"), "sinks", components.sinks, base, problems)
    if not table("sources"):
        problems.append("no [sources.<id>] table: the agent needs at least one source")
    if not table("sinks"):
        problems.append("no [sinks.<id>] table: the agent needs at least one sink")
    _check_conflicts(sources, sinks, problems)
    if problems or model is None or pipeline is None or agent is None or fleet is None:
        return None, problems
    return (
        AgentConfig(
            path=path,
            model=model,
            state_dir=state_dir,
            pipeline=pipeline,
            parser=parser,
            agent=agent,
            sources=tuple(sources),
            sinks=tuple(sinks),
            registry=components,
            fleet=fleet,
        ),
        problems,
    )


def _check_parser(parser: dict[str, Any], problems: list[str]) -> None:
    try:
        ParserConfig = _parser_config_class()
    except (ImportError, AttributeError):
        if parser:
            problems.append("[parser]: this build has no agent.parsing.ParserConfig to apply it to")
        return
    valid = [f.name for f in dataclasses.fields(ParserConfig)]
    for key in parser:
        if key not in valid:
            problems.append(f"parser: unknown key {key!r} (valid keys: {', '.join(valid)})")
    if all(k in valid for k in parser):
        try:
            parser_config(parser)
        except (TypeError, ValueError) as exc:
            problems.append(f"parser: {exc}")


def _components(
    tables: dict[str, Any], kind: str, registry: Mapping[str, Spec], base: Path, problems: list[str]
) -> list[ComponentConfig[Spec]]:
    out: list[ComponentConfig[Spec]] = []
    for comp_id, body in tables.items():
        where = f"{kind}.{comp_id}"
        if not set(comp_id) <= ID_CHARS:
            problems.append(f"{where}: ids may use letters, digits, '_', '-' and '.' only")
        if not isinstance(body, dict):
            problems.append(f"{where}: must be a table")
            continue
        body = dict(body)
        type_name = body.pop("type", None)
        if type_name not in registry:
            problems.append(f"{where}.type: {type_name!r} is not one of {', '.join(registry)}")
            continue
        if isinstance(body.get("path"), str) and body["path"]:
            body["path"] = str(_resolve(base, body["path"]))
        options = build_dataclass(registry[type_name].options, body, where, problems)
        if options is not None:
            out.append(ComponentConfig(comp_id, type_name, options, registry[type_name]))
    return out


def _check_conflicts(
    sources: list[ComponentConfig[SourceType]], sinks: list[ComponentConfig[SinkType]], problems: list[str]
) -> None:
    """Two components on one address, or two instances of a single-instance type (stdin),
    cannot both work."""
    seen: dict[str, str] = {}
    comps: list[ComponentConfig[Any]] = [*sources, *sinks]
    for comp in comps:
        for attr in ("listen", "path"):
            value = str(getattr(comp.options, attr, None) or "")
            if attr == "listen" and getattr(comp.options, "connect", None):
                continue  # a component that connects does not listen
            if not value or value.endswith(":0"):
                continue
            key = f"{attr}={value}"
            if key in seen:
                problems.append(f"{comp.id}: {attr} {value!r} is also used by {seen[key]}")
            seen[key] = comp.id
    for kind, items in (("source", sources), ("sink", sinks)):
        counts: dict[str, int] = {}
        for c in items:
            if c.spec.singleton:
                counts[c.type] = counts.get(c.type, 0) + 1
        for type_name, n in counts.items():
            if n > 1:
                problems.append(f"only one {type_name} {kind} can exist")


def load_config(path: str | Path, registry: Registry | None = None, *, need_model: bool = True) -> AgentConfig:
    """Load and check a config file against the component `registry` (default: the installed
    one); ConfigError listing every problem."""
    config_path = Path(path)
    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {config_path} does not exist (`logdetect print-config` writes an example)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {config_path}: {exc}") from None
    config, problems = parse_config(text, config_path.resolve(), registry, need_model=need_model)
    if problems or config is None:
        if len(problems) == 1:  # one problem, one line
            raise ConfigError(f"{config_path}: {problems[0]}")
        raise ConfigError(f"{config_path}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))
    return config
