"""Neighbour labels: the verdicts of the nearest other queries, as features beside the hybrid."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from test_embeddings import LABELS, MODEL, PAIRS, build  # noqa: F401  (the fixture)

from mlsearch_lib.models import neighbour_labels
from mlsearch_lib.models.neighbour_labels import FEATURES, NeighbourLabelPair, neighbour_label_features


def _unit(*rows: list[float]) -> np.ndarray:
    v = np.array(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# an index of four judged pairs: queries along x/y, items along x/y
INDEX_Q = _unit([1, 0], [1, 0.1], [0, 1], [1, 0.05])
INDEX_C = _unit([1, 0], [1, 0], [0, 1], [1, 0])
INDEX_KEYS = ["lego", "lego set", "watch", "own"]
INDEX_ITEMS = ["toys", "toys", "watches", "toys"]


def _features(y, keys=("own",), items=("toys",), q=_unit([1, 0.05]), c=_unit([1, 0]), **kw) -> np.ndarray:
    return neighbour_label_features(q, c, list(keys), list(items), INDEX_Q, INDEX_C, INDEX_KEYS, INDEX_ITEMS,
                                    np.asarray(y), **kw)


def test_the_vote_follows_the_neighbours_verdicts_on_similar_items():
    yes, no = _features([1, 1, 0, 0]), _features([0, 0, 0, 0])
    assert yes[0, FEATURES.index("vote")] > 0.5 and no[0, FEATURES.index("vote")] < -0.5
    assert yes[0, FEATURES.index("same")] > 0.5 and no[0, FEATURES.index("same")] < -0.5
    # "shown" and "near" do not read labels
    np.testing.assert_array_equal(yes[:, [1, 3]], no[:, [1, 3]])
    assert yes[0, FEATURES.index("near")] == pytest.approx(float((INDEX_Q[:3] @ _unit([1, 0.05])[0]).max()), abs=1e-6)


def test_a_row_never_reads_its_own_query():
    """The index's 'own' pair is the row's nearest and disagrees with the others: flipping its
    label changes nothing, while another key lets it in."""
    a, b = _features([1, 1, 0, 0]), _features([1, 1, 0, 1])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(_features([1, 1, 0, 0], keys=("new",)), _features([1, 1, 0, 1], keys=("new",)))


def test_rows_without_a_usable_neighbour_get_zeros_and_chunks_do_not_matter(monkeypatch):
    lone = neighbour_label_features(_unit([1, 0]), _unit([1, 0]), ["only"], ["toys"], _unit([1, 0]), _unit([1, 0]),
                                    ["only"], ["toys"], np.array([1]))
    np.testing.assert_array_equal(lone, np.zeros((1, len(FEATURES))))
    rng = np.random.default_rng(0)
    q, c = _unit(*rng.normal(size=(7, 2))), _unit(*rng.normal(size=(7, 2)))
    keys, items = [f"q{i}" for i in range(7)], ["toys", "watches"] * 3 + ["new"]
    whole = _features([1, 0, 1, 1], keys=keys, items=items, q=q, c=c, k=3)
    monkeypatch.setattr(neighbour_labels, "CHUNK", 2)
    np.testing.assert_array_equal(_features([1, 0, 1, 1], keys=keys, items=items, q=q, c=c, k=3), whole)


def test_training_rows_are_featured_leaving_their_own_query_out_and_the_model_reloads(build):  # noqa: F811
    model = NeighbourLabelPair(MODEL, 32, seed=0)
    model.fit(PAIRS, LABELS)
    nl = model._nl(PAIRS)
    flipped = NeighbourLabelPair(MODEL, 32, seed=0)
    flipped.fit(PAIRS, np.where(np.arange(len(PAIRS)) == 0, 1 - LABELS, LABELS))
    # row 0's query appears in rows 0 and len(ROWS): its own two verdicts never reach it
    own = [i for i, (q, _) in enumerate(PAIRS) if q == PAIRS[0][0]]
    np.testing.assert_array_equal(flipped._nl(PAIRS)[own], nl[own])
    p = model.predict_proba(PAIRS)
    assert p[LABELS == 1].mean() > p[LABELS == 0].mean()
    restored = pickle.loads(pickle.dumps(model))  # how RelevanceModel saves it
    np.testing.assert_allclose(restored.predict_proba(PAIRS), p, atol=1e-12)
