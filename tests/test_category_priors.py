"""Hierarchical path priors and query-to-path retrieval: shrinkage, leave-own-query-out, back-off."""

from __future__ import annotations

import numpy as np
import pytest
from test_embeddings import LABELS, MODEL, PAIRS, build  # noqa: F401  (the fixture)

from mlsearch_lib.features.category_priors import (PRIOR_FEATURES, RETRIEVAL_FEATURES, PathPriors, language_of,
                                                   levels, retrieval_features)


def test_levels_and_language_tag():
    assert levels("toys & hobbies, puzzles & games,puzzles") == ("toys & hobbies,puzzles & games,puzzles",
                                                                "toys & hobbies,puzzles & games", "toys & hobbies")
    assert levels("shoes") == ("shoes", "shoes", "shoes")
    assert language_of("[LANG=fr] robe") == "fr" and language_of("robe") == ""


def _share(logit: float) -> float:
    return 1 / (1 + np.exp(-logit))


def test_a_path_prior_is_shrunk_toward_its_parents_and_leaves_its_own_query_out():
    keys = ["q1", "q2", "q3", "q4", "q5", "q6"]
    paths = ["a,b,c", "a,b,c", "a,b,d", "a,b,d", "a,e", "x"]
    y = np.array([1, 1, 0, 0, 1, 0])
    pp = PathPriors(strength=1.0).fit(keys, paths, ["en"] * 6, y)
    f = pp.transform(["new"], ["a,b,c"], ["en"])
    assert f.shape == (1, len(PRIOR_FEATURES))
    g = 0.5
    top = (3 + g) / (5 + 1)  # "a": 3 yes of 5 rows
    level2 = (2 + top) / (4 + 1)  # "a,b": 2 of 4
    leaf = (2 + level2) / (2 + 1)
    assert _share(f[0, 0]) == pytest.approx(leaf) and _share(f[0, 1]) == pytest.approx(level2)
    assert _share(f[0, 2]) == pytest.approx(top) and f[0, 4] == pytest.approx(np.log(3))
    # an unseen path backs off to its parents: an unseen leaf under "a,b" gets a,b's share
    unseen = pp.transform(["new"], ["a,b,zz"], ["en"])
    assert _share(unseen[0, 0]) == pytest.approx(level2) and unseen[0, 4] == 0
    # a training row's own query is left out: q1's row is scored as if only q2 had judged a,b,c
    own = pp.transform(["q1"], ["a,b,c"], ["en"], leave_own_out=True)
    top_wo, l2_wo = (2 + g) / (4 + 1), None
    l2_wo = (1 + top_wo) / (3 + 1)
    assert _share(own[0, 0]) == pytest.approx((1 + l2_wo) / (1 + 1))
    # a language's own top-level share, shrunk toward the top level's
    per_lang = PathPriors(1.0).fit(keys, paths, ["en", "en", "en", "en", "fr", "fr"], y)
    fr = per_lang.transform(["new"], ["a,b,c"], ["fr"])
    assert _share(fr[0, 3]) == pytest.approx((1 + top) / (1 + 1))


def test_retrieval_votes_for_the_paths_of_similar_positive_queries_and_never_the_own_query():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 16))
    index_q = np.vstack([base[0], base[0] + 0.01, base[1], base[2]])
    index_q /= np.linalg.norm(index_q, axis=1, keepdims=True)
    index_keys = ["k0", "k1", "k2", "k3"]
    index_paths = ["a,b,c", "a,b,d", "x,y", "a,b,c"]
    q = index_q[[0, 0, 2]]
    f = retrieval_features(q, ["new", "k0", "new"], ["a,b,c", "a,b,c", "x,y"], index_q, index_keys, index_paths,
                           k=3, temperature=50.0)
    assert f.shape == (3, len(RETRIEVAL_FEATURES))
    # row 0 sits on k0 and k1: its leaf gets k0's vote, its level 2 both
    assert f[0, 0] == pytest.approx(0.5, abs=0.02) and f[0, 1] == pytest.approx(1.0, abs=1e-3)
    assert f[0, 3] == pytest.approx(np.log(2))  # "a,b,c" ranked first
    # row 1 is k0 itself: k0 masked, so k1 ("a,b,d") is nearest and a,b,c is not what its neighbours say
    assert f[1, 0] < 0.05 and f[1, 1] == pytest.approx(1.0, abs=1e-3)
    assert f[2, 0] == pytest.approx(1.0, abs=1e-3) and f[2, 2] == pytest.approx(1.0, abs=1e-3)
    empty = retrieval_features(q, ["a"] * 3, ["p"] * 3, index_q[:0], [], [], k=3)
    assert (empty[:, :3] == 0).all() and (empty[:, 3] == np.log(4)).all()


def test_the_category_model_adds_its_block_learns_and_reloads(build):  # noqa: F811
    import pickle

    from mlsearch_lib.models.category_pair import CategoryPriorPair
    from mlsearch_lib.models.neighbour_labels import NeighbourLabelPair

    model = CategoryPriorPair(MODEL, 32, seed=0)
    model.fit(PAIRS, LABELS)
    base = NeighbourLabelPair(MODEL, 32, seed=0)
    base.fit(PAIRS, LABELS)
    width = model._features(PAIRS).shape[1]
    assert width == base._features(PAIRS).shape[1] + len(PRIOR_FEATURES) + len(RETRIEVAL_FEATURES)
    p = model.predict_proba(PAIRS)
    assert p[LABELS == 1].mean() > p[LABELS == 0].mean()
    # training rows see their block with their own query left out: flipping row 0's label moves
    # the prior of its path for every other query on it, never for its own query's rows
    block = model._category(PAIRS, model.index["q"], fit=True)
    flipped = CategoryPriorPair(MODEL, 32, seed=0)
    flipped.fit(PAIRS, np.where(np.arange(len(PAIRS)) == 0, 1 - LABELS, LABELS))
    own = [i for i, (q, _) in enumerate(PAIRS) if q == PAIRS[0][0]]
    raw = flipped.priors.transform(flipped.index["keys"], [b for _, b in PAIRS], [""] * len(PAIRS), leave_own_out=True)
    before = model.priors.transform(model.index["keys"], [b for _, b in PAIRS], [""] * len(PAIRS), leave_own_out=True)
    others = [i for i, (q, c) in enumerate(PAIRS) if c == PAIRS[0][1] and q != PAIRS[0][0]]
    moved = np.abs(raw[:, 0] - before[:, 0])
    assert others and moved[own].max() < 0.1 * moved[others].min()  # own rows: only the global share moves
    assert block.shape == (len(PAIRS), len(PRIOR_FEATURES) + len(RETRIEVAL_FEATURES))
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(restored.predict_proba(PAIRS), p, atol=1e-12)


def test_the_fold_cache_key_follows_the_models_code(monkeypatch):
    import inspect

    from mlsearch_lib.models import relevance

    assert relevance.code_version("tfidf") == relevance.code_version("tfidf") != relevance.code_version("hybrid_cat")
    real = inspect.getsource
    monkeypatch.setattr(inspect, "getsource", lambda m: real(m) + ("# edited" if m.__name__.endswith(".reference") else ""))
    before = relevance.code_version("hybrid_nl")
    monkeypatch.setattr(inspect, "getsource", real)
    assert relevance.code_version("hybrid_nl") != before  # the TF-IDF block's module is part of it
