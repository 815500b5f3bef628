"""Backbone ``hybrid_ctr_gbt``: the contrastive model's logistic regression, read by gradient-boosted
trees beside the few dense numbers that regression can only add up.

Every block of ``hybrid_ctr`` enters one linear logit, so a number cannot change how much another
is trusted: a path prior resting on 2 rows weighs what one resting on 200 does, and a retrieval
vote counts the same whether the nearest query is close or far. Trees can. They read:

- the regression's logit, cross-fitted on the training rows (``inner_folds`` query-grouped refits of
  the same regression on the same features), so the trees learn from numbers made the way a
  held-out row's are; a held-out row gets the logit of the regression fit on all training rows;
- the 21 standardised dense features of the neighbour-label, category-prior, retrieval and
  contrastive blocks (:data:`DENSE`).

The path priors are the one block the trees must not read as the regression does. A training row's
prior leaves its own query out, so within one path the prior is lower exactly where the label is 1
(leave-one-out target encoding), and a path's other numbers identify it: trees learnt that and
fell to 0.60 ROC-AUC on fold 0 of QC (seed 13), where the regression reads the same block at 0.731.
So the trees' training rows get their priors from the same inner folds as the logit (fit on the
other folds, the row's own fold never in them), on the regression's scale. The trees' settings are
fixed (:data:`TREES`), with early stopping on a random tenth of the training rows, not tuned on a fold.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import GroupKFold

from mlsearch_lib.data.records import normalize_text
from mlsearch_lib.features import category_priors, contrastive
from mlsearch_lib.features.category_priors import PathPriors, language_of
from mlsearch_lib.models import neighbour_labels
from mlsearch_lib.models.contrastive_pair import CategoryContrastivePair

#: the dense features at the end of ``hybrid_ctr``'s feature rows, in their order there
DENSE = (*neighbour_labels.FEATURES, *category_priors.PRIOR_FEATURES, *category_priors.RETRIEVAL_FEATURES,
         *contrastive.FEATURES)
#: where the path priors sit among :data:`DENSE`
PRIORS = slice(len(neighbour_labels.FEATURES), len(neighbour_labels.FEATURES) + len(category_priors.PRIOR_FEATURES))
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

    def _features(self, pairs: list[tuple[str, str]], fit: bool = False,
                  vectors: tuple[np.ndarray, np.ndarray] | None = None) -> sp.csr_matrix:
        x = super()._features(pairs, fit, vectors)
        if fit:  # the regression's training rows, kept for the trees' cross-fitted logit
            self._train_x = x
        return x

    def _tree_inputs(self, x: sp.csr_matrix, logit: np.ndarray, priors: np.ndarray | None = None) -> np.ndarray:
        """[logit, :data:`DENSE`]; ``priors`` (raw :class:`PathPriors` rows) replace the block's own."""
        dense = x[:, -len(DENSE):].toarray()
        if priors is not None:  # on the scale the regression's scaler gave the block
            dense[:, PRIORS] = (priors - self.cat_scaler.mean_[:priors.shape[1]]) / self.cat_scaler.scale_[:priors.shape[1]]
        return np.column_stack([logit, dense])

    def fit(self, pairs: list[tuple[str, str]], labels: np.ndarray, weights: np.ndarray | None = None) -> dict:
        log = super().fit(pairs, labels, weights)
        x, self._train_x = self._train_x, None
        y = np.asarray(labels).astype(int)
        keys = [normalize_text(a) for a, _ in pairs]
        paths, languages = [b for _, b in pairs], [language_of(a) for a, _ in pairs]
        logit, priors = np.empty(len(y)), np.empty((len(y), PRIORS.stop - PRIORS.start))
        pick = lambda values, rows: [values[i] for i in rows]  # noqa: E731
        for train, held in GroupKFold(self.inner_folds).split(x, y, keys):
            inner = clone(self.clf).fit(x[train], y[train], sample_weight=None if weights is None else weights[train])
            logit[held] = inner.decision_function(x[held])
            fold_priors = PathPriors(self.strength).fit(pick(keys, train), pick(paths, train),
                                                        pick(languages, train), y[train])
            priors[held] = fold_priors.transform(pick(keys, held), pick(paths, held), pick(languages, held))
        self.booster.fit(self._tree_inputs(x, logit, priors), y, sample_weight=weights)
        return log | {"tree_iterations": int(self.booster.n_iter_)}

    def predict_proba(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        x = self._features(pairs)
        return self.booster.predict_proba(self._tree_inputs(x, self.clf.decision_function(x)))[:, 1]
