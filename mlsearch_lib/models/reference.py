"""Reference rows every table shows: all-"yes" and a TF-IDF character n-gram pair model.

The pair model sees the query and the category/title through one character n-gram TF-IDF
(``char_wb`` 2–4, so every script is covered) as three blocks: query, item, and their
element-wise product (shared n-grams), plus the cosine of the two; a logistic regression
on top. It trains in seconds and is the floor the neural models must leave.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression


class AllYes:
    """Answers yes everywhere: p(yes) = 1."""

    def fit(self, pairs: list[tuple[str, str]], labels: np.ndarray, weights: np.ndarray | None = None) -> dict:
        return {}

    def predict_proba(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        return np.ones(len(pairs))


class TfidfPair:
    """Character n-gram TF-IDF of query and item, their overlap, and a logistic regression."""

    #: the feature blocks, in order; a subset reads only those (:func:`~mlsearch_lib.evaluation.experiments.tfidf_decomposition`)
    BLOCKS = ("query", "item", "overlap")

    def __init__(self, seed: int = 0, c: float = 1.0, blocks: tuple[str, ...] = BLOCKS):
        self.blocks = tuple(blocks)
        self.vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2,
                                          sublinear_tf=True, max_features=200_000)
        self.clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)

    def _features(self, pairs: list[tuple[str, str]]) -> sp.csr_matrix:
        q = self.vectorizer.transform([a for a, _ in pairs])
        i = self.vectorizer.transform([b for _, b in pairs])
        overlap = q.multiply(i).tocsr()
        parts = {"query": [q], "item": [i], "overlap": [overlap, sp.csr_matrix(np.asarray(overlap.sum(axis=1)))]}
        return sp.hstack([m for b in getattr(self, "blocks", self.BLOCKS) for m in parts[b]]).tocsr()

    def fit_vocabulary(self, pairs: list[tuple[str, str]]) -> None:
        self.vectorizer.fit([a for a, _ in pairs] + [b for _, b in pairs])

    def fit(self, pairs: list[tuple[str, str]], labels: np.ndarray, weights: np.ndarray | None = None) -> dict:
        self.fit_vocabulary(pairs)
        self.clf.fit(self._features(pairs), np.asarray(labels).astype(int), sample_weight=weights)
        return {}

    def predict_proba(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        return self.clf.predict_proba(self._features(pairs))[:, 1]
