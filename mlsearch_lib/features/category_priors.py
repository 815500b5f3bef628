"""QC's item side is a closed set (3,905 English paths, 35 top levels, median 2 rows a path), so a
row's label is largely a prior of its path and of paths like it, and of which paths queries like
it were judged on. Two blocks of features read that, both from a training set only:

- **Hierarchical priors** (:class:`PathPriors`): the share of "yes" of the row's path, shrunk
  toward its level-2 prefix, that toward its top level and that toward the global share
  (empirical Bayes with a prior of ``strength`` rows at each step), a per-language × top-level
  share shrunk toward the top level's, and how many rows each rests on.
- **Retrieval** (:func:`retrieval_features`): over the training set's *positive* rows, the k
  queries nearest to the row's query (frozen e5 cosine, never its own query) vote for their
  paths with softmax weights: P(path | query) at leaf, level 2 and top level (a back-off), and the
  rank of the row's path among the paths so retrieved.

Rows of the training set itself get their features with their own query left out (priors: its
rows' counts subtracted; retrieval: its neighbours masked), so a model learns from numbers made
the way a held-out row's are. For QI the "path" is the title and its levels are its comma parts,
which carry little; the book measures both tasks.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd

PRIOR_FEATURES = ("prior_leaf", "prior_level2", "prior_top", "prior_language_top", "rows_leaf", "rows_level2")
RETRIEVAL_FEATURES = ("p_leaf", "p_level2", "p_top", "log_rank")
LEVELS = ("leaf", "level2", "top")
_LANG_TAG = re.compile(r"^\[LANG=([^\]]+)\] ")
#: rows scored against the positive index at once
CHUNK = 2048


def levels(path: str) -> tuple[str, str, str]:
    """(leaf, level-2 prefix, top level) of a comma-separated category path."""
    parts = [p.strip() for p in str(path).split(",")]
    return ",".join(parts), ",".join(parts[:2]), parts[0]


def language_of(query_text: str) -> str:
    """The language a pair's query text is tagged with (``[LANG=xx] ...``, the LT tag), or ``""``."""
    m = _LANG_TAG.match(query_text)
    return m.group(1) if m else ""


def plain_query(query_text: str) -> str:
    """The query as its user typed it: without the LT tag."""
    return _LANG_TAG.sub("", query_text, count=1)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


class PathPriors:
    """Shrunk shares of "yes" per path level and per language × top level, from one training set."""

    def __init__(self, strength: float = 3.0):
        self.strength = strength

    def fit(self, keys: Sequence[str], paths: Sequence[str], languages: Sequence[str], y: np.ndarray) -> "PathPriors":
        frame = self._frame(keys, paths, languages)
        frame["y"] = np.asarray(y, dtype=np.float64)
        self.global_share = float(frame["y"].mean()) if len(frame) else 0.5
        self.sums = {col: frame.groupby(col)["y"].agg(["sum", "count"]) for col in (*LEVELS, "language_top")}
        # per (query, level value): what a training row's own query contributed, to be left out
        self.own = {col: frame.groupby(["key", col])["y"].agg(["sum", "count"]) for col in (*LEVELS, "language_top")}
        return self

    @staticmethod
    def _frame(keys: Sequence[str], paths: Sequence[str], languages: Sequence[str]) -> pd.DataFrame:
        lv = np.array([levels(p) for p in paths], dtype=object).reshape(-1, 3)
        frame = pd.DataFrame({"key": list(keys), "leaf": lv[:, 0], "level2": lv[:, 1], "top": lv[:, 2]})
        frame["language_top"] = [f"{lang}|{top}" for lang, top in zip(languages, frame["top"])]
        return frame

    def _counts(self, frame: pd.DataFrame, col: str, leave_own_out: bool) -> tuple[np.ndarray, np.ndarray]:
        table = self.sums[col].reindex(frame[col])
        s, n = table["sum"].fillna(0).to_numpy(), table["count"].fillna(0).to_numpy()
        if leave_own_out:
            own = self.own[col].reindex(pd.MultiIndex.from_arrays([frame["key"], frame[col]]))
            s, n = s - own["sum"].fillna(0).to_numpy(), n - own["count"].fillna(0).to_numpy()
        return s, n

    def transform(self, keys: Sequence[str], paths: Sequence[str], languages: Sequence[str],
                  leave_own_out: bool = False) -> np.ndarray:
        """One row of :data:`PRIOR_FEATURES` per row: shares as logits, row counts as log(1 + n)."""
        frame = self._frame(keys, paths, languages)
        a = self.strength
        shrunk = {}
        parent = np.full(len(frame), self.global_share)
        counts = {}
        for col in ("top", "level2", "leaf"):  # each level shrunk toward the one above it
            s, n = self._counts(frame, col, leave_own_out)
            shrunk[col] = parent = (s + a * parent) / (n + a)
            counts[col] = n
        s, n = self._counts(frame, "language_top", leave_own_out)
        language_top = (s + a * shrunk["top"]) / (n + a)
        return np.column_stack([_logit(shrunk["leaf"]), _logit(shrunk["level2"]), _logit(shrunk["top"]),
                                _logit(language_top), np.log1p(counts["leaf"]), np.log1p(counts["level2"])])


