"""`ParserConfig`: how lines are split into header and message. It travels in the bundle
manifest so that serving parses exactly as training did."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from agent.errors import ConfigError
from agent.parsing.learned import parse_spec
from agent.parsing.text_formats import TEXT_FORMATS

# "auto" detects from the first lines; "json" reads JSON lines; "raw" keeps the line whole.
# Besides these, "columns:N" / "columns:N+FORMAT" (agent/parsing/learned.py): N leading columns
# as header fields, then the message (or a known FORMAT's header); `auto` may learn one.
LOG_FORMATS: tuple[str, ...] = ("auto", "json", "raw", *TEXT_FORMATS)
ENTITY_KINDS = ("stream", "component")


@dataclass(frozen=True)
class ParserConfig:
    """How lines are parsed: the format, JSON field names, the entity key, multi-line stitching."""

    log_format: str = "auto"  # one of LOG_FORMATS, or a learnt "columns:N[+FORMAT]"
    json_message_field: str = "message"
    json_level_field: str = "level"
    json_time_field: str = "time"
    # "stream" (Record.source, or the `entity` field a structured source offers) |
    # "component" | "regex:<pattern>" | "field:<name>"
    entity: str = "stream"
    multiline: bool = True
    # Longer messages are cut (counted), never rejected. Templates of longer messages say nothing
    # more, and what the miner and its memos keep per template grows with the message length.
    max_message_chars: int = 4096
    assume_year: int | None = None  # for formats without a year (RFC 3164); default: current year

    def __post_init__(self) -> None:
        if self.log_format not in LOG_FORMATS and parse_spec(self.log_format) is None:
            choices = ", ".join(LOG_FORMATS)
            raise ConfigError(f"unknown log format {self.log_format!r}; choose one of {choices}")
        if self.max_message_chars < 1:
            raise ConfigError(f"max_message_chars must be positive, got {self.max_message_chars}")
        if self.assume_year is not None and not 1 <= self.assume_year <= 9999:
            raise ConfigError(f"assume_year must be a year between 1 and 9999, got {self.assume_year}")
        entity_regex(self.entity)  # raises ConfigError when the entity spec is malformed

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict, as the bundle manifest stores it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParserConfig:
        """Inverse of `to_dict`; an unknown key is an error (it would mean train/serve skew)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown parser setting(s): {', '.join(unknown)}")
        return cls(**data)


def entity_regex(entity: str) -> re.Pattern[str] | None:
    """The compiled pattern of a "regex:<pattern>" entity spec; None for the other kinds."""
    if entity in ENTITY_KINDS:
        return None
    if entity.startswith("field:"):
        if not entity[6:]:
            raise ConfigError("entity 'field:' needs a field name, e.g. field:kubernetes.pod_name")
        return None
    if entity.startswith("regex:"):
        try:
            return re.compile(entity[6:])
        except re.error as exc:
            raise ConfigError(f"entity regex {entity[6:]!r} does not compile: {exc}") from None
    raise ConfigError(f"unknown entity {entity!r}; use stream, component, regex:<pattern> or field:<name>")
