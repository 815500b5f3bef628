"""Frozen multilingual sentence embeddings (e5) with a disk cache, and the pair features read
off them (the models on top: :mod:`mlsearch_lib.models.frozen_e5`).

A frozen e5 embeds each distinct query and category/title once — far fewer texts than pairs,
since categories repeat — and places a Japanese query near an English category, which character
n-grams cannot. The same vectors find the in-context examples (:mod:`mlsearch_lib.features.neighbours`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mlsearch_lib.config.paths import build_dir, ensure
from mlsearch_lib.config.progress import tqdm

#: Part of every cached vector's key (and of the fold caches built on them): bumped when the
#: way a vector is computed changes. "unpadded": batches of one token length; "fixed-rows": and
#: of one row count (see ``_encode``).
EMBEDDING_VERSION = "unpadded-fixed-rows"


def length_batches(lengths: list[int], size: int, slack: float = 0.0) -> list[list[int]]:
    """Indices grouped into batches of at most ``size``, shortest first, each row padded by at
    most ``slack`` x its batch's longest length.

    ``slack=0`` batches only equal lengths: a transformer's output for a padded sequence differs
    in the 7th digit from the unpadded one, so each output is then independent of its batch
    mates. A small ``slack`` trades that for fuller batches when only speed matters.
    """
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        last = batches[-1] if batches else None
        if last and len(last) < size and lengths[last[0]] >= lengths[i] * (1 - slack):
            last.append(i)
        else:
            batches.append([i])
    return batches


class EmbeddingCache:
    """Mean-pooled, L2-normalised embeddings of texts, remembered on disk by (model, prefix, text)."""

    def __init__(self, model_id: str, max_length: int = 64, batch_size: int = 32, cache_dir: Path | None = None):
        self.model_id, self.max_length, self.batch_size = model_id, max_length, batch_size
        self.cache_dir = ensure(cache_dir or build_dir() / "embeddings" / model_id.replace("/", "--"))
        self._model = self._tok = None

    def _key(self, text: str) -> str:
        """The key names all a vector depends on: the batch shape too (see ``_encode``), so a cache
        read with another ``batch_size`` computes its own vectors instead of mixing two shapes."""
        shape = f"{self.max_length}\x00{self.batch_size}"
        return hashlib.sha256(f"{EMBEDDING_VERSION}\x00{shape}\x00{text}".encode()).hexdigest()

    def _load(self) -> None:
        if self._model is None:
            from transformers import AutoModel

            from mlsearch_lib.models.offline import load_tokenizer, resolve_model

            path = resolve_model(self.model_id)
            self._tok = load_tokenizer(path)
            self._model = AutoModel.from_pretrained(path).eval()

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Embeddings of ``texts``, each bitwise independent of which other texts share its batch.

        A cold and a warm cache put different texts together. Padding changes a row's output in
        the 7th digit, and so does the batch's row count (the matmul kernels block by rows: on
        QC queries one in four vectors differed between batches of 64 and of 7), which then moves
        the frozen-e5 rows' ROC-AUC in the 4th digit. So every batch holds texts of one token
        length and exactly ``batch_size`` rows, the last text repeated to fill it; at a fixed
        shape a row's output depends neither on its mates nor on its place. Tested bitwise in
        ``tests/test_embeddings.py``.
        """
        import torch

        self._load()
        ids = self._tok(texts, truncation=True, max_length=self.max_length)["input_ids"]
        batches = length_batches([len(seq) for seq in ids], self.batch_size)
        result = np.zeros((len(texts), self._model.config.hidden_size), np.float32)
        with torch.inference_mode():
            for sel in tqdm(batches, desc="embedding", leave=False):
                rows = [ids[i] for i in sel] + [ids[sel[-1]]] * (self.batch_size - len(sel))
                hidden = self._model(input_ids=torch.tensor(rows)).last_hidden_state[: len(sel)]
                result[sel] = torch.nn.functional.normalize(hidden.mean(1), dim=-1).numpy()
        return result

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings in input order; only texts never seen before are computed."""
        unique = list(dict.fromkeys(texts))
        vectors = memo_on_disk(self.cache_dir / "store.npz", [self._key(t) for t in unique],
                               lambda missing: self._encode([unique[i] for i in missing]))
        index = dict(zip(unique, vectors))
        return np.stack([index[t] for t in texts])


def memo_on_disk(store: Path, keys: list[str], compute: Callable[[list[int]], np.ndarray],
                 chunk: int | None = None) -> np.ndarray:
    """Values (float32 rows) of ``keys`` from the npz ``store``; the missing ones (their positions
    in ``keys``) come from ``compute`` and are saved, ``chunk`` at a time when given, so that an
    interrupted run keeps what it computed and the next one resumes there. Writes are atomic."""
    known: dict[str, np.ndarray] = {}
    if store.exists():
        saved = np.load(store)
        known = dict(zip(saved["keys"].tolist(), saved["vectors"]))
    first = {k: i for i, k in reversed(list(enumerate(keys)))}  # each distinct key computed once
    missing = sorted(i for k, i in first.items() if k not in known)
    step = chunk or max(len(missing), 1)
    for start in range(0, len(missing), step):
        part = missing[start:start + step]
        for i, value in zip(part, compute(part)):
            known[keys[i]] = np.asarray(value, dtype=np.float32)
        tmp = store.with_name(store.stem + ".tmp.npz")
        np.savez(tmp, keys=np.array(list(known)), vectors=np.stack(list(known.values())))
        tmp.replace(store)
    return np.stack([known[k] for k in keys]) if keys else np.zeros((0,), np.float32)


def pair_features(q: np.ndarray, c: np.ndarray) -> np.ndarray:
    """[q, c, q⊙c, |q−c|, cos]: both sides (priors), their interaction, and their similarity."""
    return np.hstack([q, c, q * c, np.abs(q - c), (q * c).sum(1, keepdims=True)])


def e5_vectors(cache: EmbeddingCache, pairs: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """e5's "query: ..." and "passage: ..." embeddings of each pair's two sides."""
    return cache.embed([f"query: {a}" for a, _ in pairs]), cache.embed([f"passage: {b}" for _, b in pairs])


def e5_pair_features(cache: EmbeddingCache, pairs: list[tuple[str, str]]) -> np.ndarray:
    """:func:`pair_features` of :func:`e5_vectors`."""
    return pair_features(*e5_vectors(cache, pairs))
