"""Fitting template vectors on the user's own templates: no downloaded embeddings.

Word vectors come from the word co-occurrence of the training templates, each template
weighted by how often its lines occur (1 + log count): positive pointwise mutual information
(context distribution smoothed, α = 0.75), then a truncated SVD (U·√S), rows unit length —
the count-based counterpart of skip-gram (Levy & Goldberg, 2014), exact and fast at the size of
a template vocabulary. A word also counts as its own context, so a word of a one-word template
still has a vector. IDF weights come from the templates. See `agent.template_vectors`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from agent.template_vectors import TemplateVectors, template_words

SMOOTHING = 0.75


def fit_template_vectors(
    texts: Mapping[int, str], counts: Mapping[int, int], vocab_size: int, dim: int = 32, window: int = 5,
) -> TemplateVectors:
    """Word and template vectors for model tokens 1..vocab_size-1 (`texts`: token → template text,
    `counts`: token → training lines); a token without text gets a word of its own."""
    docs = {t: template_words(texts.get(t, "")) or [f"template{t}"] for t in range(1, vocab_size)}
    words = sorted({w for ws in docs.values() for w in ws})
    index = {w: i for i, w in enumerate(words)}
    n = len(words)
    co = np.zeros((n, n), dtype=np.float64)
    df = np.zeros(n, dtype=np.float64)
    for t, ws in docs.items():
        weight = 1.0 + math.log1p(counts.get(t, 0))
        ids = [index[w] for w in ws]
        for i, a in enumerate(ids):
            for b in ids[max(0, i - window) : i + window + 1]:
                co[a, b] += weight
        df[sorted(set(ids))] += 1.0
    vectors = _ppmi_svd(co, dim)
    idf = (np.log((1.0 + len(docs)) / (1.0 + df)) + 1.0).astype(np.float32)
    tv = TemplateVectors(words, vectors, idf, np.zeros((vocab_size, vectors.shape[1]), dtype=np.float32))
    for t, ws in docs.items():
        tv.templates[t] = tv.embed(" ".join(ws))
    return tv


def _ppmi_svd(co: np.ndarray, dim: int) -> np.ndarray:
    """Unit rows of U·√S of the PPMI matrix of a co-occurrence matrix, truncated to `dim`."""
    n = co.shape[0]
    if n == 0:
        return np.zeros((0, dim), dtype=np.float32)
    rows = co.sum(axis=1, keepdims=True)
    ctx = co.sum(axis=0, keepdims=True) ** SMOOTHING
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log((co * ctx.sum()) / (rows * ctx))
    ppmi = np.where(np.isfinite(pmi) & (pmi > 0), pmi, 0.0)
    u, s, _ = np.linalg.svd(ppmi, full_matrices=False)
    k = max(1, min(dim, n))
    vec = u[:, :k] * np.sqrt(s[:k])
    norms = np.linalg.norm(vec, axis=1, keepdims=True)
    vec = np.divide(vec, norms, out=np.zeros_like(vec), where=norms > 0)
    if vec.shape[1] < dim:  # a tiny vocabulary: pad so every bundle's vectors have the asked length
        vec = np.pad(vec, ((0, 0), (0, dim - vec.shape[1])))
    return np.asarray(vec, dtype=np.float32)
