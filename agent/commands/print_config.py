"""Print a fully commented example agent config (every section and option, with defaults).

Generated from the options dataclasses: the agent's `[pipeline]`/`[agent]` settings and every
source and sink type in the component registry, each option with its default and its help.

The output is accepted by `logdetect validate` as it is once `model` names a trained bundle.

examples:
  logdetect print-config --model /var/lib/logdetect/model > /etc/logdetect/agent.toml
  logdetect validate --config /etc/logdetect/agent.toml
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import sys
import textwrap
import typing
from collections.abc import Mapping
from typing import Any

from agent.components import ComponentType, Registry, installed_registry, option_default, option_doc
from agent.config import AgentSettings, PipelineSettings

HEADER = """\
# logdetect agent configuration (TOML). `logdetect validate --config FILE` checks it and the
# model bundle; unknown keys are errors. Relative paths are relative to this file's directory.

# The model bundle `logdetect train` wrote (verified before serving; reloaded on SIGHUP).
model = {model}

# Where the agent keeps state across restarts: online template snapshots, file offsets.
# Under systemd use StateDirectory= (e.g. /var/lib/logdetect). Omit to keep no state.
state_dir = {state_dir}
"""

PARSER = """\
# [parser] overrides the bundle's parser settings (as trained); leave it out to use them.
# [parser]
#   log_format = "auto"
"""

RULE = "# " + "-" * 93
COMMENT_COLUMN = 34
WIDTH = 96


def toml_value(value: Any) -> str:
    """A default as TOML (strings JSON-quoted: valid TOML basic strings for ordinary text)."""
    if isinstance(value, enum.Enum):
        return toml_value(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _keys(options: type[Any], overrides: Mapping[str, Any], prefix: str) -> list[str]:
    lines = []
    hints = typing.get_type_hints(options)
    for f in dataclasses.fields(options):
        value = overrides.get(f.name, option_default(f))
        line = f"{f.name} = {toml_value(value)}"
        doc = option_doc(f)
        choice = hints[f.name]
        if isinstance(choice, type) and issubclass(choice, enum.Enum):  # a choice: name them all
            doc = " | ".join(str(m.value) for m in choice) + (f": {doc}" if doc else "")
        if doc:
            line = f"{line.ljust(COMMENT_COLUMN - len(prefix) - 1)} # {doc}"
        lines.append(prefix + line)
    return lines


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent="# ", subsequent_indent="# ")


def _section(title: str, options: type[Any]) -> str:
    return "\n".join([f"[{title}]", *_keys(options, {}, "")]) + "\n"


def _component(kind: str, type_name: str, spec: ComponentType) -> str:
    prefix = "" if spec.enabled else "# "
    lines = [*_comment(spec.summary), f"{prefix}[{kind}.{spec.example_id}]", f'{prefix}type = "{type_name}"']
    lines += _keys(spec.options, spec.example, prefix)
    return "\n".join(lines) + "\n"


def example(model: str, state_dir: str, registry: Registry | None = None) -> str:
    """The example config: the agent's own sections, then every registered source and sink type
    with every option, its default and its help (generated from the options dataclasses)."""
    components = registry if registry is not None else installed_registry()
    parts = [
        HEADER.format(model=json.dumps(model), state_dir=json.dumps(state_dir)),
        _section("pipeline", PipelineSettings),
        PARSER,
        _section("agent", AgentSettings),
        f"{RULE}\n# Sources. Each [sources.<id>] has a `type`; ids name the component in metrics and events.\n",
        *(_component("sources", name, spec) for name, spec in components.sources.items()),
        f"{RULE}\n# Sinks: where event JSON lines go.\n",
        *(_component("sinks", name, spec) for name, spec in components.sinks.items()),
    ]
    return "\n".join(parts)


def configure(p: argparse.ArgumentParser) -> None:
    """Options of `logdetect print-config`: the model and state paths to write in."""
    p.add_argument("--model", default="/var/lib/logdetect/model", metavar="BUNDLE",
                   help="model bundle path to put in the config (default: /var/lib/logdetect/model)")
    p.add_argument("--state-dir", default="/var/lib/logdetect/state", metavar="DIR",
                   help="state directory to put in the config (default: /var/lib/logdetect/state)")


def run(args: argparse.Namespace) -> int:
    """Print the example config to stdout."""
    sys.stdout.write(example(args.model, args.state_dir))
    return 0
