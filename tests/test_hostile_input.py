"""Hostile but fair input: every case a located error (file, line, field) or a documented handling,
and nothing already computed lost. One table per area; each case failed on the code before it."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mlsearch_lib.__main__ import evaluate_files, main, predict_file
from mlsearch_lib.config.paths import write_atomically
from mlsearch_lib.config.profiles import ProfileError, load_profile
from mlsearch_lib.data.records import DataFormatError, read_task_file
from mlsearch_lib.features.generation import CacheError, GenerationCache, read_prompts
from mlsearch_lib.models.relevance import RelevanceModel, UntrustedModel

ROW = {"id": 1, "language": "en", "origin_query": "lego", "category_path": "toys,blocks"}


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# -- the loader: identity fields are never coerced ----------------------------------------------------------
LOADER = [
    ("null id", [{**ROW, "id": None}], r":1: field 'id': not a valid id: None"),
    ("float id beside an int one", [ROW, {**ROW, "id": 1.0}], r":2: field 'id': not a valid id: 1.0"),
    ("fractional id", [{**ROW, "id": 1.9}], r":1: field 'id': not a valid id: 1.9"),
    ("a list as id", [{**ROW, "id": [1]}], r":1: field 'id': not a valid id: \[1\]"),
    ("null language", [{**ROW, "language": None}], r":1: field 'language': expected a language code"),
    ("numeric language", [{**ROW, "language": 123}], r":1: field 'language': expected a language code"),
    ("numeric query", [{**ROW, "origin_query": 42}], r":1: field 'origin_query': expected text, got 42"),
]


@pytest.mark.parametrize("case, rows, message", LOADER, ids=[c[0] for c in LOADER])
def test_the_loader_refuses_identity_fields_it_would_have_coerced(tmp_path, case, rows, message):
    path = _jsonl(tmp_path / "in.txt", rows)
    with pytest.raises(DataFormatError, match=message):
        read_task_file(path)


def test_the_loader_reads_byte_order_marks_and_locates_what_it_cannot_read(tmp_path):
    jsonl = tmp_path / "bom.txt"
    jsonl.write_bytes(b"\xef\xbb\xbf" + json.dumps(ROW).encode() + b"\n")
    assert read_task_file(jsonl)["id"].tolist() == [1]  # utf-8-sig, not "malformed JSON"
    csv = tmp_path / "bom.csv"
    csv.write_bytes(b"\xef\xbb\xbfid,language,origin_query,category_path\n1,en,lego,\"toys,blocks\"\n")
    assert read_task_file(csv)["id"].tolist() == [1]  # not "field 'id': missing"
    extra = tmp_path / "extra.csv"
    extra.write_text("id,language,origin_query,category_path\n1,en,lego,toys,surplus\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"extra.csv:2: 5 cells, but the header has 4 columns"):
        read_task_file(extra)
    latin = tmp_path / "latin.txt"
    latin.write_bytes(json.dumps(ROW).encode() + b"\n" + json.dumps({**ROW, "id": 2}).encode()[:-2] + b' "caf\xe9"}\n')
    with pytest.raises(DataFormatError, match=r"latin.txt:2: not UTF-8 \(byte 0xe9"):
        read_task_file(latin)
    with pytest.raises(DataFormatError, match=r": a directory, not a file"):
        read_task_file(tmp_path)


# -- evaluate: as strict as the official checker ----------------------------------------------------------
EVALUATE = [
    ("ids that only cast to gold ids", [{"id": 1.9, "prediction": 1}], r":1: field 'id': not an id"),
    ("a boolean id", [{"id": True, "prediction": 1}], r":1: field 'id': not an id"),
    ("an id not in gold", "EXTRA", r":3: field 'id': 1 id\(s\) not in"),
    ("prediction 2", [{"id": 1, "prediction": 2}], r":1: field 'prediction': must be 0 or 1, got 2"),
    ("prediction 0.7", [{"id": 1, "prediction": 0.7}], r":1: field 'prediction': must be 0 or 1"),
    ("prediction -1", [{"id": 1, "prediction": -1}], r":1: field 'prediction': must be 0 or 1"),
    ("p_yes 1.7", [{"id": 1, "prediction": 1, "p_yes": 1.7}], r":1: field 'p_yes': must be a number in \[0, 1\]"),
    ("p_yes -3", [{"id": 1, "prediction": 1, "p_yes": -3}], r":1: field 'p_yes': must be a number in \[0, 1\]"),
    ("p_yes null", [{"id": 1, "prediction": 1, "p_yes": None}], r":1: field 'p_yes': must be a number"),
    ("p_yes NaN", ['{"id": 1, "prediction": 1, "p_yes": NaN}'], r":1: field 'p_yes': must be a number"),
    ("an empty file", [], r"pred.txt:0: no predictions"),
    ("a duplicate id", [{"id": 1, "prediction": 1}, {"id": 1, "prediction": 0}], r":2: field 'id': duplicate id 1"),
    ("a missing gold id", [{"id": 1, "prediction": 1}], r"field 'id': 1 gold id\(s\) have no prediction"),
]


@pytest.mark.parametrize("case, rows, message", EVALUATE, ids=[c[0] for c in EVALUATE])
def test_evaluate_takes_exactly_one_0_1_prediction_per_gold_id(tmp_path, case, rows, message):
    gold = _jsonl(tmp_path / "gold.txt", [{**ROW, "label": 1}, {**ROW, "id": 2, "label": 0}])
    if rows == "EXTRA":
        rows = [{"id": 1, "prediction": 1}, {"id": 2, "prediction": 0}, {"id": 3, "prediction": 1}]
    pred = _jsonl(tmp_path / "pred.txt", rows)
    with pytest.raises(DataFormatError, match=message):
        evaluate_files(pred, gold)


def test_evaluate_refuses_a_directory_and_scores_a_clean_file(tmp_path):
    gold = _jsonl(tmp_path / "gold.txt", [{**ROW, "label": 1}, {**ROW, "id": 2, "label": 0}])
    with pytest.raises(DataFormatError, match="a directory, not a file"):
        evaluate_files(tmp_path, gold)
    pred = _jsonl(tmp_path / "pred.txt", [{"id": 2, "prediction": 0, "p_yes": 0.2}, {"id": 1, "prediction": 1, "p_yes": 0.9}])
    assert evaluate_files(pred, gold).loc["all", "f1"] == 1.0


# -- profiles: ranges and names checked at load time ------------------------------------------------------
PROFILES = [
    ({"validation": {"folds": -3}}, "validation.folds"), ({"validation": {"folds": 0}}, "validation.folds"),
    ({"validation": {"folds": 1}}, "validation.folds"), ({"llm": {"lr": -1e-4}}, "llm.lr"),
    ({"encoder": {"batch_size": 0}}, "encoder.batch_size"), ({"llm": {"epochs": -1}}, "llm.epochs"),
    ({"data": {"max_rows": {"QC": -5}}}, "data.max_rows.QC"), ({"generation": {"temperature": -1}}, "generation.temperature"),
    ({"generation": {"top_p": 3}}, "generation.top_p"), ({"refine": {"hi": 0.2, "lo": 0.6}}, "hi \\(0.2\\) must not be below lo"),
    ({"name": "../escape"}, "'name'"), ({"name": "<b>x</b>"}, "'name'"),
]


@pytest.mark.parametrize("overrides, where", PROFILES, ids=[json.dumps(o) for o, _ in PROFILES])
def test_a_profile_with_nonsense_is_refused_when_it_loads(overrides, where):
    with pytest.raises(ProfileError, match=where):
        load_profile("tiny", overrides)


# -- predict and model directories --------------------------------------------------------------------------
@pytest.fixture()
def model_dir(isolated_outputs, synthetic_data):
    """A tfidf QC model saved in this checkout's build dir, as notebook 05 saves one."""
    df = read_task_file(synthetic_data / "QC" / "train_QC.txt")
    model = RelevanceModel("tfidf", "QC", load_profile("tiny"))
    model.fit(df)
    directory = model.save(isolated_outputs / "build" / "models" / "QC")
    (directory / "thresholds.json").write_text(json.dumps({"global": 0.5, "per_language": {}}))
    return directory


