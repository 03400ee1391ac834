"""Values read off a log line, shared by the explainer, the incident grouper, the text summary
and the trainer's profile: who logged it, and what a parameter value is (a number, an address).
"""

from __future__ import annotations

import ipaddress
import math
import re

from agent.types import ParsedLine


def actor_of(line: ParsedLine) -> str:
    """Who logged the line: the configured entity, or the component when the entity is only the
    stream (a file or socket name says nothing about which service spoke)."""
    return actor_from(line.entity, line.source, line.component)


def actor_from(entity: str, source: str, component: str) -> str:
    """`actor_of` from the line's entity, source and component."""
    if entity and entity != source:
        return entity
    return component or entity


_IPV4 = re.compile(r"^\[?(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.\d{1,3}\]?(?::\d+)?$")


def ip_prefix(value: str) -> str | None:
    """The /24 (IPv4) or /48 (IPv6) network of `value`, or None when it is not an address."""
    m = _IPV4.match(value)
    if m is not None:  # the common case, without the cost of ipaddress
        octets = m.groups()
        return f"{'.'.join(str(int(o)) for o in octets)}.0/24" if all(int(o) < 256 for o in octets) else None
    text = value.strip("[]")
    if text.count(":") < 2 or len(text) > 45:
        return None
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def as_number(value: str) -> float | None:
    """`value` as a finite float when it is a plain decimal number (not hex, ids or versions)."""
    text = value.strip()
    if not text or len(text) > 24 or text.count(".") > 1:
        return None
    body = text[1:] if text[0] in "+-" else text
    if not body or not body.replace(".", "", 1).isdigit():
        return None
    number = float(text)
    return number if math.isfinite(number) else None
