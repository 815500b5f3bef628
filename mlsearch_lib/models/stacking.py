"""The submitted system: the main model and the profile's ``stack_with`` model read together.

Notebook 04 shows that the cross-encoder knows things the neighbour-label regression does not,
and the other way round; a logistic regression over the two models' logits, fit on their
out-of-fold p(yes), makes one predictor of them. Here that regression is fit (for the
out-of-fold table and for the final model), and the stack is saved as one model directory
(``parts/<kind>/`` plus its weights) that the prediction CLI loads like any other.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression

from mlsearch_lib.models.relevance import LABELS, RelevanceModel

KIND = "stacked"


def label(parts: list[str]) -> str:
    """How tables name a stack: its parts' labels, joined."""
    return " + ".join(LABELS[k] for k in parts) + " (stacked)"


def logits(parts: list[np.ndarray]) -> np.ndarray:
    """One column per model: its p(yes) as a logit (clipped away from 0 and 1)."""
    return np.column_stack([logit(np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)) for p in parts])


def fit_stacker(parts: list[np.ndarray], y: np.ndarray) -> LogisticRegression:
    return LogisticRegression().fit(logits(parts), np.asarray(y).astype(int))


def stacked_oof(y: np.ndarray, folds: np.ndarray, parts: dict[str, np.ndarray]) -> tuple[np.ndarray, pd.DataFrame]:
    """Out-of-fold p(yes) of the stack: fold ``i`` is scored by a stacker fit on the other folds.

    The parts' scores of those folds came from models that saw fold ``i``, but a stacker with a
    few weights learns next to nothing from that. Also returns each fold's weights, one column
    per model.
    """
    x = list(parts.values())
    out, weights = np.empty(len(y)), {}
    for i in np.unique(folds):
        fit = fit_stacker([p[folds != i] for p in x], y[folds != i])
        out[folds == i] = fit.predict_proba(logits([p[folds == i] for p in x]))[:, 1]
        weights[f"fold {i}"] = dict(zip(parts, fit.coef_[0]))
    return out, pd.DataFrame(weights).T


def save_stack(directory: Path, task: str, kinds: list[str], stacker: LogisticRegression) -> Path:
    """Writes the stack's description beside its parts, already saved under ``directory/parts/<kind>``."""
    missing = [k for k in kinds if not (Path(directory) / "parts" / k / "mlsearch_model.json").is_file()]
    if missing:
        raise FileNotFoundError(f"{directory}: no saved part for {', '.join(missing)}")
    meta = {"kind": KIND, "task": task, "parts": kinds, "coef": stacker.coef_[0].tolist(),
            "intercept": float(stacker.intercept_[0])}
    (Path(directory) / "mlsearch_model.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return Path(directory)


class StackedModel:
    """Loaded stack: each part's p(yes), as logits, through the stacker's weights."""

    kind = KIND

    def __init__(self, task: str, parts: dict[str, RelevanceModel], coef: list[float], intercept: float):
        self.task, self.parts = task, parts
        self.coef, self.intercept = np.asarray(coef, dtype=float), float(intercept)

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        return expit(logits([m.predict_proba(df) for m in self.parts.values()]) @ self.coef + self.intercept)

    @classmethod
    def load(cls, directory: Path, trust: bool = False) -> "StackedModel":
        meta = json.loads((Path(directory) / "mlsearch_model.json").read_text(encoding="utf-8"))
        parts = {k: RelevanceModel.load(Path(directory) / "parts" / k, trust) for k in meta["parts"]}
        return cls(meta["task"], parts, meta["coef"], meta["intercept"])