def test_predict_refuses_what_would_lose_or_invent_results(model_dir, synthetic_data, tmp_path, capsys):
    src = synthetic_data / "QC" / "train_QC.txt"
    copy = tmp_path / "in.txt"
    copy.write_bytes(src.read_bytes())
    base = ["predict", "--task", "QC", "--model", str(model_dir), "--input", str(copy)]
    assert main(base + ["--output", str(copy), "--overwrite"]) == 2  # the input itself, even with --overwrite
    assert "is the input file" in capsys.readouterr().err and copy.read_bytes() == src.read_bytes()
    for bad in ("0", "1", "1.5", "-0.2"):
        assert main(base + ["--output", str(tmp_path / "p.txt"), "--threshold", bad]) == 2
        assert "--threshold must be in (0, 1)" in capsys.readouterr().err
    (model_dir / "thresholds.json").unlink()
    assert main(base + ["--output", str(tmp_path / "p.txt")]) == 2  # never a silent 0.5
    assert "has no tuned thresholds" in capsys.readouterr().err and not (tmp_path / "p.txt").exists()
    assert main(base + ["--output", str(tmp_path / "p.txt"), "--threshold", "0.5"]) == 0
    (model_dir / "thresholds.json").write_text("{not json")
    with pytest.raises(ValueError, match="thresholds.json: not a thresholds file"):
        predict_file("QC", model_dir, copy, tmp_path / "q.txt")


