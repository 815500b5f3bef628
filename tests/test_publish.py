"""What a reader is shown: only a clean one-commit run is published, interactive notebook runs
leave the committed results alone, tables read well, and the Findings are written from the tables."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsearch_lib.book import findings, publish, runner
from mlsearch_lib.book.outputs import markdown_table
from mlsearch_lib.config import paths

BOOK = ["00_eda", "04_training"]


def _ok(version: str) -> dict:
    return {"status": "ok", "seconds": 1.0, "code_version": version}


@pytest.mark.parametrize(("notebooks", "reason"), [
    ({"00_eda": _ok("abc"), "04_training": _ok("abc")}, None),
    ({"00_eda": _ok("abc-dirty"), "04_training": _ok("abc-dirty")}, "not a clean commit"),
    ({"00_eda": _ok("abc"), "04_training": _ok("def")}, "different code versions (abc, def)"),
    ({"00_eda": _ok("abc")}, "04_training did not run"),
    ({"00_eda": _ok("abc"), "04_training": {**_ok("abc"), "status": "failed"}}, "04_training did not run"),
])
def test_only_the_whole_book_at_one_clean_commit_is_publishable(notebooks, reason):
    found = publish.blockers({"notebooks": notebooks}, BOOK)
    assert (found == []) if reason is None else any(reason in r for r in found), found


def test_a_dirty_tree_stops_the_run_before_its_first_notebook(isolated_outputs, monkeypatch):
    monkeypatch.setattr(runner, "code_version", lambda: "0123abcd-dirty")
    with pytest.raises(publish.NotPublishable, match="not a clean commit.*--draft"):
        runner.run("tiny", log=lambda *_: None)
    assert not list((isolated_outputs / "build" / "tiny" / "notebooks").glob("*.ipynb"))


def test_a_clean_run_publishes_the_default_profile_with_portable_metadata(isolated_outputs, monkeypatch):
    build = isolated_outputs / "build" / "cpu"
    (build / "figures").mkdir(parents=True)
    (build / "tables").mkdir()
    (build / "figures" / "00_a.png").write_bytes(b"png")
    (build / "tables" / "00_t.md").write_text("| a |\n", encoding="utf-8")
    meta = {"notebooks": {s: _ok("abc") for s in BOOK}, "data_dir": str(paths.PROJECT_ROOT / "data" / "raw"),
            "packages": publish.package_versions(), "machine": publish.machine()}
    (build / "run.json").write_text(json.dumps(meta), encoding="utf-8")
    out = publish.publish("cpu", BOOK)
    root = isolated_outputs / "out"
    assert (root / "figures" / "00_a.png").read_bytes() == b"png" and (root / "reports" / "tables" / "00_t.md").is_file()
    published = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert published["data_dir"] == "./data/raw" and str(paths.PROJECT_ROOT) not in (out / "run.json").read_text()
    assert published["published"] == {"draft": False, "why_draft": []}
    assert published["packages"]["torch"] and published["machine"]["cores"] >= 1


def test_a_notebook_run_as_jupyterlab_would_leaves_every_committed_file_alone(synthetic_data, tmp_path, monkeypatch):
    """No runner, no parameters, no output root set: the notebook's figures and tables go to the
    build folder, and ``git status`` of the checkout is what it was."""
    import nbclient
    import nbformat

    def status() -> str:
        return subprocess.run(["git", "status", "--porcelain"], cwd=paths.PROJECT_ROOT, capture_output=True,
                              text=True, check=True).stdout

    figures = {p: p.stat().st_mtime_ns for p in (paths.PROJECT_ROOT / "figures").glob("*.png")}
    before = status()
    monkeypatch.setenv("MLSEARCH_DATA_DIR", str(synthetic_data))
    monkeypatch.setenv("MLSEARCH_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.delenv("MLSEARCH_OUTPUT_ROOT", raising=False)
    nb = nbformat.read(paths.NOTEBOOKS_DIR / "00_eda.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(paths.NOTEBOOKS_DIR)}}).execute()
    assert status() == before
    assert {p: p.stat().st_mtime_ns for p in figures} == figures
    assert (tmp_path / "build" / "cpu" / "figures" / "00_label_ratio.png").stat().st_size > 5000
    assert (tmp_path / "build" / "cpu" / "tables" / "00_rows_per_language.md").is_file()


def test_the_project_root_is_the_working_tree_not_the_installed_package(tmp_path, monkeypatch):
    clone = tmp_path / "clone"
    for part in ("notebooks", "mlsearch_lib", "deep/er"):
        (clone / part).mkdir(parents=True)
    (clone / "pyproject.toml").write_text("[project]\nname = 'mlsearch'\n", encoding="utf-8")
    monkeypatch.delenv("MLSEARCH_PROJECT_ROOT", raising=False)
    assert paths.find_project_root(clone / "deep" / "er") == clone.resolve()
    assert paths.find_project_root(tmp_path) == paths.PACKAGE_DIR.parent  # outside any checkout
    monkeypatch.setenv("MLSEARCH_PROJECT_ROOT", str(tmp_path))
    assert paths.find_project_root(clone) == tmp_path.resolve()


def test_tables_for_reading_blanks_ints_and_at_most_four_significant_digits():
    df = pd.DataFrame({"model": ["all yes", "tfidf"], "rows": [400.0, 12.0], "roc_auc": [0.5, 0.731234],
                       "delta": [np.nan, -0.0123456], "seconds": [938.123, 12.5]}).set_index("model")
    lines = markdown_table(df).splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert cells[0] == ["model", "rows", "roc_auc", "delta", "seconds"]
    assert cells[2] == ["all yes", "400", "0.5000", "", "938.1"]
    assert cells[3] == ["tfidf", "12", "0.7312", "-0.0123", "12.5"]
    assert "nan" not in markdown_table(df).lower() and lines[1].count("--:") == 4  # numbers right-aligned


def _write_tables(tables: Path) -> None:
    tables.mkdir(parents=True, exist_ok=True)
    cols = ["model", "f1@tuned", "roc_auc", "pr_auc", "Δroc_auc", "Δroc_auc 95% lo", "Δroc_auc 95% hi"]
    for task, best in (("QC", 0.72), ("QI", 0.75)):
        pd.DataFrame([['all "yes"', 0.81, 0.5, 0.68, -0.18, -0.19, -0.17],
                      ["TF-IDF char n-gram + LR", 0.82, 0.68, 0.80, np.nan, np.nan, np.nan],
                      ["e5 cross-encoder", 0.81, best - 0.03, 0.81, 0.01, 0.0, 0.02]], columns=cols
                     ).to_csv(tables / f"04_results_{task}.csv", index=False)
        pd.DataFrame([["e5 cross-encoder (stacked)", 0.82, best, 0.84, 0.003, 0.001, 0.005, 0.04, 0.03, 0.05]],
                     columns=[*cols, "Δroc_auc vs TF-IDF", "Δroc_auc 95% lo vs TF-IDF", "Δroc_auc 95% hi vs TF-IDF"]
                     ).to_csv(tables / f"04_stacked_{task}.csv", index=False)
    pd.DataFrame({"arm": ["none", "LT", "HCT"], "rows": [2000] * 3, "Δroc_auc vs none": [0.0, 0.0156, -0.0183],
                  "beyond fold noise": [False, True, False]}).to_csv(tables / "06_table4_QC.csv", index=False)
    pd.DataFrame({"model": ["NL"] * 4, "trained on": ["all languages", "all languages", "official (en)", "official (en)"],
                  "evaluated on": ["seen", "unseen", "seen", "unseen"], "rows": [10, 5, 10, 5],
                  "roc_auc": [0.72, 0.7281, 0.71, 0.6774]}).to_csv(tables / "04_unseen_languages_QC.csv", index=False)


def test_findings_are_written_from_the_runs_tables(tmp_path):
    _write_tables(tmp_path)
    qc = findings.headline(tmp_path, "QC")
    assert list(qc.index) == ['all "yes"', "TF-IDF char n-gram + LR", "best: e5 cross-encoder (stacked)",
                              "DILAB, Qwen2.5-14B + LoRA (theirs: private test set)"]
    assert qc.loc["best: e5 cross-encoder (stacked)", "ROC-AUC"] == 0.72
    assert qc.loc["best: e5 cross-encoder (stacked)", "ΔROC-AUC vs TF-IDF"] == 0.04  # against TF-IDF, not its base
    assert np.isnan(qc.iloc[-1]["ROC-AUC"]) and qc.iloc[-1]["F1 (tuned)"] == 0.8861  # theirs: F1 only
    assert findings.ablation_verdict(tmp_path, "QC") == ("QC: LT moved ROC-AUC beyond fold noise on 2,000 rows "
                                                        "(Δ vs none: LT +0.0156, HCT -0.0183).")
    assert findings.ablation_verdict(tmp_path, "QI") is None  # no table: no sentence
    assert "they cost 0.0507" in findings.unseen_cost(tmp_path)
    text = findings.findings_markdown(tmp_path)
    assert text.index("**QC**") < text.index("**QI** (English stand-in") < text.index("- QC: LT moved")


def test_a_published_run_rewrites_only_the_readmes_findings_block(tmp_path):
    _write_tables(tmp_path / "tables")
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n\n{findings.README_START}\nold numbers\n{findings.README_END}\n\nafter\n",
                      encoding="utf-8")
    assert findings.update_readme(readme, tmp_path / "tables", "cpu")
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# title\n\nbefore\n\n") and text.endswith("\n\nafter\n") and "old numbers" not in text
    assert "| best: e5 cross-encoder (stacked)" in text and "0.7200" in text
    assert findings.update_readme(readme, tmp_path / "tables", "cpu") and readme.read_text(encoding="utf-8") == text
    meta = {"notebooks": {"00_eda": {"seconds": 9.8, "code_version": "abc"}, "04_training": {"seconds": 1790.2, "code_version": "abc"}},
            "machine": {"cpu": "AMD EPYC", "cores": 2}}
    assert findings.update_readme(readme, tmp_path / "tables", "cpu", meta)
    assert ("From one book run at `abc`: 30.0 min of notebooks (00 10 s · 04 1,790 s) on AMD EPYC, 2 cores.\n\n"
            + findings.README_END) in readme.read_text(encoding="utf-8")
    plain = tmp_path / "PLAIN.md"
    plain.write_text("no markers\n", encoding="utf-8")
    assert not findings.update_readme(plain, tmp_path / "tables", "cpu") and plain.read_text() == "no markers\n"


def test_the_heartbeat_says_elapsed_and_remaining_time():
    lines: list[str] = []
    with runner._Heartbeat(lines.append, "[1/1] 04_training", expected=600.0, every=0.05):
        import time

        time.sleep(0.18)
    assert lines and all(line.startswith("[1/1] 04_training running for 0.0 min") for line in lines)
    assert "about 10 min left (last run 10 min)" in lines[0]


def test_a_notebooks_progress_bars_reach_the_heartbeat_as_plain_lines(tmp_path, monkeypatch):
    import time

    from tqdm.auto import tqdm as auto_bar

    from mlsearch_lib.config import progress

    monkeypatch.delenv(progress.ENV, raising=False)
    assert isinstance(progress.tqdm(range(2), disable=True), auto_bar)  # JupyterLab: the notebook's own bar
    steps = tmp_path / "progress" / "04_training.log"
    monkeypatch.setenv(progress.ENV, str(steps))  # what `book run` sets for the kernel
    assert progress.latest(steps) == ""
    for _ in progress.tqdm(range(4), desc="QC encoder folds", mininterval=0):
        time.sleep(0.01)
    line = progress.latest(steps)
    assert line.startswith("QC encoder folds: 100%") and "4/4 [" in line and "<00:00" in line  # elapsed<remaining
    with progress.tqdm(total=10, desc="LLM scoring", mininterval=0) as bar:  # a step still under way
        bar.update(3)
        lines: list[str] = []
        with runner._Heartbeat(lines.append, "[5/7] 04_training", expected=None, every=0.05, steps=steps):
            time.sleep(0.12)
    assert lines and lines[-1].startswith("[5/7] 04_training running for 0.0 min | LLM scoring:  30%")
    assert "3/10 [" in lines[-1]


def test_the_rendered_book_names_no_absolute_path_of_this_machine():
    from mlsearch_lib.book import render

    text = f"data in {paths.PROJECT_ROOT}/data/raw, cache in {Path.home()}/.cache/mlsearch"
    assert render._portable(text) == "data in ./data/raw, cache in ~/.cache/mlsearch"
