"""Neighbour items: what the training queries nearest to a query were judged relevant to.

A small cross-encoder has to match a Korean query to an English category path in one step.
The training fold already holds queries like it, each with the items it matched; a query
written beside those items (``q [NB] item ; item``) turns the cross-lingual match into a
comparison of one English category path with others.

Off by default (``prompt.nb: 0``): on QC fold 0 (``reports/probes/QC_fold0_nb2_len96.md``) two
neighbours raised the cross-encoder's ROC-AUC by 0.004 for three times the training time.

Neighbours come from the training fold only, are found with frozen e5 "query: ..." vectors
(:class:`~mlsearch_lib.features.embeddings.EmbeddingCache`, cosine), and never share the row's
normalised query, so a training row sees what a held-out row sees: other queries' items.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from mlsearch_lib.features.embeddings import EmbeddingCache

#: rows scored against the index at once (a rows x index float32 block: 2,048 x 12k = 100 MB)
CHUNK = 2048


class NeighbourIndex:
    """The relevant (query, item) pairs of a training fold, and a lookup of the nearest ones."""

    def __init__(self, model_id: str, k: int, max_length: int = 64):
        if k < 1:
            raise ValueError(f"neighbours: k must be at least 1, not {k}")
        self.model_id, self.k, self.max_length = model_id, k, max_length
        self.keys: list[str] = []
        self.queries: list[str] = []
        self.items: list[str] = []
        self._vectors: np.ndarray | None = None

    def fit(self, keys: Sequence[str], queries: Sequence[str], items: Sequence[str]) -> "NeighbourIndex":
        """Index pairs judged relevant: ``keys`` are the normalised queries (what a row may not take)."""
        if not len(keys) == len(queries) == len(items):
            raise ValueError("neighbours: keys, queries and items must have one entry per pair")
        self.keys, self.queries, self.items = list(keys), list(queries), list(items)
        self._vectors = None
        return self

    def _embed(self, queries: Sequence[str]) -> np.ndarray:
        return EmbeddingCache(self.model_id, self.max_length).embed([f"query: {q}" for q in queries])

    def lookup(self, keys: Sequence[str], queries: Sequence[str]) -> list[list[str]]:
        """Per row, up to ``k`` distinct items of the indexed queries nearest to its query, nearest
        first, none from a query with the row's key. Ties go to the earlier indexed pair."""
        if not len(keys) == len(queries):
            raise ValueError("neighbours: keys and queries must have one entry per row")
        if not self.items or not len(queries):
            return [[] for _ in queries]
        if self._vectors is None:
            self._vectors = self._embed(self.queries)
        by_key: dict[str, list[int]] = defaultdict(list)
        for j, key in enumerate(self.keys):
            by_key[key].append(j)
        vectors = self._embed(queries)
        # enough candidates that k distinct items survive the own-query mask and repeated items
        depth = min(len(self.items), 8 * self.k + max((len(v) for v in by_key.values()), default=0))
        out: list[list[str]] = []
        for start in range(0, len(queries), CHUNK):
            sims = vectors[start:start + CHUNK] @ self._vectors.T
            for r, key in enumerate(keys[start:start + CHUNK]):
                sims[r, by_key.get(key, [])] = -np.inf
            top = np.argpartition(-sims, depth - 1, axis=1)[:, :depth] if depth < len(self.items) else \
                np.tile(np.arange(len(self.items)), (len(sims), 1))
            for r, cand in enumerate(top):
                order = cand[np.lexsort((cand, -sims[r, cand]))]  # by similarity, then index
                picked: list[str] = []
                for j in order:
                    if not np.isfinite(sims[r, j]) or len(picked) == self.k:
                        break
                    if self.items[j] not in picked:
                        picked.append(self.items[j])
                out.append(picked)
        return out

    def state(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "k": self.k, "max_length": self.max_length,
                "keys": self.keys, "queries": self.queries, "items": self.items}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "NeighbourIndex":
        index = cls(state["model_id"], state["k"], state["max_length"])
        return index.fit(state["keys"], state["queries"], state["items"])
