"""logdetect agent: the online half. Imports without torch or scikit-learn."""

from __future__ import annotations

__version__ = "0.1.0"
