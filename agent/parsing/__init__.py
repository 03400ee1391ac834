"""The header parser shared by trainer and agent: a raw line → timestamp, level, component,
entity and message body, for syslog (RFC 3164/5424), ISO-8601 application logs, HDFS, BGL,
JSON lines and every Loghub system.

    parser = LineParser(ParserConfig(log_format="auto"), sample=first_lines)
    parsed = parser.parse(Record(line, source="app.log"), line_no=1)
"""

from __future__ import annotations

from agent.parsing.config import LOG_FORMATS, ParserConfig
from agent.parsing.levels import parse_level
from agent.parsing.parser import LineParser, ParserStats, detect_format
from agent.parsing.text_formats import strip_bgl_label

__all__ = [
    "LOG_FORMATS",
    "LineParser",
    "ParserConfig",
    "ParserStats",
    "detect_format",
    "parse_level",
    "strip_bgl_label",
]
