"""Backbone ``hybrid_ctr_gbt``: the contrastive model's logistic regression, read by gradient-boosted
trees beside the few dense numbers that regression can only add up.

Every block of ``hybrid_ctr`` enters one linear logit, so a number cannot change how much another
is trusted: a path prior resting on 2 rows weighs what one resting on 200 does, a retrieval vote
counts the same whether the nearest query is close or far, and no language reads the blocks its own
way. Trees can. They read:

- the regression's logit, cross-fitted on the training rows (``inner_folds`` query-grouped refits of
  the same regression on the same features), so the trees learn from numbers made the way a
  held-out row's are; a held-out row gets the logit of the regression fit on all training rows;
- the 21 standardised dense features of the neighbour-label, category-prior, retrieval and
  contrastive blocks (:data:`DENSE`), which are already held-out-like on the training rows;
- the query's language and the path's top level, as categories (unseen ones as missing).

The TF-IDF n-grams and the 1,537 frozen e5 pair features stay with the regression: trees on them
would only relearn it. The trees' settings are fixed (:data:`TREES`), with early stopping on a
random tenth of the training rows, not tuned on any fold.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import GroupKFold

from mlsearch_lib.data.records import normalize_text
from mlsearch_lib.features import category_priors, contrastive
from mlsearch_lib.features.category_priors import language_of, levels
from mlsearch_lib.models import neighbour_labels
from mlsearch_lib.models.contrastive_pair import CategoryContrastivePair

#: the dense features at the end of ``hybrid_ctr``'s feature rows, in their order there
DENSE = (*neighbour_labels.FEATURES, *category_priors.PRIOR_FEATURES, *category_priors.RETRIEVAL_FEATURES,
         *contrastive.FEATURES)
#: HistGradientBoostingClassifier settings: shallow trees, slow learning, stopped on held-out loss
TREES = {"learning_rate": 0.05, "max_iter": 500, "max_leaf_nodes": 15, "min_samples_leaf": 50,
         "l2_regularization": 1.0, "early_stopping": True, "validation_fraction": 0.1, "n_iter_no_change": 20}


class BoostedContrastivePair(CategoryContrastivePair):
    """:class:`CategoryContrastivePair` whose p(yes) comes from trees over its logit and :data:`DENSE`."""

    def __init__(self, model_id: str, max_length: int = 64, seed: int = 0, inner_folds: int = 4,
                 trees: dict | None = None, **contrastive_pair):
        super().__init__(model_id, max_length, seed, **contrastive_pair)
        self.inner_folds = inner_folds
        self.booster = HistGradientBoostingClassifier(**(TREES | (trees or {})), random_state=seed)
        self.codes: dict[str, dict[str, int]] = {}

    def _features(self, pairs: list[tuple[str, str]], fit: bool = False,
                  vectors: tuple[np.ndarray, np.ndarray] | None = None) -> sp.csr_matrix:
        x = super()._features(pairs, fit, vectors)
        if fit:  # the regression's training rows, kept for the trees' cross-fitted logit
            self._train_x = x
        return x

    def _categories(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        values = {"language": [language_of(a) for a, _ in pairs], "top": [levels(b)[2] for _, b in pairs]}
        return np.column_stack([[self.codes[col].get(v, np.nan) for v in vs] for col, vs in values.items()])

    def _tree_inputs(self, pairs: list[tuple[str, str]], x: sp.csr_matrix, logit: np.ndarray) -> np.ndarray:
        return np.column_stack([logit, x[:, -len(DENSE):].toarray(), self._categories(pairs)])

    def fit(self, pairs: list[tuple[str, str]], labels: np.ndarray, weights: np.ndarray | None = None) -> dict:
        log = super().fit(pairs, labels, weights)
        x, self._train_x = self._train_x, None
        y = np.asarray(labels).astype(int)
        keys = [normalize_text(a) for a, _ in pairs]
        logit = np.empty(len(y))
        for train, held in GroupKFold(self.inner_folds).split(x, y, keys):
            inner = clone(self.clf).fit(x[train], y[train], sample_weight=None if weights is None else weights[train])
            logit[held] = inner.decision_function(x[held])
        self.codes = {"language": {v: i for i, v in enumerate(sorted({language_of(a) for a, _ in pairs}))},
                      "top": {v: i for i, v in enumerate(sorted({levels(b)[2] for _, b in pairs}))}}
        inputs = self._tree_inputs(pairs, x, logit)
        self.booster.set_params(categorical_features=[inputs.shape[1] - 2, inputs.shape[1] - 1])
        self.booster.fit(inputs, y, sample_weight=weights)
        return log | {"tree_iterations": int(self.booster.n_iter_)}

    def predict_proba(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        x = self._features(pairs)
        return self.booster.predict_proba(self._tree_inputs(pairs, x, self.clf.decision_function(x)))[:, 1]
