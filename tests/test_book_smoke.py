"""The whole book, end to end, on the tiny profile and a few hundred synthetic rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from mlsearch_lib.book import runner
from mlsearch_lib.config.profiles import load_profile, profile_path
from mlsearch_lib.models.relevance import LABELS


def _book(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlsearch_lib.book", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=1500)


def test_select_only_and_from():
    nbs = runner.notebooks()
    assert [p.name[:2] for p in runner.select(nbs, only="0,4")] == ["00", "04"]
    assert [p.name[:2] for p in runner.select(nbs, start="05")] == ["05", "06"]
    with pytest.raises(SystemExit, match="99"):
        runner.select(nbs, only="99")


def test_tiny_book_runs_end_to_end_and_renders(isolated_outputs):
    done = _book("run", "--profile", "tiny", "--draft")  # a draft: the tree under test may have changes
    assert done.returncode == 0, done.stderr[-3000:]
    out, build = isolated_outputs / "out", isolated_outputs / "build" / "tiny"
    figures = sorted(p.name for p in (build / "figures").glob("00_*.png"))
    assert {"00_label_ratio.png", "00_query_length.png", "00_category_depth.png"} <= set(figures)
    assert all((build / "figures" / f).stat().st_size > 5000 for f in figures)
    rows = pd.read_csv(build / "tables" / "00_rows_per_language.csv", index_col=0)
    assert rows.loc["total", "QC train"] == 300 and rows.loc["total", "QI train"] == 200
    meta = json.loads((build / "run.json").read_text())
    assert set(meta["notebooks"]) == {p.stem for p in runner.notebooks()}
    assert all(v["status"] == "ok" for v in meta["notebooks"].values())
    assert len(meta["data_fingerprint"]["QC/train_QC.txt"]) == 64 and meta["code_version"]
    metrics = json.loads((build / "metrics.json").read_text())
    assert metrics["00_eda"]["rows_QC_train"] == 300
    published = out / "reports" / "runs" / "tiny"
    assert json.loads((published / "run.json").read_text())["notebooks"] == meta["notebooks"]
    assert sorted(p.name for p in (published / "figures").glob("*.png")) == sorted(p.name for p in (build / "figures").glob("*.png"))
    tables = build / "tables"
    # 01: every action measured on the same folds; the refined set keeps the schema plus QR columns
    actions = pd.read_csv(tables / "01_actions_QC.csv", index_col=0)
    assert list(actions.index) == ["none", "drop", "relabel", "down-weight"]
    assert actions["roc_auc"].between(0, 1).all()
    refined = pd.read_json(out / "data" / "refine" / "train_QC_refined.txt", lines=True)
    assert len(refined) == 300 and {"category_path", "label", "qr_flag", "qr_reason", "qr_weight"} <= set(refined.columns)
    # 04: reference rows beside the task's models; out-of-fold p(yes) saved for every row. QI's main
    # model is its own (per_task: the boosted contrastive model, as cpu's QC; no stack), so 04 trains no cross-encoder on it
    for task, main in (("QC", "encoder"), ("QI", "hybrid_ctr_gbt")):
        results = pd.read_csv(tables / f"04_results_{task}.csv", index_col=0)
        assert {'all "yes"', "TF-IDF char n-gram + LR", LABELS[main],
                "TF-IDF + frozen e5 + neighbour labels + LR"} <= set(results.index)
        assert ("e5 cross-encoder" in results.index) == (task == "QC")
        assert results.loc['all "yes"', "roc_auc"] == 0.5 and results["roc_auc"].between(0, 1).all()
        oof = pd.read_csv(build / "oof" / f"{task}_{main}_all.csv")
        assert len(oof) == rows.loc["total", f"{task} train"] and oof["p_yes"].between(0, 1).all()
    assert (build / "figures" / "04_learning_curve.png").exists() and (build / "figures" / "05_reliability.png").exists()
    # 05: a submission line per held-out id, scored against the held-out labels
    for task in ("QC", "QI"):
        sub = pd.read_json(build / "submissions" / f"submit_{task}.txt", lines=True)
        gold = pd.read_json(build / "submissions" / f"holdout_{task}_gold.txt", lines=True)
        assert sub["id"].tolist() == gold["id"].tolist() and set(sub["prediction"]) <= {0, 1}
        assert 0 <= metrics["05_prediction"][f"{task}_holdout_f1"] <= 1
    # QC submits the stack (stack_with): its parts saved whole, its out-of-fold p(yes) beside the others;
    # QI its own main model alone
    assert {p.name for p in (build / "models" / "QC" / "parts").iterdir()} == {load_profile("tiny").stack_with, "encoder"}
    assert pd.read_csv(build / "oof" / "QC_stacked_all.csv")["p_yes"].between(0, 1).all()
    assert json.loads((build / "models" / "QI" / "mlsearch_model.json").read_text())["kind"] == "hybrid_ctr_gbt"
    assert not (build / "oof" / "QI_stacked_all.csv").exists() and not (tables / "04_stacked_QI.csv").exists()
    # 03: generated descriptions cached (a second call generates nothing) and attached as tags
    dg = pd.read_csv(tables / "03_dg_summary.csv", index_col=0)
    assert dg.loc["first call", "generated"] == 6 and dg.loc["second call (cache)", "cache hit rate"] == 1.0
    assert 0 <= metrics["03_description_generation"]["QI_dg_parse_failure_rate"] <= 1
    assert len(pd.read_csv(build / "tags" / "QI_dg.csv")) == 6 and (build / "tags" / "QC_qt.csv").exists()
    # 06: Tables 3 and 4 analogs with fold error bars and the seed's numbers beside ours
    for task, arms in (("QC", ["none", "LT", "HCT", "LT+HCT", "QR+LT+HCT"]),
                       ("QI", ["none", "LT", "SIT", "DG", "LT+SIT+DG", "QR+LT+SIT+DG"])):
        t4 = pd.read_csv(tables / f"06_table4_{task}.csv", index_col=0)
        assert list(t4.index) == arms and t4["roc_auc std"].notna().all() and t4.iloc[1:, -1].notna().all()
        t3 = pd.read_csv(tables / f"06_table3_{task}.csv", index_col=0)
        assert {"e5 cross-encoder", "google/gemma-3-270m + LoRA", "Qwen2.5-14B"} <= set(t3.index)
    unseen = pd.read_csv(tables / "06_unseen_arms_QC.csv", index_col=0)
    assert unseen["rows"].iloc[0] == int(rows.loc[["ar", "de", "it", "pl"], "QC train"].sum())
    assert (build / "figures" / "06_table4_deltas.png").exists()
    # same profile, same seed, fresh build dir (no cached folds) -> identical tables. QC alone: a
    # task's tables come from its own rows and models only, and the QI half would double the cost
    qc_only = isolated_outputs / "tiny.yaml"
    qc_only.write_text(yaml.safe_dump({**yaml.safe_load(profile_path("tiny").read_text(encoding="utf-8")),
                                       "tasks": ["QC"]}), encoding="utf-8")
    os.environ["MLSEARCH_OUTPUT_ROOT"] = str(isolated_outputs / "again")
    os.environ["MLSEARCH_BUILD_DIR"] = str(isolated_outputs / "build_again")
    done = _book("run", "--profile", str(qc_only), "--only", "04", "--draft")
    assert done.returncode == 0, done.stderr[-3000:]
    for table in ("04_results_QC.csv", "04_stacked_QC.csv", "04_per_language_QC.csv"):
        first, second = (tables / table).read_text(), (isolated_outputs / "build_again" / "tiny" / "tables" / table).read_text()
        assert first == second, table
    os.environ["MLSEARCH_OUTPUT_ROOT"], os.environ["MLSEARCH_BUILD_DIR"] = str(out), str(isolated_outputs / "build")
    done = _book("render", "--profile", "tiny")
    assert done.returncode == 0, done.stderr[-3000:]
    index = out / "reports" / "book" / "tiny" / "index.html"
    assert "00_eda.html" in index.read_text() and (index.parent / "00_eda.html").stat().st_size > 10000


def test_the_gpu_books_code_path_runs_end_to_end_on_a_tiny_qwen2(isolated_outputs):
    """gpu-smoke is gpu.yaml at test size: split mode, the causal LM with LoRA and SIT on, the QR,
    DG and QT arms on a smaller model, Table 3's extra LLMs, the budget check, both submissions."""
    done = _book("run", "--profile", "gpu-smoke", "--draft")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "budget:" in done.stdout and "of 48 GPU-hours planned" in done.stdout
    build = isolated_outputs / "build" / "gpu-smoke"
    tables = build / "tables"
    assert all(v["status"] == "ok" for v in json.loads((build / "run.json").read_text())["notebooks"].values())
    for task in ("QC", "QI"):  # one line per held-out id (split mode: the dev share's part 0)
        sub = pd.read_json(build / "submissions" / f"submit_{task}.txt", lines=True)
        gold = pd.read_json(build / "submissions" / f"holdout_{task}_gold.txt", lines=True)
        assert sub["id"].tolist() == gold["id"].tolist() and len(sub) and set(sub["prediction"]) <= {0, 1}
        results = pd.read_csv(tables / f"04_results_{task}.csv", index_col=0)
        assert "causal LM + LoRA" in results.index and results["roc_auc"].between(0, 1).all()
    assert {p.parent.name.split("_")[1] for p in (build / "folds").glob("*/split.npz")} >= {"llm", "tfidf"}
    t4 = pd.read_csv(tables / "06_table4_QI.csv", index_col=0)
    assert list(t4.index) == ["none", "LT", "SIT", "DG", "LT+SIT+DG", "QR+LT+SIT+DG", "QR+LT+SIT+DG+QT"]
    t3 = pd.read_csv(tables / "06_table3_QC.csv", index_col=0)
    assert {"mlsearch/qwen2-tiny-random + LoRA", "Qwen2.5-7B-Instruct + LoRA"} <= set(t3.index)


