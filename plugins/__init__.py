"""logdetect plugins: sources and sinks, the only code that does I/O with the outside world."""

from __future__ import annotations
