from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlsearch_lib.data.records import read_task_file
from mlsearch_lib.features.tagging import depth_statistics, detect_languages, fill_languages, language_agreement

FIXTURES = Path(__file__).parent / "fixtures"


def test_detector_places_clear_queries_in_many_scripts():
    qi = read_task_file(FIXTURES / "qi_multilingual.jsonl")
    titles = qi[~qi["empty_title"]]
    detected = detect_languages(titles["item_title"].tolist())
    agree = sum(d == g for d, g in zip(detected, titles["language"]))
    assert agree >= len(titles) - 2, list(zip(detected, titles["language"]))


def test_missing_language_is_filled_and_agreement_reported():
    df = pd.DataFrame({"language": ["", "fr", "ja"], "origin_query": ["zapatillas de running para hombre", "robe de soirée longue", "bmw"]})
    out = fill_languages(df)
    assert out.loc[0, "language"] == "es" and out.loc[1, "language"] == "fr" and out.loc[2, "language"] == "ja"
    table = language_agreement(out)
    assert table.loc["fr", "agree"] == 1.0 and table.loc["ja", "agree"] == 0.0


def test_depth_statistics_use_the_correct_split():
    df = pd.DataFrame({"language": ["en", "en"], "category_path": ["automobiles, parts & accessories,exterior parts,bumpers", "a,b"]})
    table = depth_statistics(df)
    assert table.loc["en", "mean depth"] == 2.5 and table.loc["en", "depth 3"] == 0.5
