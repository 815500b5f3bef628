"""World knowledge from a small causal LM as one number per pair: how much more likely the query
is after its category path than after nothing, the pointwise mutual information

    PMI(q, path) = log p(q | "Product category: path\\nSearch query:") - log p(q | "Search query:").

Zero-shot p(yes) from a 270M base model is near chance on QC, but a base model does know which
words follow "Product category: toys & hobbies,puzzles" — a likelihood, not an instruction. No
label is read, so the feature is the same in and out of fold and is computed once per pair.

In theory PMI is symmetric (= log p(path | q) - log p(path)); the query side is the one scored
because every scored token costs a full-vocabulary projection (262k x 640 for gemma-3-270m, more
than the decoder's own work per token), and a query is ~5 tokens where a path is ~15. Values are
remembered on disk by (model, version, context, query), saved every :data:`CHUNK` pairs: a killed
run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlsearch_lib.config.paths import build_dir, ensure
from mlsearch_lib.config.progress import tqdm
from mlsearch_lib.features.category_priors import plain_query
from mlsearch_lib.features.embeddings import length_batches, memo_on_disk

#: part of every cached value's key: bumped when the way a value is computed changes
PMI_VERSION = "query-given-path-v1"
#: the LM of backbone ``hybrid_pmi``: the packaged base model (offline-models.md)
PMI_MODEL = "google/gemma-3-270m"
CONTEXT = "Product category: {item}\nSearch query:"
NULL_CONTEXT = "Search query:"
FEATURES = ("pmi", "pmi_per_token", "logp_query")
CHUNK = 512


class QueryLogProb:
    """log p(query tokens | context) under a causal LM, and the query's token count, per pair."""

    def __init__(self, model_id: str, batch_size: int = 16, cache_dir: Path | None = None):
        self.model_id, self.batch_size = model_id, batch_size
        self.cache_dir = ensure(cache_dir or build_dir() / "pmi" / model_id.replace("/", "--"))
        self._model = self._tok = None

    def _load(self) -> None:
        if self._model is None:
            from transformers import AutoModelForCausalLM

            from mlsearch_lib.models.offline import load_tokenizer, resolve_model

            path = resolve_model(self.model_id)
            self._tok = load_tokenizer(path)
            self._model = AutoModelForCausalLM.from_pretrained(path).eval()

    def _score(self, contexts: Sequence[str], queries: Sequence[str]) -> np.ndarray:
        """(n, 2): summed log-probability of each query's tokens after its context, and their count.

        Right-padded batches of near-equal length; the vocabulary projection runs only at the
        positions that predict a query token.
        """
        import torch

        from mlsearch_lib.models.answer_head import run_decoder

        self._load()
        ctx = self._tok(list(contexts)).input_ids  # with the model's BOS
        qry = self._tok([" " + q for q in queries], add_special_tokens=False).input_ids
        out = np.zeros((len(ctx), 2), np.float64)
        head = self._model.get_output_embeddings()
        softcap = getattr(self._model.config, "final_logit_softcapping", None)
        pad = self._tok.pad_token_id if self._tok.pad_token_id is not None else 0
        batches = length_batches([len(c) + len(q) for c, q in zip(ctx, qry)], self.batch_size, slack=0.2)
        with torch.inference_mode():
            for sel in tqdm(batches, desc="PMI scoring", leave=False, unit="batch"):
                seqs = [ctx[i] + qry[i] for i in sel]
                width = max(map(len, seqs))
                ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
                mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
                hidden, _ = run_decoder(self._model, input_ids=ids, attention_mask=mask)
                # position len(ctx) - 1 + j predicts the query's token j
                rows = [r for r, i in enumerate(sel) for _ in qry[i]]
                cols = [len(ctx[i]) - 1 + j for i in sel for j in range(len(qry[i]))]
                targets = [t for i in sel for t in qry[i]]
                logits = head(hidden[rows, cols]).float()
                if softcap:
                    logits = torch.tanh(logits / softcap) * softcap
                lp = torch.log_softmax(logits, dim=-1)[torch.arange(len(targets)), targets].double().numpy()
                out[sel, 0] = np.bincount(rows, weights=lp, minlength=len(sel))
                out[sel, 1] = [len(qry[i]) for i in sel]
        return out

    def _key(self, context: str, query: str) -> str:
        return hashlib.sha256(f"{PMI_VERSION}\x00{context}\x00{query}".encode()).hexdigest()

    def logprobs(self, contexts: Sequence[str], queries: Sequence[str]) -> np.ndarray:
        """:meth:`_score` in input order, each distinct (context, query) computed once, ever."""
        keys = [self._key(c, q) for c, q in zip(contexts, queries)]
        return memo_on_disk(self.cache_dir / "store.npz", keys,
                            lambda missing: self._score([contexts[i] for i in missing], [queries[i] for i in missing]),
                            chunk=CHUNK).astype(np.float64).reshape(len(keys), 2)

    def __getstate__(self) -> dict:  # pickled without the loaded model
        return {**self.__dict__, "_model": None, "_tok": None}


def pmi_features(scorer: QueryLogProb, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    """One row of :data:`FEATURES` per (query text, item text) pair."""
    queries = [plain_query(a) for a, _ in pairs]
    cond = scorer.logprobs([CONTEXT.format(item=b) for _, b in pairs], queries)
    null = scorer.logprobs([NULL_CONTEXT] * len(pairs), queries)
    pmi = cond[:, 0] - null[:, 0]
    return np.column_stack([pmi, pmi / np.maximum(cond[:, 1], 1), null[:, 0]])