def test_failing_notebook_is_named_with_its_cell(isolated_outputs, synthetic_data):
    (synthetic_data.parent / "broken").mkdir(exist_ok=True)
    bad = synthetic_data.parent / "broken"
    (bad / "QC").mkdir(exist_ok=True)
    (bad / "QC" / "train_QC.txt").write_text('{"id": 1, "language": "en"}\n', encoding="utf-8")
    os.environ["MLSEARCH_DATA_DIR"] = str(bad)  # monkeypatched by the fixture, restored after
    done = _book("run", "--profile", "tiny", "--only", "00", "--draft")
    assert done.returncode == 1
    assert "notebook 00_eda.ipynb failed at cell" in done.stderr and "DataFormatError" in done.stderr
    assert "train_QC.txt:1: field 'origin_query'" in done.stderr


def test_no_data_stops_at_once(isolated_outputs, tmp_path):
    os.environ["MLSEARCH_DATA_DIR"] = str(tmp_path / "nowhere")
    done = _book("run", "--profile", "tiny")
    assert done.returncode == 2 and "data/raw/QC/" in done.stderr
    assert not (isolated_outputs / "build" / "tiny" / "notebooks").exists()


def test_a_draft_of_a_few_notebooks_keeps_the_other_notebooks_published(isolated_outputs):
    """``--only 04 --draft`` from a fresh build dir must not drop 00's entries or files from the published ones."""
    from mlsearch_lib.book import publish

    published = isolated_outputs / "out" / "reports" / "runs" / "tiny"
    (published / "figures").mkdir(parents=True)
    (published / "figures" / "00_kept.png").write_bytes(b"png")
    (published / "figures" / "04_gone.png").write_bytes(b"png")
    (published / "run.json").write_text(json.dumps({"code_version": "old", "notebooks": {
        "00_eda": {"status": "ok", "seconds": 1.0}, "04_training": {"status": "ok", "seconds": 9.0}}}))
    (published / "metrics.json").write_text(json.dumps({"00_eda": {"rows": 3}, "04_training": {"auc": 0.1, "gone": 1}}))
    build = isolated_outputs / "build" / "tiny"
    (build / "figures").mkdir(parents=True)
    (build / "figures" / "04_new.png").write_bytes(b"png")
    (build / "run.json").write_text(json.dumps({"code_version": "new", "notebooks": {
        "04_training": {"status": "ok", "seconds": 5.0, "code_version": "new"}}}))
    (build / "metrics.json").write_text(json.dumps({"04_training": {"auc": 0.7}}))
    with pytest.raises(publish.NotPublishable, match="00_eda"):
        publish.publish("tiny", ["00_eda", "04_training"])
    publish.publish("tiny", ["00_eda", "04_training"], draft=True)
    meta = json.loads((published / "run.json").read_text())
    assert meta["code_version"] == "new" and meta["notebooks"]["00_eda"]["seconds"] == 1.0
    assert meta["notebooks"]["04_training"] == {"status": "ok", "seconds": 5.0, "code_version": "new"}
    assert meta["published"]["draft"] and "00_eda" in meta["published"]["why_draft"][0]
    assert json.loads((published / "metrics.json").read_text()) == {"00_eda": {"rows": 3}, "04_training": {"auc": 0.7}}
    assert sorted(p.name for p in (published / "figures").iterdir()) == ["00_kept.png", "04_new.png"]
