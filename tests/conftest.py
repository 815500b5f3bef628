from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import write_dataset  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """A few hundred multilingual rows in the official schema (QC and QI)."""
    return write_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture()
def qc_model(tmp_path, synthetic_data):
    """A saved TF-IDF QC model (threshold 0.5) fit on 200 synthetic rows, and the rows it came from."""
    from mlsearch_lib.config.profiles import load_profile
    from mlsearch_lib.data.records import read_task_file
    from mlsearch_lib.models.relevance import RelevanceModel

    df = read_task_file(synthetic_data / "QC" / "train_QC.txt")
    model = RelevanceModel("tfidf", "QC", load_profile("tiny"))
    model.fit(df.iloc[:200])
    directory = model.save(tmp_path / "model")
    (directory / "thresholds.json").write_text(json.dumps({"global": 0.5, "per_language": {}}))
    return directory, df


@pytest.fixture()
def isolated_outputs(tmp_path, monkeypatch, synthetic_data) -> Path:
    """Point data, outputs and build products at temporary dirs: tests never touch the committed ones."""
    monkeypatch.setenv("MLSEARCH_DATA_DIR", str(synthetic_data))
    monkeypatch.setenv("MLSEARCH_OUTPUT_ROOT", str(tmp_path / "out"))
    monkeypatch.setenv("MLSEARCH_BUILD_DIR", str(tmp_path / "build"))
    return tmp_path
