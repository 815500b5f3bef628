"""Neighbour labels: how the training queries nearest to a query were judged on similar items.

Most QC queries occur once, but the catalogue does not: a query's category has usually been
judged before, for queries like it. The neighbour items of the prompt (:mod:`~mlsearch_lib.features.neighbours`)
show the cross-encoder only what similar queries *matched*; here the judgements themselves, yes
and no, become four numbers per row, and a logistic regression reads them beside the hybrid's
TF-IDF and frozen-e5 blocks (:class:`NeighbourLabelPair`, backbone ``hybrid_nl``).

For a row with query vector q and item vector c, the k nearest indexed queries (frozen e5
cosine, never one with the row's own normalised query) get softmax weights w = softmax(τ·sim):

- ``vote``:  Σ w · cos(c, c') · (2y' − 1)  — did similar queries say yes to similar items?
- ``shown``: Σ w · cos(c, c')              — are such items what similar queries were shown with?
- ``same``:  Σ w · [item = item'] · (2y' − 1) — the verdicts on this very item
- ``near``:  the largest similarity         — how much the three above can be trusted

Training rows get their features from the other queries of the training set (leave one query
out), so the regression learns from numbers made the way a held-out row's are.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import StandardScaler

from mlsearch_lib.data.records import normalize_text
from mlsearch_lib.features.embeddings import e5_vectors
from mlsearch_lib.models.frozen_e5 import HybridPair, standardised

FEATURES = ("vote", "shown", "same", "near")
#: rows scored against the index at once (a rows x index float32 block: 2,048 x 15k = 120 MB)
CHUNK = 2048


def neighbour_label_features(q: np.ndarray, c: np.ndarray, keys: Sequence[str], items: Sequence[str],
                             index_q: np.ndarray, index_c: np.ndarray, index_keys: Sequence[str],
                             index_items: Sequence[str], index_y: np.ndarray, k: int = 20,
                             temperature: float = 20.0) -> np.ndarray:
    """One row of :data:`FEATURES` per (q, c); neighbours with the row's own key are never used.

    Vectors are L2-normalised (dot product = cosine). A row with no usable neighbour gets zeros.
    """
    n_index = len(index_keys)
    out = np.zeros((len(keys), len(FEATURES)), dtype=np.float64)
    if n_index == 0 or len(keys) == 0:
        return out
    key_ids = {key: i for i, key in enumerate(dict.fromkeys(index_keys))}
    index_kid = np.array([key_ids[key] for key in index_keys])
    row_kid = np.array([key_ids.get(key, -1) for key in keys])
    item_ids = {item: i for i, item in enumerate(dict.fromkeys([*index_items, *items]))}
    index_iid = np.array([item_ids[item] for item in index_items])
    row_iid = np.array([item_ids[item] for item in items])
    sign = 2.0 * np.asarray(index_y, dtype=np.float64) - 1.0
    depth = min(k, n_index)
    for start in range(0, len(keys), CHUNK):
        rows = slice(start, start + CHUNK)
        sims = q[rows] @ index_q.T
        sims[row_kid[rows, None] == index_kid[None, :]] = -np.inf  # never the row's own query
        top = np.argpartition(-sims, depth - 1, axis=1)[:, :depth] if depth < n_index else \
            np.tile(np.arange(n_index), (sims.shape[0], 1))
        s = np.take_along_axis(sims, top, axis=1).astype(np.float64)
        nearest = s.max(1, keepdims=True)
        nearest[~np.isfinite(nearest)] = 0.0  # no usable neighbour: every weight below is 0
        w = np.exp(temperature * (s - nearest))  # exp(-inf) = 0 for the masked ones
        total = w.sum(1, keepdims=True)
        w = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
        item_cos = np.einsum("rd,rkd->rk", c[rows].astype(np.float64), index_c[top].astype(np.float64))
        same = (index_iid[top] == row_iid[rows, None]).astype(np.float64)
        out[rows, 0] = (w * item_cos * sign[top]).sum(1)
        out[rows, 1] = (w * item_cos).sum(1)
        out[rows, 2] = (w * same * sign[top]).sum(1)
        out[rows, 3] = nearest[:, 0]
    return out


class NeighbourLabelPair(HybridPair):
    """The hybrid (TF-IDF blocks + frozen e5 pair features) with the :data:`FEATURES` block beside it."""

    def __init__(self, model_id: str, max_length: int = 64, seed: int = 0, k: int = 20, temperature: float = 20.0,
                 **hybrid):
        super().__init__(model_id, max_length, seed, **hybrid)
        self.k, self.temperature = k, temperature
        self.nl_scaler = StandardScaler()
        self.index: dict[str, np.ndarray | list[str]] = {}

    def _nl(self, pairs: list[tuple[str, str]], vectors: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        q, c = vectors or e5_vectors(self.cache, pairs)
        ix = self.index
        return neighbour_label_features(q, c, [normalize_text(a) for a, _ in pairs], [b for _, b in pairs],
                                        ix["q"], ix["c"], ix["keys"], ix["items"], ix["y"], self.k, self.temperature)

    def _vectors(self, pairs: list[tuple[str, str]], fit: bool) -> tuple[np.ndarray, np.ndarray]:
        """Each embedding-store read loads the whole store: once per call, shared by every block
        (when fitting, the pairs are the index's own)."""
        return (self.index["q"], self.index["c"]) if fit else e5_vectors(self.cache, pairs)

    def _features(self, pairs: list[tuple[str, str]], fit: bool = False,
                  vectors: tuple[np.ndarray, np.ndarray] | None = None) -> sp.csr_matrix:
        vectors = vectors or self._vectors(pairs, fit)
        nl = self._nl(pairs, vectors)
        nl = standardised(self.nl_scaler, nl, fit)
        return sp.hstack([super()._features(pairs, fit, vectors), sp.csr_matrix(nl)]).tocsr()

    def fit(self, pairs: list[tuple[str, str]], labels: np.ndarray, weights: np.ndarray | None = None) -> dict:
        q, c = e5_vectors(self.cache, pairs)
        self.index = {"q": q, "c": c, "keys": [normalize_text(a) for a, _ in pairs], "items": [b for _, b in pairs],
                      "y": np.asarray(labels).astype(int)}
        return super().fit(pairs, labels, weights)
