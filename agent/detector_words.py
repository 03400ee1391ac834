"""What each detector found, in words: how an alert's header, its explanations and the summary
name a detector to a person.

A detector's id (`deeplog`, `isolation_forest`) stays in every machine-readable field (an
event's `anomaly.scores[].detector`, an explanation's `detector` fact); the text a person reads
says what the detector found ("an unusual order of events (DeepLog)") and names a model as its
authors do ("DeepLog", "LSTM autoencoder"). The rules say only what they found: "a message
never seen in training" is the whole of the novelty rule's reason.

A detector is read by its model type (the bundle's `models.<name>.type`; a detector's name is its
type unless a bundle renames it, and then the name is said beside the type's: "DeepLog (dl2)").
A detector of no known type is said by its name ("my_model fired").
"""

from __future__ import annotations

from collections.abc import Mapping

# model type -> (what it found, as a noun phrase; how its authors name it, "" for a rule)
_WORDS: dict[str, tuple[str, str]] = {
    "novelty": ("a message never seen in training", ""),
    "novel_set": ("a set of messages never seen together in training", ""),
    "deeplog": ("an unusual order of events", "DeepLog"),
    "loganomaly": ("an unusual order of events", "LogAnomaly"),
    "lstm_ae": ("an unusual run of recent lines", "LSTM autoencoder"),
    "logbert": ("recent lines it could not predict", "LogBERT"),
    "isolation_forest": ("a line unusual in its length, level, rate or time", "Isolation Forest"),
    "autolog": ("an unusual mix of recent lines", "AutoLog"),
    "supervised_lstm": ("recent lines like the labelled anomalies", "supervised LSTM"),
}
RULES = frozenset(kind for kind, (_, name) in _WORDS.items() if not name)


def _kind(detector: str, types: Mapping[str, str] | None) -> str:
    return (types or {}).get(detector, detector)


def model_name(detector: str, types: Mapping[str, str] | None = None) -> str:
    """How a person names the detector: "DeepLog", "Isolation Forest"; a renamed one with its
    name ("DeepLog (dl2)"); a rule or a detector of no known type by its name."""
    kind = _kind(detector, types)
    name = _WORDS.get(kind, ("", ""))[1]
    if not name:
        return detector
    return name if detector == kind else f"{name} ({detector})"


def found_by(detector: str, types: Mapping[str, str] | None = None) -> str:
    """What the detector found, with the model that found it: "an unusual order of events
    (DeepLog)"; a rule's finding alone ("a message never seen in training"); a detector of no
    known type "my_model fired"."""
    kind = _kind(detector, types)
    words = _WORDS.get(kind)
    if words is None:
        return f"{detector} fired"
    found, name = words
    return f"{found} ({model_name(detector, types)})" if name else found
