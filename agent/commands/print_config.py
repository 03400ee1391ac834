"""Print a fully commented example agent config (every section and option, with defaults).

The output is accepted by `logdetect validate` as it is once `model` names a trained bundle.

examples:
  logdetect print-config --model /var/lib/logdetect/model > /etc/logdetect/agent.toml
  logdetect validate --config /etc/logdetect/agent.toml
"""

from __future__ import annotations

import argparse
import json
import sys

EXAMPLE = """\
# logdetect agent configuration (TOML). `logdetect validate --config FILE` checks it and the
# model bundle; unknown keys are errors. Relative paths are relative to this file's directory.

# The model bundle `logdetect train` wrote (verified before serving; reloaded on SIGHUP).
model = {model}

# Where the agent keeps state across restarts: online template snapshots, file offsets.
# Under systemd use StateDirectory= (e.g. /var/lib/logdetect). Omit to keep no state.
state_dir = {state_dir}

[pipeline]
sensitivity = "medium"            # low | medium | high: where on the calibrated curve to alert
emit_all = false                  # also emit a logdetect.line event for every processed line
dynamic_thresholds = false        # scale thresholds by the hour-of-day multipliers learned at training
snapshot_interval_secs = 60.0     # how often template state is snapshotted to state_dir
idle_entity_secs = 600.0          # an entity (session) quiet this long is closed and judged
max_entities = 100000             # entities kept in memory (least recently seen go first)
device = "auto"                   # auto | cpu | cuda (ONNX Runtime provider)
intra_op_threads = 1              # ONNX Runtime threads: keep a sidecar off the host's cores

# [parser] overrides the bundle's parser settings (as trained); leave it out to use them.
# [parser]
#   log_format = "auto"

[agent]
queue_records = 10000             # records queued between sources and the pipeline (backpressure)
batch_records = 1024              # records handed to the pipeline at once
tick_interval_secs = 1.0          # timers: idle sessions, incident resolution, snapshots
shutdown_budget_secs = 5.0        # SIGTERM: drain, close and flush within this time
multiline_flush_secs = 0.2        # input idle this long: release a held multi-line record (and ack it)
metrics_listen = "127.0.0.1:9847" # /metrics /livez /readyz on loopback; "" turns it off
metrics_allow_remote = false      # true to bind metrics_listen off-host (Kubernetes probes, Prometheus)
log_level = "info"                # debug | info | warning | error (logs go to stderr)
log_format = "json"               # json | console | auto

# ---------------------------------------------------------------------------------------------
# Sources. Each [sources.<id>] has a `type`; ids name the component in metrics and events.

# Fluentd Forward protocol (Fluent Bit / Fluentd `forward` output). listen = "tcp:HOST:PORT"
# or "unix:PATH" (Fluent Bit `unix_path`). Acks are sent after records are processed.
[sources.fluentbit]
type = "forward"
listen = "tcp:127.0.0.1:24224"
message_field = ["log"]           # record field(s) holding the log line, first present wins
level_field = ""                  # optional record field with the level (e.g. "level")
entity_field = ""                 # optional record field with the entity (e.g. "kubernetes.pod_name")
time_field = ""                   # optional record field with the time (the EventTime is used otherwise)
shared_key = ""                   # non-empty: require the HELO/PING/PONG shared-key handshake
self_hostname = "logdetect"       # our name in the handshake (must differ from the client's)
idle_timeout_secs = 300.0         # close connections silent this long
handshake_timeout_secs = 10.0
max_frame_bytes = 16777216        # larger requests close the connection (bounded memory)
dedupe_chunks = 4096              # recently seen chunk ids: retries are acked, not reprocessed
max_connections = 256

# ZeroMQ PULL (or SUB) socket: plain lines, JSON lines or msgpack; optional sequence header.
# [sources.zmq_in]
# type = "zmq"
# listen = "tcp://127.0.0.1:5556" # bind here ...
# connect = ""                    # ... or connect here instead (e.g. to a PUB)
# socket_type = "pull"            # pull | sub
# subscribe = [""]                # SUB topic prefixes
# format = "auto"                 # auto | plain | json | msgpack
# message_field = ["log", "message", "msg"]
# level_field = ""
# entity_field = ""
# time_field = ""
# rcvhwm = 1000
# max_message_bytes = 16777216
# max_line_bytes = 65536

# Newline-delimited JSON (or plain lines) over TCP/Unix: Vector `socket` sink, Fluent Bit `tcp`.
# [sources.vector]
# type = "socket"
# listen = "tcp:127.0.0.1:9000"
# format = "auto"                 # auto | plain | json
# message_field = ["message", "log", "msg"]
# level_field = ""
# entity_field = ""
# time_field = ""
# max_line_bytes = 65536
# idle_timeout_secs = 300.0
# max_connections = 256

# Standard input: plain lines or JSON lines (Fluent Bit stdout json_lines, Vector console json).
# The agent exits after stdin ends when stdin is its only source.
# [sources.pipe]
# type = "stdin"
# format = "auto"
# message_field = ["log", "message", "msg"]
# level_field = ""
# entity_field = ""
# time_field = ""
# max_line_bytes = 65536

# Follow a file like `tail -F`; the offset is saved in state_dir and resumed after a restart.
# [sources.applog]
# type = "file"
# path = "/var/log/app/current.log"
# format = "auto"
# read_from = "end"               # beginning | end, for a file never seen before
# poll_interval_secs = 0.25
# message_field = ["log", "message", "msg"]
# level_field = ""
# entity_field = ""
# time_field = ""
# max_line_bytes = 65536

# ---------------------------------------------------------------------------------------------
# Sinks: where event JSON lines go.

[sinks.console]
type = "stdout"
flush_every_batch = true

# [sinks.events]
# type = "file"
# path = "/var/log/logdetect/events.jsonl"
# max_bytes = 104857600           # rotate to events.jsonl.1 ... beyond this size
# keep_files = 5
# fsync = true                   # one fsync per batch before its records are acked

# [sinks.bus]
# type = "zmq"
# connect = "tcp://127.0.0.1:5557"  # or listen = "tcp://127.0.0.1:5557"
# listen = ""
# socket_type = "push"            # push | pub
# topic = "logdetect.events"
# producer = ""                   # producer id in the sequence header (default: logdetect-<pid>)
# sndhwm = 1000
# send_timeout_ms = 1000
# linger_ms = 1000

# [sinks.fluentd]
# type = "forward"
# address = "tcp:127.0.0.1:24225"
# tag = "logdetect.events"
# require_ack_response = true
# ack_timeout_secs = 10.0
# connect_timeout_secs = 5.0
# max_retries = 5
# retry_backoff_secs = 0.5
"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="/var/lib/logdetect/model", help="model bundle path to write in")
    p.add_argument("--state-dir", default="/var/lib/logdetect/state", help="state directory to write in")


def example(model: str, state_dir: str) -> str:
    # json.dumps quotes and escapes like a TOML basic string for ordinary paths.
    return EXAMPLE.format(model=json.dumps(model), state_dir=json.dumps(state_dir))


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(example(args.model, args.state_dir))
    return 0
