"""One small exception tree. `UserError`s become a one-line message and exit code 2."""

from __future__ import annotations


class LogdetectError(Exception):
    """Base of every error this project raises on purpose."""


class UserError(LogdetectError):
    """Something the user can fix: a bad path, option, config or bundle."""


class ConfigError(UserError):
    """The configuration file or an option is wrong."""


class InputError(UserError):
    """An input file is missing, unreadable, empty or not in the expected format."""


class BundleError(UserError):
    """The model bundle is missing, edited, corrupt or from an incompatible version."""


class ModelError(LogdetectError):
    """A model failed to load or run (ONNX shapes disagree with the manifest, say)."""


class DependencyError(UserError):
    """An optional dependency (onnxruntime, torch) is not installed."""
