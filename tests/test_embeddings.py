"""Frozen e5 embeddings (disk cache) and the hybrid TF-IDF + e5 pair model, on the offline e5-small."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from mlsearch_lib.features.embeddings import EmbeddingCache, length_batches
from mlsearch_lib.models.frozen_e5 import HybridPair
from mlsearch_lib.models.reference import TfidfPair

MODEL = "intfloat/multilingual-e5-small"
ROWS = [line.rstrip("\n").split("\t") for line in
        (Path(__file__).parent / "fixtures" / "qc_pairs.tsv").read_text(encoding="utf-8").splitlines()]
# each query with its own category (relevant) and with the category seven rows on (not relevant)
PAIRS = [(q, c) for _, q, c in ROWS] + [(q, ROWS[(i + 7) % len(ROWS)][2]) for i, (_, q, _) in enumerate(ROWS)]
LABELS = np.array([1] * len(ROWS) + [0] * len(ROWS))


@pytest.fixture()
def build(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MLSEARCH_BUILD_DIR", str(tmp_path / "build"))
    return tmp_path / "build"


def test_embedding_cache_computes_each_text_once_and_survives_a_new_process(build, monkeypatch):
    cache = EmbeddingCache(MODEL, max_length=32)
    first = cache.embed(["query: lego", "query: 腕時計", "query: lego"])
    assert first.shape == (3, 384) and np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(first[0], first[2])
    again = EmbeddingCache(MODEL, max_length=32)  # a fresh object reads the disk store
    monkeypatch.setattr(again, "_encode", lambda texts: pytest.fail(f"recomputed {texts}"))
    np.testing.assert_array_equal(again.embed(["query: 腕時計", "query: lego"]), first[[1, 0]])


def test_a_vector_does_not_depend_on_its_batch_mates(tmp_path):
    """Cold and warm caches batch different texts together; the vectors must be bitwise equal.
    (At one ``batch_size``: 2 against 32 rows is another kernel blocking, which moved the 8th
    digit, by up to 8.6e-8, here and on CI; so the cache's key holds the batch size.)"""
    texts = ["query: lego", "query: 腕時計 メンズ 防水", "query: red running shoes for men size 44",
             "query: kablosuz kulaklık", "query: lego"]
    together = EmbeddingCache(MODEL, max_length=32, batch_size=2, cache_dir=tmp_path / "a").embed(texts)
    for i, text in enumerate(texts):
        alone = EmbeddingCache(MODEL, max_length=32, batch_size=2, cache_dir=tmp_path / f"alone{i}").embed([text])
        np.testing.assert_array_equal(alone[0], together[i])


def test_a_cache_read_at_another_batch_size_computes_its_own_vectors(tmp_path):
    texts = ["query: lego", "query: sofa"]
    EmbeddingCache(MODEL, max_length=32, batch_size=2, cache_dir=tmp_path).embed(texts)
    other = EmbeddingCache(MODEL, max_length=32, batch_size=4, cache_dir=tmp_path)
    calls = []
    compute = other._encode
    other._encode = lambda missing: calls.append(missing) or compute(missing)
    other.embed(texts)
    assert calls == [texts]  # none served from the batch-of-2 vectors
    other.embed(texts)
    assert len(calls) == 1  # and its own are remembered


def test_a_vector_does_not_depend_on_how_many_texts_of_its_length_were_computed_with_it(tmp_path):
    """The same token length in batches of different row counts: the matmul kernels block by rows,
    so without a fixed batch shape a cold and a warm cache gave vectors differing in the 7th digit."""
    texts = [f"query: {w}" for w in ("lego", "sofa", "lamp", "ring", "sock", "vase", "drum", "kite", "fork",
                                     "bowl", "belt", "hat", "cup", "pen", "bag", "mug", "box", "toy")]
    cache = EmbeddingCache(MODEL, max_length=32, batch_size=8, cache_dir=tmp_path / "a")
    cache._load()
    lengths = [len(ids) for ids in cache._tok(texts)["input_ids"]]
    assert max(lengths.count(n) for n in set(lengths)) >= 5  # a batch of several rows exists to compare
    together = cache.embed(texts)
    for i, text in enumerate(texts):
        alone = EmbeddingCache(MODEL, max_length=32, batch_size=8, cache_dir=tmp_path / f"alone{i}").embed([text])
        np.testing.assert_array_equal(alone[0], together[i])


@pytest.mark.parametrize("slack", [0.0, 0.1, 0.5])
def test_length_batches_pad_each_row_by_at_most_the_slack(slack):
    rng = np.random.default_rng(0)
    lengths = rng.integers(40, 90, size=300).tolist()
    batches = length_batches(lengths, 16, slack)
    assert sorted(i for b in batches for i in b) == list(range(300))  # every row once
    assert all(1 <= len(b) <= 16 for b in batches)
    for b in batches:
        width = max(lengths[i] for i in b)
        assert all(lengths[i] >= width * (1 - slack) for i in b)
    if slack == 0.0:
        assert all(len({lengths[i] for i in b}) == 1 for b in batches)
    else:  # slack buys fuller batches
        assert len(batches) < len(length_batches(lengths, 16))


def test_hybrid_is_tfidf_when_the_dense_block_is_off_and_differs_with_it(build):
    tfidf = TfidfPair(seed=0, c=0.3)
    tfidf.fit(PAIRS, LABELS)
    plain = HybridPair(MODEL, 32, seed=0, c=0.3, dense_scale=0.0)
    plain.fit(PAIRS, LABELS)
    np.testing.assert_allclose(plain.predict_proba(PAIRS), tfidf.predict_proba(PAIRS), atol=1e-4)
    hybrid = HybridPair(MODEL, 32, seed=0, c=0.3)
    hybrid.fit(PAIRS, LABELS)
    p = hybrid.predict_proba(PAIRS)
    assert np.abs(p - tfidf.predict_proba(PAIRS)).max() > 1e-3  # the e5 block takes part
    assert p[LABELS == 1].mean() > p[LABELS == 0].mean()  # and it learns the training pairs
    restored = pickle.loads(pickle.dumps(hybrid))  # how RelevanceModel saves it
    np.testing.assert_allclose(restored.predict_proba(PAIRS), p, atol=1e-12)
