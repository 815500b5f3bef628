"""The LLM PMI feature: exact log-probabilities, batch independence, a disk memo that resumes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from test_embeddings import LABELS, MODEL, PAIRS, build  # noqa: F401  (the fixture)

from mlsearch_lib.features.category_priors import plain_query
from mlsearch_lib.features.embeddings import memo_on_disk
from mlsearch_lib.features.pmi import CONTEXT, FEATURES, QueryLogProb, pmi_features
from mlsearch_lib.models.tiny_models import QWEN2_TINY_ID

CONTEXTS = [CONTEXT.format(item="toys & hobbies,puzzles & games,puzzles"), "Search query:",
            CONTEXT.format(item="shoes,women's shoes,pumps")]
QUERIES = ["puzzle 1000 pièces", "パズル", "high heels red"]


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    return QueryLogProb(QWEN2_TINY_ID, batch_size=4, cache_dir=tmp_path_factory.mktemp("pmi"))


def test_query_log_probability_is_the_full_models_own(scorer):
    got = scorer._score(CONTEXTS, QUERIES)  # one padded batch of three lengths
    model, tok = scorer._model, scorer._tok
    for i, (context, query) in enumerate(zip(CONTEXTS, QUERIES)):
        ctx, qry = tok(context).input_ids, tok(" " + query, add_special_tokens=False).input_ids
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ctx + qry])).logits[0].double(), -1)
        want = sum(logp[len(ctx) - 1 + j, t].item() for j, t in enumerate(qry))
        assert got[i, 1] == len(qry)
        assert got[i, 0] == pytest.approx(want, abs=1e-4)  # padding and batch mates change nothing


def test_pmi_features_strip_the_language_tag_and_are_remembered(scorer, monkeypatch):
    pairs = [("[LANG=fr] puzzle 1000 pièces", "toys & hobbies,puzzles & games,puzzles"),
             ("high heels red", "shoes,women's shoes,pumps")]
    assert plain_query(pairs[0][0]) == "puzzle 1000 pièces"
    f = pmi_features(scorer, pairs)
    assert f.shape == (2, len(FEATURES)) and np.isfinite(f).all()
    np.testing.assert_allclose(f[:, 0], f[:, 1] * scorer.logprobs(
        [CONTEXT.format(item=b) for _, b in pairs], [plain_query(a) for a, _ in pairs])[:, 1])
    monkeypatch.setattr(QueryLogProb, "_score", lambda *_: pytest.fail("recomputed a remembered value"))
    np.testing.assert_array_equal(pmi_features(scorer, [(plain_query(a), b) for a, b in pairs]), f)


def test_an_interrupted_memo_keeps_its_finished_chunks_and_resumes(tmp_path):
    store, keys = tmp_path / "store.npz", [f"k{i % 7}" for i in range(20)]  # 7 distinct keys
    asked: list[list[int]] = []

    def compute(missing: list[int]) -> np.ndarray:
        asked.append([keys[i] for i in missing])
        if len(asked) == 3:
            raise KeyboardInterrupt  # killed in the third chunk
        return np.array([[float(keys[i][1:])] for i in missing])

    with pytest.raises(KeyboardInterrupt):
        memo_on_disk(store, keys, compute, chunk=2)
    asked.clear()
    values = memo_on_disk(store, keys, compute, chunk=10)
    assert asked == [["k4", "k5", "k6"]]  # only what the killed run had not saved, each key once
    np.testing.assert_array_equal(values[:, 0], [i % 7 for i in range(20)])


def test_the_pmi_model_adds_its_block_and_pickles(build, tmp_path):  # noqa: F811
    from mlsearch_lib.models.category_pair import CategoryPMIPair, CategoryPriorPair

    model = CategoryPMIPair(MODEL, 32, seed=0, lm=QWEN2_TINY_ID)
    model.lm.cache_dir = tmp_path
    model.fit(PAIRS, LABELS)
    base = CategoryPriorPair(MODEL, 32, seed=0)
    base.fit(PAIRS, LABELS)
    assert model._features(PAIRS).shape[1] == base._features(PAIRS).shape[1] + len(FEATURES)
    p = model.predict_proba(PAIRS)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(model)).predict_proba(PAIRS), p, atol=1e-12)
