"""Validation splits: K folds grouped by normalised query, or one grouped train/dev split, and the
official language setting."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from mlsearch_lib.data.records import normalize_text

#: Languages of the official QC training set; the others are unseen at test time.
OFFICIAL_TRAIN_LANGUAGES = ["en", "es", "fr", "ja", "ko", "pt"]
#: The fold id of a row that only trains (split mode): it is never scored out of fold.
TRAIN_ONLY = -1


def query_groups(df: pd.DataFrame) -> np.ndarray:
    """One group id per distinct normalised query."""
    return pd.factorize(df["origin_query"].map(normalize_text))[0]


def grouped_folds(df: pd.DataFrame, k: int, seed: int) -> np.ndarray:
    """Fold id (0..k-1) per row; no normalised query in two folds, label shares kept."""
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    fold = np.full(len(df), -1, dtype=np.int64)
    for i, (_, val) in enumerate(splitter.split(np.zeros(len(df)), df["label"].to_numpy(), query_groups(df))):
        fold[val] = i
    return fold


def grouped_split(df: pd.DataFrame, dev_share: float, k: int, seed: int) -> np.ndarray:
    """Split mode: a query-grouped ``dev_share`` of the rows is cut into ``k`` query-grouped parts
    (ids 0..k-1, scored by one model trained on the rest); every other row is :data:`TRAIN_ONLY`.

    The parts are what folds are in ``folds`` mode for everything downstream (fold noise, a
    threshold tuned on the other parts), so the tables read the same in both modes.
    """
    dev = grouped_folds(df, max(2, round(1 / dev_share)), seed) == 0
    fold = np.full(len(df), TRAIN_ONLY, dtype=np.int64)
    rows = df[dev].reset_index(drop=True)
    fold[dev] = grouped_folds(rows, min(k, len(np.unique(query_groups(rows)))), seed)  # a small dev share: fewer parts
    return fold


def scored(folds: np.ndarray) -> np.ndarray:
    """Rows that get an out-of-fold p(yes): all in ``folds`` mode, the dev rows in split mode."""
    return np.asarray(folds) != TRAIN_ONLY


def trainable(df: pd.DataFrame, train_languages: list[str] | None) -> np.ndarray:
    """Rows a model may train on: all, or only ``train_languages`` (the official setting)."""
    if not train_languages:
        return np.ones(len(df), dtype=bool)
    return df["language"].isin(train_languages).to_numpy()
