"""The contrastive bi-encoder: it learns which paths its queries were judged on, its closed-set
features are a proper softmax, and cross-fitting keeps each training row away from the tower that saw its query."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from test_embeddings import LABELS, MODEL, PAIRS, build  # noqa: F401  (the fixture)

from mlsearch_lib.data.records import normalize_text
from mlsearch_lib.features.category_priors import RETRIEVAL_FEATURES
from mlsearch_lib.features.contrastive import FEATURES, TAU, ContrastiveTower, CrossFitTowers, halves, tower_features

KEYS = [normalize_text(q) for q, _ in PAIRS]


def _margin(tower: ContrastiveTower) -> float:
    qt, ct = CrossFitTowers.texts(PAIRS)
    cos = (tower.embed(qt) * tower.embed(ct)).sum(1)
    return float(cos[LABELS == 1].mean() - cos[LABELS == 0].mean())


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])  # bf16: autocast, emulated or native
def test_a_tower_pulls_its_queries_toward_their_positive_paths(bf16):
    tower = ContrastiveTower(MODEL, 32, train_top_layers=2, epochs=4, batch_size=8, lr=3e-4, seed=0, bf16=bf16)
    before = _margin(tower)
    qt, ct = CrossFitTowers.texts(PAIRS)
    log = tower.fit(qt, ct, LABELS)
    assert log["steps"] == 4 * -(-int(LABELS.sum()) // 8)
    assert log["loss_last"] < log["loss_first"]
    assert _margin(tower) > before + 0.02
    restored = pickle.loads(pickle.dumps(tower))  # the top layers travel, the frozen model is shared
    np.testing.assert_allclose(restored.embed(qt[:5]), tower.embed(qt[:5]), atol=1e-6)


def test_closed_set_features_are_a_softmax_over_the_paths_and_a_rank():
    rng = np.random.default_rng(0)
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    cands = unit(rng.normal(size=(4, 8)))
    q = unit(cands[[0, 1]] + 0.1 * rng.normal(size=(2, 8)))
    new_path = unit(rng.normal(size=(1, 8)))
    items = ["p0", "new"]
    c = np.vstack([cands[0], new_path[0]])
    f = tower_features(q, c, ["a", "b"], items, q, ["a", "b"], items, np.array([1, 1]), cands,
                       ["p0", "p1", "p2", "p3"], k=2)
    assert f.shape == (2, len(FEATURES)) and len(FEATURES) == 3 + len(RETRIEVAL_FEATURES)
    s0 = q[0] @ cands.T / TAU
    assert f[0, 0] == pytest.approx(q[0] @ cands[0], abs=1e-6)
    assert f[0, 1] == pytest.approx(s0[0] - np.log(np.exp(s0).sum()), abs=1e-6)
    assert f[0, 2] == pytest.approx(np.log(1 + (s0 > s0[0]).sum()))
    s1 = np.append(q[1] @ cands.T, q[1] @ new_path[0]) / TAU  # an unseen path joins the candidates
    assert f[1, 1] == pytest.approx(s1[-1] - np.log(np.exp(s1).sum()), abs=1e-6)


def test_cross_fitting_scores_each_training_row_with_the_tower_that_never_saw_its_query():
    towers = CrossFitTowers(MODEL, 32, seed=3, train_top_layers=1, epochs=1, batch_size=16)
    own = towers.fit(PAIRS, KEYS, LABELS)
    half = halves(KEYS, 3)
    assert {k: h for k, h in zip(KEYS, half)} == {k: h for k, h in reversed(list(zip(KEYS, half)))}  # one half a query
    assert 0 < half.mean() < 1
    qt, ct = CrossFitTowers.texts(PAIRS)
    for h in (0, 1):
        rows = np.flatnonzero(half == h)
        other, same = towers.towers[1 - h], towers.towers[h]
        cos = lambda t: (t.embed([qt[i] for i in rows]) * t.embed([ct[i] for i in rows])).sum(1)  # noqa: E731
        np.testing.assert_allclose(own[rows, 0], cos(other), atol=1e-5)
        assert not np.allclose(own[rows, 0], cos(same), atol=1e-3)
    held_out = towers.transform(PAIRS[:4], KEYS[:4])
    np.testing.assert_allclose(held_out, np.mean([towers._features(h, PAIRS[:4], KEYS[:4]) for h in (0, 1)], 0))


def test_the_contrastive_model_adds_its_block_learns_and_reloads(build):  # noqa: F811
    from mlsearch_lib.models.category_pair import CategoryPriorPair
    from mlsearch_lib.models.contrastive_pair import CategoryContrastivePair

    model = CategoryContrastivePair(MODEL, 32, seed=0, tower={"train_top_layers": 1, "epochs": 1, "batch_size": 16})
    log = model.fit(PAIRS, LABELS)
    assert [t["steps"] for t in log["towers"]] and not hasattr(model, "_train_block")
    base = CategoryPriorPair(MODEL, 32, seed=0)
    base.fit(PAIRS, LABELS)
    assert model._features(PAIRS).shape[1] == base._features(PAIRS).shape[1] + len(FEATURES)
    p = model.predict_proba(PAIRS)
    assert p[LABELS == 1].mean() > p[LABELS == 0].mean()
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(restored.predict_proba(PAIRS), p, atol=1e-9)


def test_a_reloaded_model_embeds_only_the_rows_it_scores(monkeypatch):
    """The towers keep their vectors of the training index: a loaded model runs e5 on the rows it
    is asked about, not on every training query and path again."""
    towers = CrossFitTowers(MODEL, 32, seed=3, train_top_layers=1, epochs=1, batch_size=16)
    towers.fit(PAIRS[4:], KEYS[4:], LABELS[4:])
    expected = towers.transform(PAIRS[:4], KEYS[:4])
    restored = pickle.loads(pickle.dumps(towers))
    embedded: list[str] = []
    lower = ContrastiveTower._lower
    monkeypatch.setattr(ContrastiveTower, "_lower", lambda self, texts: embedded.extend(texts) or lower(self, texts))
    np.testing.assert_allclose(restored.transform(PAIRS[:4], KEYS[:4]), expected, atol=1e-6)
    asked = set(CrossFitTowers.texts(PAIRS[:4])[0]) | set(CrossFitTowers.texts(PAIRS[:4])[1])
    assert embedded and set(embedded) <= asked
    legacy = pickle.loads(pickle.dumps(towers))  # a model pickled before the vectors were kept: rebuilt on load
    del legacy.vectors
    legacy.__setstate__(dict(legacy.__dict__))
    np.testing.assert_allclose(legacy.transform(PAIRS[:4], KEYS[:4]), expected, atol=1e-6)


def test_the_boosted_model_reads_the_dense_blocks_a_cross_fitted_logit_and_out_of_fold_priors(build):  # noqa: F811
    from mlsearch_lib.models.boosted_pair import DENSE, PRIORS, BoostedContrastivePair
    from mlsearch_lib.models.frozen_e5 import HybridPair

    model = BoostedContrastivePair(MODEL, 32, seed=0, inner_folds=3,
                                   trees={"min_samples_leaf": 3, "early_stopping": False, "max_iter": 30},
                                   tower={"train_top_layers": 1, "epochs": 1, "batch_size": 16})
    seen: dict[str, np.ndarray] = {}
    fit_trees, fit_regression = model.booster.fit, model.clf.fit
    model.booster.fit = lambda x, y, **kw: fit_trees(seen.setdefault("trees", x), y, **kw)
    model.clf.fit = lambda x, y, **kw: fit_regression(seen.setdefault("regression", x), y, **kw)
    log = model.fit(PAIRS, LABELS)
    del model.booster.fit, model.clf.fit
    assert log["tree_iterations"] == 30 and model._train_x is None
    hybrid = HybridPair(MODEL, 32, seed=0)
    hybrid.fit(PAIRS, LABELS)
    tail = len(DENSE)
    regression = seen["regression"][:, -tail:].toarray()
    assert seen["regression"].shape[1] - hybrid._features(PAIRS).shape[1] == tail  # the tail: the dense blocks
    trees = seen["trees"]
    assert trees.shape == (len(PAIRS), 1 + tail)
    others = np.ones(tail, bool)
    others[PRIORS] = False
    np.testing.assert_allclose(trees[:, 1:][:, others], regression[:, others])
    # the priors come from inner folds, not from the leave-own-query-out block the regression read
    assert np.abs(trees[:, 1:][:, PRIORS] - regression[:, PRIORS]).max() > 1e-2
    # and the logit is held out too, not the regression's own fit to those very rows
    in_sample = model.clf.decision_function(seen["regression"])
    assert np.abs(trees[:, 0] - in_sample).max() > 1e-2 and np.corrcoef(trees[:, 0], in_sample)[0, 1] > 0
    p = model.predict_proba(PAIRS)
    assert p[LABELS == 1].mean() > p[LABELS == 0].mean()
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(restored.predict_proba(PAIRS), p, atol=1e-9)
