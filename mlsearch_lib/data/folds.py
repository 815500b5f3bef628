"""Validation splits: K folds grouped by normalised query, and the official language setting."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from mlsearch_lib.data.records import normalize_text

#: Languages of the official QC training set; the others are unseen at test time.
OFFICIAL_TRAIN_LANGUAGES = ["en", "es", "fr", "ja", "ko", "pt"]


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


def trainable(df: pd.DataFrame, train_languages: list[str] | None) -> np.ndarray:
    """Rows a model may train on: all, or only ``train_languages`` (the official setting)."""
    if not train_languages:
        return np.ones(len(df), dtype=bool)
    return df["language"].isin(train_languages).to_numpy()