def retrieval_features(q: np.ndarray, keys: Sequence[str], paths: Sequence[str], index_q: np.ndarray,
                       index_keys: Sequence[str], index_paths: Sequence[str], k: int = 50,
                       temperature: float = 20.0) -> np.ndarray:
    """One row of :data:`RETRIEVAL_FEATURES` per row, from the ``k`` nearest indexed (positive)
    queries that are not the row's own. Vectors are L2-normalised; no usable neighbour gives zeros
    and the worst rank."""
    out = np.zeros((len(keys), len(RETRIEVAL_FEATURES)))
    out[:, 3] = np.log(k + 1)
    if len(index_keys) == 0 or len(keys) == 0:
        return out
    key_ids = {key: i for i, key in enumerate(dict.fromkeys([*index_keys, *keys]))}
    index_kid, row_kid = np.array([key_ids[x] for x in index_keys]), np.array([key_ids[x] for x in keys])
    codes = []  # per level: the index's and the rows' values as shared integer codes
    for j in range(3):
        values = {v: i for i, v in enumerate(dict.fromkeys([levels(p)[j] for p in [*index_paths, *paths]]))}
        codes.append((np.array([values[levels(p)[j]] for p in index_paths]),
                      np.array([values[levels(p)[j]] for p in paths])))
    depth = min(k, len(index_keys))
    for start in range(0, len(keys), CHUNK):
        rows = slice(start, start + CHUNK)
        sims = q[rows] @ index_q.T
        sims[row_kid[rows, None] == index_kid[None, :]] = -np.inf
        top = np.argpartition(-sims, depth - 1, axis=1)[:, :depth]
        s = np.take_along_axis(sims, top, axis=1).astype(np.float64)
        nearest = s.max(1, keepdims=True)
        usable = np.isfinite(nearest[:, 0])
        nearest[~usable] = 0.0
        w = np.exp(temperature * (s - nearest))
        total = w.sum(1, keepdims=True)
        w = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
        for j in range(3):
            index_code, row_code = codes[j]
            out[rows, j] = (w * (index_code[top] == row_code[rows, None])).sum(1)
        # rank of the row's leaf among the retrieved leaves, by their summed weight (1 = first)
        leaf_code = codes[0][0][top]
        mine = out[rows, 0]
        for r in range(leaf_code.shape[0]):
            if not usable[r] or mine[r] == 0:
                continue
            scores = np.bincount(np.unique(leaf_code[r], return_inverse=True)[1], weights=w[r])
            out[start + r, 3] = np.log(1 + (scores > mine[r] + 1e-12).sum() + 1)
    return out
