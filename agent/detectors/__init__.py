"""Serving side of every model: ONNX Runtime only, batched and memoised."""
