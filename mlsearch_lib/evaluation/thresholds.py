"""F1-optimal decision thresholds tuned on out-of-fold p(yes).

Per-language thresholds are shrunk toward the global one by the language's row count
(``w = n / (n + shrinkage)``), so a language with few rows cannot overfit its own; a language
never seen in tuning gets the global threshold.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_curve


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """The threshold maximising F1 of the positive class, and that F1 (rows without a p(yes) ignored)."""
    p = np.asarray(p, dtype=float)
    keep = np.isfinite(p)
    precision, recall, thr = precision_recall_curve(np.asarray(y).astype(int)[keep], p[keep])
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1[:-1])) if len(thr) else 0
    return (float(thr[best]) if len(thr) else 0.5), float(f1[best])


class Thresholds:
    """A global threshold and per-language ones shrunk toward it."""

    def __init__(self, global_: float, per_language: dict[str, float] | None = None):
        self.global_ = float(global_)
        self.per_language = dict(per_language or {})

    @classmethod
    def tune(cls, languages: np.ndarray, y: np.ndarray, p: np.ndarray, shrinkage: float) -> "Thresholds":
        keep = np.isfinite(np.asarray(p, dtype=float))  # tuned on the rows that have a p(yes)
        languages, y, p = np.asarray(languages)[keep], np.asarray(y)[keep], np.asarray(p, dtype=float)[keep]
        g, _ = best_f1_threshold(y, p)
        per = {}
        for lang in sorted(set(languages)):
            m = languages == lang
            if len(np.unique(y[m])) < 2:
                continue
            own, _ = best_f1_threshold(y[m], p[m])
            w = m.sum() / (m.sum() + shrinkage)
            per[str(lang)] = float(w * own + (1 - w) * g)
        return cls(g, per)

    def for_rows(self, languages: np.ndarray) -> np.ndarray:
        return np.array([self.per_language.get(str(lang), self.global_) for lang in languages], dtype=float)

    def to_dict(self) -> dict:
        return {"global": self.global_, "per_language": self.per_language}

    @classmethod
    def from_dict(cls, d: dict) -> "Thresholds":
        return cls(d["global"], d.get("per_language"))
