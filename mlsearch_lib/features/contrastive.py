"""A contrastive bi-encoder for QC's closed set of paths: e5's top layers fine-tuned so that a
query lands near the paths it was judged relevant to, and far from the others.

Frozen e5 places a query near a category by meaning alone; what the labels add is *which*
categories a marketplace files such queries under. With only ~3,900 paths, every path vector gets
gradient from every query judged on it, so a few hundred small steps teach the top layers that.

- **Training** (:class:`ContrastiveTower`): InfoNCE of each positive (query, path) against every
  other path of the batch (in-batch negatives) and against the query's own labelled negative
  paths (hard negatives), at temperature :data:`TAU`. A batch column whose path is the row's own
  positive is masked, not counted as a negative. Only the top ``train_top_layers`` layers train;
  the frozen layers below run once per distinct text and process
  (:func:`~mlsearch_lib.models.encoder.lower_states`), as the cross-encoder's do. A plain loop,
  not the HF Trainer: a tower trains in seconds per fold, from memory, and has no checkpoint
  worth resuming.
- **Features** (:func:`tower_features`, :data:`FEATURES`): the tuned cosine of query and path;
  log P(path | query) over the training set's distinct paths (a softmax of the cosines: the
  closed-set classifier a bi-encoder is) and the path's rank among them; and the neighbour-query
  retrieval of :func:`~mlsearch_lib.features.category_priors.retrieval_features` on tuned vectors.
- **Cross-fitting** (:class:`CrossFitTowers`): two towers, each trained on the positives of one
  half of the training queries. A training row's features come from the tower that never saw its
  query; a held-out row's are the two towers' mean. So the regression above learns from numbers
  made the way a held-out row's are, at the cost of one full training.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mlsearch_lib.config.progress import tqdm
from mlsearch_lib.config.seeds import seed_everything
from mlsearch_lib.features.category_priors import RETRIEVAL_FEATURES, retrieval_features
from mlsearch_lib.features.embeddings import length_batches

FEATURES = ("ctr_cos", "ctr_logp_path", "ctr_log_rank", *(f"ctr_{f}" for f in RETRIEVAL_FEATURES))
#: InfoNCE temperature (e5's own pre-training used 0.01; a softer 0.05 suits a few thousand pairs)
TAU = 0.05
#: rows scored against the candidate paths at once
CHUNK = 2048


@functools.lru_cache(maxsize=2)
def _frozen(model_id: str) -> tuple[Any, torch.nn.Module]:
    """(tokenizer, frozen e5) of ``model_id``, loaded once per process and shared by every tower."""
    from transformers import AutoModel

    from mlsearch_lib.models.offline import load_tokenizer, resolve_model

    path = resolve_model(model_id)
    return load_tokenizer(path), AutoModel.from_pretrained(path).eval().requires_grad_(False)


class ContrastiveTower:
    """e5 with its top ``train_top_layers`` layers tuned on (query, positive path[, negative paths])."""

    def __init__(self, model_id: str, max_length: int = 64, train_top_layers: int = 2, epochs: float = 2.0,
                 batch_size: int = 64, lr: float = 1e-4, seed: int = 0, bf16: bool = False):
        self.model_id, self.max_length, self.seed, self.bf16 = model_id, max_length, seed, bf16
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        layers = _frozen(model_id)[1].encoder.layer
        self.n_low = len(layers) - train_top_layers
        #: this tower's own copy of the top layers (the frozen model below is shared)
        self.top = copy.deepcopy(torch.nn.ModuleList(layers[self.n_low:])).requires_grad_(True)
        self._memo: dict[str, np.ndarray] = {}

    def __getstate__(self) -> dict:  # pickled with its top layers only
        return {k: v for k, v in self.__dict__.items() if k != "_memo"} | {"_memo": {}}

    # -- frozen lower layers, once per text ---------------------------------------------------
    def _lower(self, texts: Sequence[str]) -> list[torch.Tensor]:
        from mlsearch_lib.models.encoder import lower_states

        tokenizer, model = _frozen(self.model_id)
        encode = lambda xs: [{"input_ids": ids} for ids in  # noqa: E731
                             tokenizer(xs, truncation=True, max_length=self.max_length)["input_ids"]]
        return lower_states(model, self.n_low, (self.model_id, self.n_low, self.max_length, "text"), texts, encode, 64)

    def _forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        """Normalised mean-pooled top-layer vectors of right-padded cached states."""
        from mlsearch_lib.models.encoder import mean_pool, pad_states, run_top

        hidden, mask = pad_states(states)
        return torch.nn.functional.normalize(mean_pool(run_top(self.top, hidden, mask), mask), dim=-1)

    def embed(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Tuned, L2-normalised vectors in input order (each distinct text computed once per tower)."""
        unique = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if unique:
            states = self._lower(unique)
            self.top.eval()
            with torch.inference_mode():  # batches of one length: no pads, so a vector does not depend on its mates
                for sel in length_batches([len(s) for s in states], batch_size):
                    for i, v in zip(sel, self._forward([states[i] for i in sel]).numpy()):
                        self._memo[unique[i]] = v
        if not len(texts):
            return np.zeros((0, self.top[0].output.dense.out_features), np.float32)
        return np.stack([self._memo[t] for t in texts])

    # -- training -----------------------------------------------------------------------------
    def fit(self, queries: Sequence[str], paths: Sequence[str], labels: np.ndarray) -> dict:
        """Train on the positive rows, with each query's negative rows as its hard negatives.

        ``queries`` and ``paths`` are the texts as embedded (with e5's prefixes). Returns
        ``{"steps", "loss_first", "loss_last"}``.
        """
        labels = np.asarray(labels).astype(int)
        positives = [(q, p) for q, p, y in zip(queries, paths, labels) if y == 1]
        negatives: dict[str, list[str]] = {}
        for q, p, y in zip(queries, paths, labels):
            if y == 0:
                negatives.setdefault(q, []).append(p)
        own: dict[str, set[str]] = {}
        for q, p in positives:
            own.setdefault(q, set()).add(p)
        if not positives:
            return {"steps": 0, "loss_first": float("nan"), "loss_last": float("nan")}
        self._lower([*queries, *paths])
        seed_everything(self.seed)
        rng = np.random.default_rng(self.seed)
        optim = torch.optim.AdamW(self.top.parameters(), lr=self.lr, weight_decay=0.01)
        per_epoch = -(-len(positives) // self.batch_size)
        total = max(1, int(round(self.epochs * per_epoch)))
        sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min(1.0, (s + 1) / (0.1 * total + 1)) *
                                                  max(0.0, (total - s) / total))
        losses: list[float] = []
        self._memo.clear()
        self.top.train()
        order: list[int] = []
        for _ in tqdm(range(total), desc="contrastive tower", leave=False, unit="step"):
            if len(order) < self.batch_size:
                order += rng.permutation(len(positives)).tolist()
            batch, order = [positives[i] for i in order[:self.batch_size]], order[self.batch_size:]
            hard = [(q, rng.choice(negatives[q])) for q, _ in batch if q in negatives]
            columns = [p for _, p in batch] + [p for _, p in hard]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                qv = self._forward(self._lower([q for q, _ in batch]))
                cv = self._forward(self._lower(columns))
            logits = qv.float() @ cv.float().T / TAU
            # a column holding one of the row's own positive paths is not a negative (its diagonal is the target)
            clash = torch.tensor([[c in own[q] for c in columns] for q, _ in batch])
            clash[torch.arange(len(batch)), torch.arange(len(batch))] = False
            loss = torch.nn.functional.cross_entropy(logits.masked_fill(clash, float("-inf")),
                                                     torch.arange(len(batch)))
            optim.zero_grad()
            loss.backward()
            optim.step()
            sched.step()
            losses.append(loss.item())
        self.top.eval()
        window = min(per_epoch, 10)  # steps of the first and last epoch
        return {"steps": total, "loss_first": float(np.mean(losses[:window])),
                "loss_last": float(np.mean(losses[-window:]))}


