"""Tags the prompt builder inserts: language tags (LT) checked by a detector, and category depths (HCT).

The row's given language code feeds ``[LANG=xx]``; lingua (offline, models inside the package)
checks it and fills a missing one. Short shopping queries are often brand names or model numbers
that no detector can place, so disagreement is reported, never silently "corrected".
"""

from __future__ import annotations

from functools import lru_cache

import pandas as pd

from mlsearch_lib.data.records import category_depths

#: Codes as the official files write them -> lingua's IsoCode639_1 names.
LINGUA_CODES = {"ar": "AR", "de": "DE", "en": "EN", "es": "ES", "fr": "FR", "id": "ID", "it": "IT",
                "ja": "JA", "ko": "KO", "pl": "PL", "pt": "PT", "th": "TH", "vi": "VI", "vn": "VI"}


@lru_cache(maxsize=1)
def _detector():
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    codes = [getattr(IsoCode639_1, c) for c in sorted(set(LINGUA_CODES.values()))]
    return LanguageDetectorBuilder.from_iso_codes_639_1(*codes).with_preloaded_language_models().build()


def detect_languages(texts: list[str]) -> list[str]:
    """ISO 639-1 code (lower case) per text among the competition's 13 languages; "" if unsure."""
    out = []
    for lang in _detector().detect_languages_in_parallel_of(texts):
        out.append(lang.iso_code_639_1.name.lower() if lang is not None else "")
    return out


def fill_languages(df: pd.DataFrame) -> pd.DataFrame:
    """``language_detected`` for every row, and ``language`` filled from it where it was empty."""
    detected = detect_languages(df["origin_query"].tolist())
    out = df.assign(language_detected=detected)
    missing = out["language"].str.strip() == ""
    out.loc[missing, "language"] = out.loc[missing, "language_detected"]
    return out


def language_agreement(df: pd.DataFrame) -> pd.DataFrame:
    """Per given language: share of queries the detector agrees with, is unsure about, or contradicts."""
    given = df["language"].replace({"vn": "vi"})
    det = df["language_detected"]
    frame = pd.DataFrame({"language": df["language"], "agree": det == given, "unsure": det == "",
                          "other": (det != given) & (det != "")})
    table = frame.groupby("language")[["agree", "unsure", "other"]].mean()
    table.insert(0, "rows", frame.groupby("language").size())
    top = df[frame["other"]].groupby("language")["language_detected"].agg(lambda s: s.value_counts().index[0])
    table["most frequent other"] = top.reindex(table.index).fillna("")
    return table


def depth_statistics(df: pd.DataFrame) -> pd.DataFrame:
    """Depth of the category path per language: mean, and share of each depth."""
    depth = category_depths(df["category_path"])
    table = pd.crosstab(df["language"], depth, normalize="index")
    table.columns = [f"depth {c}" for c in table.columns]
    table.insert(0, "mean depth", depth.groupby(df["language"]).mean())
    return table
