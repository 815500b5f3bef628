"""Backbone ``hybrid_ctr``: :class:`~mlsearch_lib.models.category_pair.CategoryPriorPair` with a
contrastive bi-encoder's block beside it (:mod:`mlsearch_lib.features.contrastive`), cross-fitted
on the training rows' two query halves so that the regression sees held-out-like numbers."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import StandardScaler

from mlsearch_lib.data.records import normalize_text
from mlsearch_lib.features.contrastive import CrossFitTowers
from mlsearch_lib.models.category_pair import CategoryPriorPair
from mlsearch_lib.models.frozen_e5 import standardised


class CategoryContrastivePair(CategoryPriorPair):
    """:class:`CategoryPriorPair` + :data:`~mlsearch_lib.features.contrastive.FEATURES` from
    :class:`~mlsearch_lib.features.contrastive.CrossFitTowers` (``tower``: their settings)."""

    def __init__(self, model_id: str, max_length: int = 64, seed: int = 0, tower: dict | None = None, **category):
        super().__init__(model_id, max_length, seed, **category)
        self.towers = CrossFitTowers(model_id, max_length, seed, k=self.retrieval_k, temperature=self.temperature,
                                     **(tower or {}))
        self.ctr_scaler = StandardScaler()

    def _features(self, pairs: list[tuple[str, str]], fit: bool = False,
                  vectors: tuple[np.ndarray, np.ndarray] | None = None) -> sp.csr_matrix:
        block = self._train_block if fit else self.towers.transform(pairs, [normalize_text(a) for a, _ in pairs])
        block = standardised(self.ctr_scaler, block, fit)
        return sp.hstack([super()._features(pairs, fit, vectors), sp.csr_matrix(block)]).tocsr()

    def fit(self, pairs: list[tuple[str, str]], labels: np.ndarray, weights: np.ndarray | None = None) -> dict:
        self._train_block = self.towers.fit(pairs, [normalize_text(a) for a, _ in pairs], np.asarray(labels))
        try:
            return super().fit(pairs, labels, weights) | {"towers": self.towers.log}
        finally:
            del self._train_block
