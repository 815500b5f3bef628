"""Pair models on frozen e5 vectors: a logistic regression on the pair features, and one beside
TF-IDF's character n-gram blocks.

Plain fine-tuning of a small cross-encoder on a few thousand rows does not leave the TF-IDF
floor on this data (offline-models.md measured ROC-AUC 0.684 after a full epoch on 16k QC
rows); a logistic regression on frozen e5 pair features trains in seconds per fold.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlsearch_lib.features.embeddings import EmbeddingCache, e5_pair_features, e5_vectors, pair_features
from mlsearch_lib.models.reference import TfidfPair


def standardised(scaler: StandardScaler, block: np.ndarray, fit: bool) -> np.ndarray:
    """A dense feature block standardised by ``scaler``: fit on the training rows, applied to the rest."""
    return scaler.fit_transform(block) if fit else scaler.transform(block)


class BiEncoderPair:
    """Frozen e5 embeddings of query ("query: ...") and item ("passage: ...") + logistic regression."""

    def __init__(self, model_id: str, max_length: int = 64, seed: int = 0, c: float = 0.5):
        self.cache = EmbeddingCache(model_id, max_length)
        self.clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000, random_state=seed))

    def _features(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        return e5_pair_features(self.cache, pairs)

    def fit(self, pairs: list[tuple[str, str]], labels: np.ndarray, weights: np.ndarray | None = None) -> dict:
        self.clf.fit(self._features(pairs), np.asarray(labels).astype(int), logisticregression__sample_weight=weights)
        return {}

    def predict_proba(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        return self.clf.predict_proba(self._features(pairs))[:, 1]

    def __getstate__(self) -> dict:  # pickled without the loaded transformer
        state = dict(self.__dict__)
        state["cache"] = EmbeddingCache(self.cache.model_id, self.cache.max_length, self.cache.batch_size, self.cache.cache_dir)
        return state


class HybridPair:
    """TF-IDF character n-gram blocks and frozen e5 pair features in one logistic regression.

    The two see different things: n-grams catch shared strings and the item's and query's own
    priors; e5 places a query near a category in another language. Neither alone leaves the other
    far behind on QC, but side by side they do better than either. The dense block is
    standardised and scaled by ``dense_scale`` so that one L2 penalty suits both blocks (the
    sparse TF-IDF rows have unit norm, a standardised 1,537-dimensional row a norm near 39).
    ``c`` and ``dense_scale`` were picked on QC's out-of-fold ROC-AUC (scale 0.2 / 0.1 / 0.05 /
    0.03: 0.693 / 0.699 / 0.704 / 0.706 at C 0.3; C 1 is lower) and kept unchanged for QI.
    """

    def __init__(self, model_id: str, max_length: int = 64, seed: int = 0, c: float = 0.3,
                 dense_scale: float = 0.05):
        self.tfidf = TfidfPair(seed=seed)
        self.cache = EmbeddingCache(model_id, max_length)
        self.scaler = StandardScaler()
        self.clf = LogisticRegression(C=c, max_iter=3000, random_state=seed)
        self.dense_scale = dense_scale

    def _features(self, pairs: list[tuple[str, str]], fit: bool = False,
                  vectors: tuple[np.ndarray, np.ndarray] | None = None) -> sp.csr_matrix:
        """``vectors``: the pairs' :func:`e5_vectors` when the caller has them already."""
        dense = pair_features(*(vectors or e5_vectors(self.cache, pairs)))
        dense = standardised(self.scaler, dense, fit)
        return sp.hstack([self.tfidf._features(pairs), sp.csr_matrix(dense * self.dense_scale)]).tocsr()

    def fit(self, pairs: list[tuple[str, str]], labels: np.ndarray, weights: np.ndarray | None = None) -> dict:
        self.tfidf.fit_vocabulary(pairs)
        self.clf.fit(self._features(pairs, fit=True), np.asarray(labels).astype(int), sample_weight=weights)
        return {}

    def predict_proba(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        return self.clf.predict_proba(self._features(pairs))[:, 1]

    __getstate__ = BiEncoderPair.__getstate__  # pickled without the loaded transformer
