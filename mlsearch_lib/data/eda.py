"""Descriptive statistics for notebook 00 (the seed's Table 1 and Figure 1 analogs)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlsearch_lib.config.paths import data_dir
from mlsearch_lib.data.records import ITEM_FIELD, category_depths, normalize_text, read_task_file, split_category

#: Languages of the official data (anchors.md); "vn" is how the official QI dev file spells vi.
OFFICIAL_LANGUAGES = ["ar", "de", "en", "es", "fr", "id", "it", "ja", "ko", "pl", "pt", "th", "vi"]
OFFICIAL_TRAIN = {"QC": {"en", "es", "fr", "ja", "ko", "pt"}, "QI": {"en", "es", "fr", "ja", "ko", "pt", "th"}}
#: Scripts written without spaces: length is counted in characters there.
UNSPACED = {"ja", "th", "zh"}


def discover_splits(task: str, train_file: str) -> dict[str, Path]:
    """The profile's training file plus any official dev/test file found beside it."""
    root = data_dir()
    found = {"train": root / train_file}
    for split in ("dev", "test"):
        path = root / task / f"{split}_{task}.txt"
        if path.is_file():
            found[split] = path
    return found


def load_splits(task: str, train_file: str) -> dict[str, pd.DataFrame]:
    return {split: read_task_file(path, task=task) for split, path in discover_splits(task, train_file).items()}


def rows_table(frames: dict[tuple[str, str], pd.DataFrame]) -> pd.DataFrame:
    """Rows per language (rows) × (task, split) (columns), with a total row."""
    counts = {key: df["language"].value_counts() for key, df in frames.items()}
    table = pd.DataFrame(counts).fillna(0).astype(int).sort_index()
    table.columns = [f"{task} {split}" for task, split in table.columns]
    table.loc["total"] = table.sum()
    return table


def label_ratio(df: pd.DataFrame) -> pd.DataFrame:
    """Rows and share of positives per language, plus the all-"yes" F1 each share implies."""
    g = df.groupby("language")["label"]
    out = pd.DataFrame({"rows": g.size(), "positive_rate": g.mean()})
    out.loc["all"] = [len(df), df["label"].mean()]
    out["rows"] = out["rows"].astype(int)
    out["all_yes_f1"] = 2 * out["positive_rate"] / (1 + out["positive_rate"])
    return out


def query_lengths(df: pd.DataFrame) -> pd.DataFrame:
    """Per row: language, length in characters and in tokens (characters for unspaced scripts)."""
    q = df["origin_query"].map(normalize_text)
    words = q.str.split().str.len()
    chars = q.str.replace(" ", "", regex=False).str.len()
    tokens = words.where(~df["language"].isin(UNSPACED), chars)
    return pd.DataFrame({"language": df["language"], "chars": q.str.len(), "tokens": tokens})


def depth_table(df: pd.DataFrame) -> pd.DataFrame:
    """Category depth counts per language, levels split correctly ("a, b & c" is one level)."""
    depth = category_depths(df[ITEM_FIELD["QC"]])
    naive = df[ITEM_FIELD["QC"]].str.count(",") + 1
    table = pd.crosstab(df["language"], depth)
    table.columns.name = "depth"
    table.loc["all"] = table.sum()
    table["naive_split_wrong_rows"] = list((naive != depth).groupby(df["language"]).sum().reindex(table.index[:-1])) + [
        int((naive != depth).sum())
    ]
    return table


def top_categories(df: pd.DataFrame, level: int = 0, n: int = 15) -> pd.DataFrame:
    """Most frequent categories at ``level`` (0 = top level) with their positive rate."""
    names = df[ITEM_FIELD["QC"]].map(lambda p: (split_category(p) + [""] * (level + 1))[level])
    g = df.assign(category=names).groupby("category")["label"]
    return (
        pd.DataFrame({"rows": g.size(), "positive_rate": g.mean()})
        .sort_values("rows", ascending=False)
        .head(n)
    )


def gaps(frames: dict[tuple[str, str], pd.DataFrame], standin_qi: bool) -> list[str]:
    """What the data at hand lacks compared with the official setting, as sentences."""
    notes = []
    for task in ("QC", "QI"):
        splits = sorted(s for t, s in frames if t == task)
        if not splits:
            notes.append(f"{task}: no file at all.")
            continue
        langs = set().union(*(set(df["language"]) for (t, _), df in frames.items() if t == task))
        missing = [lang for lang in OFFICIAL_LANGUAGES if lang not in langs and not (lang == "vi" and "vn" in langs)]
        if missing:
            notes.append(f"{task}: no rows in {', '.join(missing)} (official test languages).")
        if "dev" not in splits and "test" not in splits:
            notes.append(f"{task}: only a labelled training file; no official dev/test split, so every "
                         "figure here is cross-validated on query-grouped folds.")
        extra = sorted(langs - OFFICIAL_TRAIN[task])
        if extra and "train" in splits:
            notes.append(f"{task}: training rows in {', '.join(extra)}, languages the official training set "
                         "lacks — the official unseen-language setting must hold them out explicitly.")
    if standin_qi:
        notes.append("QI: the public file is a stand-in (Home Depot, English only), not competition data.")
    empty = sum(int(df["empty_title"].sum()) for (t, _), df in frames.items() if t == "QI")
    notes.append(f"QI: {empty} rows with an empty item_title (kept and flagged).")
    return notes
