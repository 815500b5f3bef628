"""How well SIT tags: precision, recall and F1 per attribute against hand-labelled titles
(``tests/fixtures/sit_labelled.jsonl``: only what the title states, canonical values, no inference)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from mlsearch_lib.config.paths import PROJECT_ROOT
from mlsearch_lib.features.sit import KEYS, tag_title

#: The hand-labelled evaluation set (present in a source checkout, not in an installed wheel).
FIXTURE = PROJECT_ROOT / "tests" / "fixtures" / "sit_labelled.jsonl"


def load_fixture(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Rows ``{id, language, item_title, gold}`` of a hand-labelled JSON-lines file (default :data:`FIXTURE`)."""
    path = Path(path) if path is not None else FIXTURE
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _rows(rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> list[Mapping[str, Any]]:
    return rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)


def disagreements(rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Per row and attribute where tagger and gold differ: the values ``missed`` and the ``extra`` ones."""
    out = []
    for row in _rows(rows):
        pred, gold = tag_title(row["item_title"], row["language"]), row.get("gold") or {}
        for key in KEYS:
            p, g = set(pred.get(key, [])), set(gold.get(key, []))
            if p != g:
                out.append({"id": row.get("id"), "language": row["language"], "attribute": key,
                            "missed": sorted(g - p), "extra": sorted(p - g), "item_title": row["item_title"]})
    return pd.DataFrame(out, columns=["id", "language", "attribute", "missed", "extra", "item_title"])


def evaluate(rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Micro precision, recall and F1 per attribute and overall (exact match of canonical values).

    ``support`` is the number of gold values, ``predicted`` the number of tagged ones; a ratio
    with a zero denominator is NaN.
    """
    counts = {k: [0, 0, 0] for k in KEYS}  # tp, fp, fn
    for row in _rows(rows):
        pred, gold = tag_title(row["item_title"], row["language"]), row.get("gold") or {}
        unknown = set(gold) - set(KEYS)
        if unknown:
            raise KeyError(f"row {row.get('id')}: unknown attribute(s) {sorted(unknown)}")
        for key in KEYS:
            p, g = set(pred.get(key, [])), set(gold.get(key, []))
            counts[key][0] += len(p & g)
            counts[key][1] += len(p - g)
            counts[key][2] += len(g - p)
    table = pd.DataFrame(counts, index=["tp", "fp", "fn"]).T
    table.loc["overall"] = table.sum()
    tp, fp, fn = (table[c].astype(float) for c in ("tp", "fp", "fn"))
    precision = (tp / (tp + fp)).where(tp + fp > 0)
    recall = (tp / (tp + fn)).where(tp + fn > 0)
    table["precision"], table["recall"] = precision, recall
    table["f1"] = (2 * precision * recall / (precision + recall)).where(precision + recall > 0)
    table["support"], table["predicted"] = table["tp"] + table["fn"], table["tp"] + table["fp"]
    table.index.name = "attribute"
    return table[["precision", "recall", "f1", "support", "predicted", "tp", "fp", "fn"]]