def tower_features(q: np.ndarray, c: np.ndarray, keys: Sequence[str], items: Sequence[str],
                   index_q: np.ndarray, index_keys: Sequence[str], index_items: Sequence[str],
                   index_y: np.ndarray, candidates: np.ndarray, candidate_items: Sequence[str],
                   k: int = 50, temperature: float = 20.0) -> np.ndarray:
    """One row of :data:`FEATURES` per (q, c) from one tower's vectors: cosine, log P(path | query)
    over ``candidates`` (the training set's distinct paths, with the row's own added when new) and
    its log rank, and neighbour-query retrieval over the index's positive rows."""
    out = np.zeros((len(keys), len(FEATURES)))
    cos = (q * c).sum(1)
    out[:, 0] = cos
    known = set(candidate_items)
    for start in range(0, len(keys), CHUNK):
        rows = slice(start, start + CHUNK)
        s = (q[rows] @ candidates.T).astype(np.float64) / TAU
        own = cos[rows].astype(np.float64) / TAU
        new = np.array([item not in known for item in items[rows]])  # the row's path adds a candidate
        top = s.max(1)
        lse = top + np.log(np.exp(s - top[:, None]).sum(1) + new * np.exp(own - top))
        out[rows, 1] = own - lse
        out[rows, 2] = np.log(1 + (s > own[:, None] + 1e-4).sum(1))  # the own path among them: no tie
    pos = np.asarray(index_y) == 1
    out[:, 3:] = retrieval_features(q, keys, items, index_q[pos], [x for x, p in zip(index_keys, pos) if p],
                                    [x for x, p in zip(index_items, pos) if p], k, temperature)
    return out


