"""The neighbour-label model with QC's category side beside it: hierarchical path priors and
query-to-path retrieval (:mod:`mlsearch_lib.features.category_priors`) as one more standardised
block in the same logistic regression (backbone ``hybrid_cat``). Everything is fit on the
training rows only; the training rows' own block leaves their query out, as the neighbour labels do.
``hybrid_pmi`` adds a small causal LM's query-path PMI (:mod:`mlsearch_lib.features.pmi`), which
reads no label."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import StandardScaler

from mlsearch_lib.data.records import normalize_text
from mlsearch_lib.features.category_priors import PathPriors, language_of, retrieval_features
from mlsearch_lib.features.pmi import PMI_MODEL, QueryLogProb, pmi_features
from mlsearch_lib.models.frozen_e5 import standardised
from mlsearch_lib.models.neighbour_labels import NeighbourLabelPair


class CategoryPriorPair(NeighbourLabelPair):
    """:class:`NeighbourLabelPair` + :data:`~mlsearch_lib.features.category_priors.PRIOR_FEATURES`
    + :data:`~mlsearch_lib.features.category_priors.RETRIEVAL_FEATURES`."""

    def __init__(self, model_id: str, max_length: int = 64, seed: int = 0, strength: float = 3.0,
                 retrieval_k: int = 50, **neighbour_labels):
        super().__init__(model_id, max_length, seed, **neighbour_labels)
        self.strength, self.retrieval_k = strength, retrieval_k
        self.cat_scaler = StandardScaler()
        self.priors = PathPriors(strength)

    def _category(self, pairs: list[tuple[str, str]], q: np.ndarray, fit: bool) -> np.ndarray:
        ix = self.index
        keys = ix["keys"] if fit else [normalize_text(a) for a, _ in pairs]
        paths = [b for _, b in pairs]
        priors = self.priors.transform(keys, paths, [language_of(a) for a, _ in pairs], leave_own_out=fit)
        pos = np.asarray(ix["y"]) == 1
        retrieved = retrieval_features(q, keys, paths, ix["q"][pos], [k for k, p in zip(ix["keys"], pos) if p],
                                       [i for i, p in zip(ix["items"], pos) if p], self.retrieval_k, self.temperature)
        block = np.hstack([priors, retrieved])
        return standardised(self.cat_scaler, block, fit)

    def _features(self, pairs: list[tuple[str, str]], fit: bool = False,
                  vectors: tuple[np.ndarray, np.ndarray] | None = None) -> sp.csr_matrix:
        vectors = vectors or self._vectors(pairs, fit)
        return sp.hstack([super()._features(pairs, fit, vectors),
                          sp.csr_matrix(self._category(pairs, vectors[0], fit))]).tocsr()

    def fit(self, pairs: list[tuple[str, str]], labels: np.ndarray, weights: np.ndarray | None = None) -> dict:
        keys = [normalize_text(a) for a, _ in pairs]
        self.priors = PathPriors(self.strength).fit(keys, [b for _, b in pairs], [language_of(a) for a, _ in pairs],
                                                    np.asarray(labels))
        return super().fit(pairs, labels, weights)


class CategoryPMIPair(CategoryPriorPair):
    """:class:`CategoryPriorPair` + :data:`~mlsearch_lib.features.pmi.FEATURES` from the causal LM ``lm``."""

    def __init__(self, model_id: str, max_length: int = 64, seed: int = 0, lm: str = PMI_MODEL, **category):
        super().__init__(model_id, max_length, seed, **category)
        self.lm = QueryLogProb(lm)
        self.pmi_scaler = StandardScaler()

    def _features(self, pairs: list[tuple[str, str]], fit: bool = False,
                  vectors: tuple[np.ndarray, np.ndarray] | None = None) -> sp.csr_matrix:
        block = standardised(self.pmi_scaler, pmi_features(self.lm, pairs), fit)
        return sp.hstack([super()._features(pairs, fit, vectors), sp.csr_matrix(block)]).tocsr()
