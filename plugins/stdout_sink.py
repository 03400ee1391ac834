"""`stdout` sink: one event JSON object per line on standard output.

This is the sink for Fluent Bit's `exec` input and Vector's `exec` source reading our events;
logs go to stderr, so stdout stays a clean NDJSON stream. A reader that went away (EPIPE) is
counted and further events are dropped by reason, never raised.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from agent import metrics
from agent.components import Sink, count_drop, option


@dataclass(frozen=True)
class StdoutSinkOptions:
    """Options of `[sinks.<id>] type = "stdout"`."""

    flush_every_batch: bool = option(True, "flush stdout after every batch (false: let the buffer fill)")

    def problems(self) -> list[str]:
        """No option can be invalid: always empty."""
        return []


class StdoutSink(Sink):
    """Writes event JSON lines to standard output; a closed pipe drops and counts them."""

    type_name = "stdout"

    def __init__(self, sink_id: str, options: StdoutSinkOptions, stream: BinaryIO | None = None) -> None:
        super().__init__(sink_id)
        self.options = options
        self._stream = stream
        self._broken = False

    def _out(self) -> BinaryIO:
        return self._stream if self._stream is not None else sys.stdout.buffer

    def write(self, events: Sequence[bytes]) -> None:
        """Write the events, one per line (dropped and counted once stdout is closed)."""
        if not events:
            return
        if self._broken:
            count_drop(self.id, "stdout_closed", len(events))
            return
        try:
            self._out().write(b"".join(e + b"\n" for e in events))
        except (BrokenPipeError, ValueError, OSError):
            self._broken = True
            count_drop(self.id, "stdout_closed", len(events))
            return
        metrics.records_out.labels(component=self.id).inc(len(events))

    def flush(self) -> None:
        """Flush stdout when asked to flush every batch."""
        if self._broken or not self.options.flush_every_batch:
            return
        try:
            self._out().flush()
        except (BrokenPipeError, ValueError, OSError):
            self._broken = True

    def close(self) -> None:
        """Flush what is buffered."""
        self.flush()
