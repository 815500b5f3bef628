"""Open any saved model directory: one :class:`~mlsearch_lib.models.relevance.RelevanceModel`,
or a stack of them (:class:`~mlsearch_lib.models.stacking.StackedModel`). It sits above both,
so the interface and the stack never import each other."""

from __future__ import annotations

import json
from pathlib import Path

from mlsearch_lib.models.relevance import RelevanceModel
from mlsearch_lib.models.stacking import KIND, StackedModel


def load_model(directory: Path, trust: bool = False) -> RelevanceModel | StackedModel:
    """The model saved in ``directory``; both kinds have ``task`` and ``predict_proba(df)``
    (``trust``: see :meth:`RelevanceModel.load <mlsearch_lib.models.relevance.RelevanceModel.load>`)."""
    meta_path = Path(directory) / "mlsearch_model.json"
    try:
        stacked = meta_path.is_file() and json.loads(meta_path.read_text(encoding="utf-8")).get("kind") == KIND
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"{meta_path}: not a readable model description ({exc})") from None
    return StackedModel.load(directory, trust) if stacked else RelevanceModel.load(directory, trust)
