"""Template vectors from the words of each template (LogAnomaly's template2vec, numpy only).

A template's words (its text without values and masks, split on punctuation and camelCase,
lower-cased) each have a vector learnt at training time from the user's own logs
(`trainer.template_vectors`: PPMI + truncated SVD over word co-occurrence); a template's vector
is the TF-IDF-weighted mean of its known words' vectors, unit length. A template born after
training gets its vector the same way from the words it shares with the training vocabulary, so
its nearest training template (cosine) stands in for it: a message whose wording changed by one
word is judged as the template it resembles instead of as pure novelty.

The bundle file is a plain `.npz` (no pickle): `words` (unicode array), `vectors` (words × d),
`idf` (words) and `templates` (model tokens × d, row 0 = UNK = zeros).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.errors import BundleError

_MASK = re.compile(r"<[^<>\s]*>")  # <*>, <NUM>, <IP>, <BLK> ...: values, never words
_PIECE = re.compile(r"[A-Za-z]+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+")
MIN_WORD = 2


def template_words(text: str) -> list[str]:
    """The words of a template or message: letters only, camelCase split, lower-cased, masks and
    one-letter pieces dropped (`"PacketResponder <*> terminating"` → packet, responder, terminating)."""
    out: list[str] = []
    for piece in _PIECE.findall(_MASK.sub(" ", text)):
        out.extend(w.lower() for w in _CAMEL.findall(piece) if len(w) >= MIN_WORD)
    return out


@dataclass(frozen=True)
class Neighbour:
    """The training template nearest to a text: its model token and the cosine similarity."""

    token: int
    similarity: float


class TemplateVectors:
    """Word vectors, their IDF weights and the vectors of the training templates."""

    def __init__(self, words: list[str], vectors: np.ndarray, idf: np.ndarray, templates: np.ndarray) -> None:
        if vectors.shape[0] != len(words) or idf.shape != (len(words),) or templates.ndim != 2 or (
                len(words) and templates.shape[1] != vectors.shape[1]):
            raise BundleError("template vectors: inconsistent shapes: retrain the bundle")
        self.index = {w: i for i, w in enumerate(words)}
        self.words = list(words)
        self.vectors = np.asarray(vectors, dtype=np.float32)
        self.idf = np.asarray(idf, dtype=np.float32)
        self.templates = np.asarray(templates, dtype=np.float32)

    @property
    def dim(self) -> int:
        """Length of every vector."""
        return int(self.templates.shape[1])

    def embed(self, text: str) -> np.ndarray:
        """The unit TF-IDF-weighted mean of the known words' vectors (zeros: no known word)."""
        rows: dict[int, int] = {}
        for w in template_words(text):
            i = self.index.get(w)
            if i is not None:
                rows[i] = rows.get(i, 0) + 1
        if not rows:
            return np.zeros(self.dim, dtype=np.float32)
        idx = np.fromiter(rows, dtype=np.int64)
        weight = np.fromiter(rows.values(), dtype=np.float32) * self.idf[idx]
        mean = np.asarray(weight @ self.vectors[idx], dtype=np.float32)
        norm = float(np.linalg.norm(mean))
        return mean / norm if norm > 0 else np.zeros(self.dim, dtype=np.float32)

    def nearest(self, text: str) -> Neighbour:
        """The training template (token ≥ 1) most similar to `text`; token 0 when none is (no known word)."""
        v = self.embed(text)
        if len(self.templates) < 2 or not v.any():
            return Neighbour(0, 0.0)
        sims = self.templates[1:] @ v
        best = int(np.argmax(sims))
        return Neighbour(best + 1, float(sims[best]))

    def save(self, path: Path) -> None:
        """Write the `.npz` bundle file (no pickled objects)."""
        with path.open("wb") as fh:
            np.savez(fh, words=np.asarray(self.words, dtype=str), vectors=self.vectors, idf=self.idf,
                     templates=self.templates)

    @staticmethod
    def load(path: Path) -> TemplateVectors:
        """Read a `.npz` written by `save` (pickles refused)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                return TemplateVectors([str(w) for w in z["words"]], z["vectors"], z["idf"], z["templates"])
        except (OSError, KeyError, ValueError) as exc:
            raise BundleError(f"{path}: unreadable template vectors ({exc}): retrain the bundle") from None
