"""logdetect trainer: the offline half (torch, scikit-learn, ONNX export, evaluation)."""

from __future__ import annotations
