"""Prometheus metrics of the agent, defined once (prefix `logdetect_`, Prometheus naming).

Every component counts through these objects; nothing else defines metrics. Labels are
bounded (component ids from the config, reason words from code), never template ids or hosts.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

REGISTRY = CollectorRegistry(auto_describe=True)

records_in = Counter(
    "logdetect_records_in", "Records received, by component", ["component"], registry=REGISTRY
)
records_out = Counter(
    "logdetect_records_out", "Events written, by component", ["component"], registry=REGISTRY
)
records_dropped = Counter(
    "logdetect_records_dropped",
    "Records or frames dropped, by component and reason",
    ["component", "reason"],
    registry=REGISTRY,
)
records_repaired = Counter(
    "logdetect_records_repaired",
    "Records kept with a field replaced or cut (bad_time, record_truncated), by component and reason",
    ["component", "reason"],
    registry=REGISTRY,
)
decode_errors = Counter(
    "logdetect_decode_errors", "Input that could not be decoded, by component", ["component"], registry=REGISTRY
)
lost_messages = Counter(
    "logdetect_input_lost_messages",
    "Messages a producer sent that never arrived (sequence gaps)",
    ["component"],
    registry=REGISTRY,
)
state_unreadable = Counter(
    "logdetect_state_unreadable",
    "State files in state_dir that could not be read at start (the agent starts without them), by file",
    ["file"],
    registry=REGISTRY,
)
queue_depth = Gauge("logdetect_queue_records", "Records waiting in a queue", ["stage"], registry=REGISTRY)
templates = Gauge("logdetect_templates", "Templates the miner knows", registry=REGISTRY)
feedback_suppressed = Counter(
    "logdetect_feedback_suppressed", "Lines judged normal because an operator marked their template as expected",
    registry=REGISTRY,
)
feedback_suppressed_sessions = Counter(
    "logdetect_feedback_suppressed_sessions",
    "Session verdicts dropped because their only reasons are templates an operator marked as expected",
    registry=REGISTRY,
)
templates_created = Counter("logdetect_templates_created", "Templates created online", registry=REGISTRY)
entities = Gauge("logdetect_entities", "Entities (sessions) held in memory", registry=REGISTRY)
inference_seconds = Histogram(
    "logdetect_inference_duration_seconds",
    "Time of one ONNX Runtime call",
    ["model"],
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
inference_batch = Histogram(
    "logdetect_inference_batch_size",
    "Rows per ONNX Runtime call",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
    registry=REGISTRY,
)
memo_hit_ratio = Gauge(
    "logdetect_memo_hit_ratio", "Share of windows answered from the memo cache", ["model"], registry=REGISTRY
)
anomalies = Counter(
    "logdetect_anomalies", "Anomalies emitted, by verdict", ["verdict"], registry=REGISTRY
)
incidents = Counter(
    "logdetect_incidents", "Incidents opened, by severity", ["severity"], registry=REGISTRY
)
snapshot_seconds = Gauge(
    "logdetect_state_snapshot_duration_seconds", "Duration of the last state snapshot", registry=REGISTRY
)
snapshot_bytes = Gauge("logdetect_state_snapshot_bytes", "Size of the last state snapshot", registry=REGISTRY)
build_info = Info("logdetect_build", "Version of logdetect and ONNX Runtime", registry=REGISTRY)
model_info = Info("logdetect_model", "Loaded model bundle and provider in use", registry=REGISTRY)