def test_pickled_weights_load_only_from_the_build_dir_or_when_trusted(model_dir, tmp_path):
    outside = tmp_path / "handed_over"
    outside.mkdir()
    for f in model_dir.iterdir():
        (outside / f.name).write_bytes(f.read_bytes())
    with pytest.raises(UntrustedModel, match="backbone.pkl is a pickle.*--trust-model"):
        RelevanceModel.load(outside)
    assert RelevanceModel.load(outside, trust=True).kind == "tfidf" and RelevanceModel.load(model_dir).kind == "tfidf"
    (outside / "mlsearch_model.json").write_text("{truncated")
    with pytest.raises(ValueError, match="mlsearch_model.json: not a readable model description"):
        RelevanceModel.load(outside, trust=True)
    (model_dir / "backbone.pkl").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="backbone.pkl: unreadable weights"):
        RelevanceModel.load(model_dir)


def test_an_interrupted_write_keeps_the_previous_file_whole(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("old\n")

    def dies(tmp: Path) -> None:
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, dies)
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]


# -- the generation command line ------------------------------------------------------------------------------
def test_generation_inputs_and_caches_fail_with_their_file(tmp_path):
    bad_cache = tmp_path / "cache.sqlite"
    bad_cache.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CacheError, match=r"cache.sqlite: not a generation cache .*move it aside"):
        GenerationCache(bad_cache)
    GenerationCache(tmp_path / "fresh.sqlite").close()
    assert sqlite3.connect(tmp_path / "fresh.sqlite").execute("SELECT COUNT(*) FROM generated").fetchone() == (0,)
    with pytest.raises(DataFormatError, match=r"p.jsonl:2: field 'prompt': missing"):
        read_prompts(_jsonl(tmp_path / "p.jsonl", [{"prompt": "a"}, {"text": "b"}]))
    with pytest.raises(DataFormatError, match=r"q.jsonl:1: malformed JSON"):
        read_prompts(_jsonl(tmp_path / "q.jsonl", ["{prompt: a}"]))
    out = tmp_path / "out.jsonl"
    out.write_text("earlier outputs\n")
    done = subprocess.run([sys.executable, "-m", "mlsearch_lib.features.generation", "--input",
                           str(_jsonl(tmp_path / "ok.jsonl", [{"prompt": "a"}])), "--output", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "out.jsonl exists; pass --overwrite" in done.stderr
    assert out.read_text() == "earlier outputs\n"
