from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mlsearch_lib.data.records import (
    DataFormatError,
    fingerprint,
    normalize_text,
    read_task_file,
    split_category,
    stratified_sample,
)

FIXTURES = Path(__file__).parent / "fixtures"
QC_ROW = {"id": 1, "language": "en", "origin_query": "car bumper", "category_path": "a,b", "label": 1}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_split_category_keeps_levels_that_contain_comma_space():
    assert split_category("automobiles, parts & accessories,exterior parts,bumpers") == [
        "automobiles, parts & accessories", "exterior parts", "bumpers"]
    assert split_category("toys & hobbies,puzzles & games,puzzles") == ["toys & hobbies", "puzzles & games", "puzzles"]
    assert split_category("home, garden & tools") == ["home, garden & tools"]


def test_normalize_text_nfkc_casefold_whitespace():
    assert normalize_text("  ＩＰＨＯＮＥ\tCase  ") == "iphone case"
    assert normalize_text("Straße") == "strasse"
    assert normalize_text("ｽﾏﾎ ケース") == "スマホ ケース"


def test_reads_qi_fixture_keeps_and_flags_empty_title():
    df = read_task_file(FIXTURES / "qi_multilingual.jsonl")
    assert df.attrs["task"] == "QI" and df.attrs["labelled"]
    assert len(df) == 12
    assert df["empty_title"].sum() == 1 and df.loc[df["empty_title"], "id"].item() == 7
    assert str(df["label"].dtype) == "int8" and str(df["id"].dtype) == "int64"
    assert set(df["language"]) >= {"ja", "th", "ar", "vi"}


def test_reads_unlabelled_and_csv(tmp_path):
    unl = write_jsonl(tmp_path / "test_QC.txt", [{k: v for k, v in QC_ROW.items() if k != "label"}])
    df = read_task_file(unl)
    assert not df.attrs["labelled"] and "label" not in df
    csv = tmp_path / "qc.csv"
    pd.DataFrame([QC_ROW, {**QC_ROW, "id": 2, "label": 0}]).to_csv(csv, index=False)
    df = read_task_file(csv)
    assert df["label"].tolist() == [1, 0] and df.attrs["task"] == "QC"


@pytest.mark.parametrize(
    "bad, line, field, why",
    [
        ('{"id": 2, "language": "en", "origin_query": "x", ', 2, None, "malformed JSON"),
        ({"id": 2, "language": "en", "category_path": "a", "label": 1}, 2, "origin_query", "missing"),
        ({**QC_ROW, "id": 2, "label": 2}, 2, "label", "must be 0 or 1"),
        ({**QC_ROW, "id": 2, "label": "yes"}, 2, "label", "must be 0 or 1"),
        ({**QC_ROW, "id": 2, "origin_query": "   "}, 2, "origin_query", "empty query"),
        ({**QC_ROW, "id": 1}, 2, "id", "duplicate id 1 (first on line 1)"),
        ({k: v for k, v in QC_ROW.items() if k != "label"} | {"id": 2}, 2, "label", "absent"),
    ],
)
def test_bad_input_names_file_line_and_field(tmp_path, bad, line, field, why):
    path = write_jsonl(tmp_path / "train_QC.txt", [QC_ROW, bad])
    with pytest.raises(DataFormatError) as info:
        read_task_file(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:{line}")
    assert why in msg
    if field:
        assert f"field '{field}'" in msg
    assert info.value.line == line and info.value.field == field


def test_csv_error_names_line(tmp_path):
    path = tmp_path / "qi.csv"
    path.write_text("id,language,origin_query,item_title,label\n1,en,q,t,1\n2,en,q,t,7\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"qi.csv:3: field 'label'"):
        read_task_file(path)


def test_stratified_sample_keeps_language_shares(synthetic_data):
    df = read_task_file(synthetic_data / "QC" / "train_QC.txt")
    small = stratified_sample(df, 150, seed=0)
    assert 140 <= len(small) <= 160
    share = df["language"].value_counts(normalize=True)
    small_share = small["language"].value_counts(normalize=True).reindex(share.index)
    assert (share - small_share).abs().max() < 0.05
    assert stratified_sample(df, None, 0) is df


def test_fingerprint_changes_with_content(tmp_path):
    a = write_jsonl(tmp_path / "a.txt", [QC_ROW])
    first = fingerprint([a])
    assert len(first) == 64 and fingerprint([a]) == first
    write_jsonl(a, [{**QC_ROW, "label": 0}])
    assert fingerprint([a]) != first
