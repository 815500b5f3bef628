"""A small, learnable multilingual data set in the official schema, built from the fixtures.

Each hand-written (query, category) pair gives a positive row; the same query with another
pair's category gives a negative. Titles for QI are built from the category's leaf.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"


def qc_pairs() -> list[tuple[str, str, str]]:
    lines = (FIXTURES / "qc_pairs.tsv").read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t")) for line in lines if line.strip()]  # type: ignore[misc]


def write_dataset(root: Path, n_qc: int = 300, n_qi: int = 200, seed: int = 0) -> Path:
    """Write ``QC/train_QC.txt`` and ``QI/train_QI_homedepot.txt`` under ``root``."""
    rng = random.Random(seed)
    pairs = qc_pairs()
    categories = sorted({c for _, _, c in pairs})
    (root / "QC").mkdir(parents=True, exist_ok=True)
    (root / "QI").mkdir(parents=True, exist_ok=True)
    with (root / "QC" / "train_QC.txt").open("w", encoding="utf-8") as fh:
        for i in range(1, n_qc + 1):
            lang, query, cat = rng.choice(pairs)
            query = f"{query} {rng.choice(['', 'new', '2024', 'x2', 'pro'])}".strip()
            label = int(rng.random() < 0.68)
            if not label:
                cat = rng.choice([c for c in categories if c != cat])
            fh.write(json.dumps({"id": i, "language": lang, "origin_query": query, "category_path": cat, "label": label}, ensure_ascii=False) + "\n")
    with (root / "QI" / "train_QI_homedepot.txt").open("w", encoding="utf-8") as fh:
        for i in range(1, n_qi + 1):
            lang, query, cat = rng.choice(pairs)
            label = int(rng.random() < 0.65)
            src = cat if label else rng.choice([c for c in categories if c != cat])
            leaf = src.split(",")[-1]
            title = "" if i % 50 == 0 else f"{leaf} {rng.choice(['premium', 'black', '2 pcs', 'for men'])} {rng.randint(1, 99)}"
            fh.write(json.dumps({"id": i, "language": lang, "origin_query": query, "item_title": title, "label": label}, ensure_ascii=False) + "\n")
    return root