def halves(keys: Sequence[str], seed: int) -> np.ndarray:
    """0/1 per row, one value per distinct key (a hash of key and seed): the two query halves."""
    return np.array([hashlib.sha256(f"{seed}\x00{key}".encode()).digest()[0] & 1 for key in keys])


class CrossFitTowers:
    """Two :class:`ContrastiveTower` s on the two query halves of a training set (see the module doc)."""

    def __init__(self, model_id: str, max_length: int = 64, seed: int = 0, k: int = 50, temperature: float = 20.0,
                 **tower):
        self.model_id, self.max_length, self.seed, self.tower = model_id, max_length, seed, tower
        self.k, self.temperature = k, temperature
        self.towers: list[ContrastiveTower] = []

    @staticmethod
    def texts(pairs: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
        return [f"query: {a}" for a, _ in pairs], [f"passage: {b}" for _, b in pairs]

    def fit(self, pairs: Sequence[tuple[str, str]], keys: Sequence[str], labels: np.ndarray) -> np.ndarray:
        """Train both towers; returns the training rows' own :data:`FEATURES` (each from the tower
        that did not see its query)."""
        labels = np.asarray(labels).astype(int)
        qt, ct = self.texts(pairs)
        half = halves(keys, self.seed)
        self.towers, self.log = [], []
        for h in (0, 1):
            tower = ContrastiveTower(self.model_id, self.max_length, seed=self.seed + h, **self.tower)
            sel = np.flatnonzero(half == h)
            self.log.append(tower.fit([qt[i] for i in sel], [ct[i] for i in sel], labels[sel]))
            self.towers.append(tower)
        self.index = {"keys": list(keys), "items": [b for _, b in pairs], "y": labels, "q": qt}
        self.candidate_items = list(dict.fromkeys(self.index["items"]))
        self._embed_index()
        out = np.zeros((len(pairs), len(FEATURES)))
        for h in (0, 1):
            rows = np.flatnonzero(half == h)
            out[rows] = self._features(1 - h, [pairs[i] for i in rows], [keys[i] for i in rows])
        return out

    def _embed_index(self) -> None:
        """Each tower's vectors of the training queries (one per distinct text) and candidate paths,
        kept with the model: a loaded model would otherwise run every training text through e5 again
        (QI's held-out prediction in notebook 05: 179 s)."""
        queries = list(dict.fromkeys(self.index["q"]))
        at = {q: i for i, q in enumerate(queries)}
        self.index["q_row"] = np.array([at[q] for q in self.index["q"]], dtype=np.int64)
        self.vectors = [(t.embed(queries), t.embed([f"passage: {b}" for b in self.candidate_items])) for t in self.towers]

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.towers and "vectors" not in state:  # pickled before the index vectors were kept
            self._embed_index()

    def _features(self, h: int, pairs: Sequence[tuple[str, str]], keys: Sequence[str]) -> np.ndarray:
        ix, tower, (queries, candidates) = self.index, self.towers[h], self.vectors[h]
        qt, ct = self.texts(pairs)
        return tower_features(tower.embed(qt), tower.embed(ct), keys, [b for _, b in pairs], queries[ix["q_row"]],
                              ix["keys"], ix["items"], ix["y"], candidates, self.candidate_items,
                              self.k, self.temperature)

    def transform(self, pairs: Sequence[tuple[str, str]], keys: Sequence[str]) -> np.ndarray:
        """Held-out rows: the two towers' :data:`FEATURES`, averaged."""
        return np.mean([self._features(h, pairs, keys) for h in range(len(self.towers))], axis=0)
