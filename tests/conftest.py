from __future__ import annotations

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
def isolated_outputs(tmp_path, monkeypatch, synthetic_data) -> Path:
    """Point data, outputs and build products at temporary dirs: tests never touch the committed ones."""
    monkeypatch.setenv("MLSEARCH_DATA_DIR", str(synthetic_data))
    monkeypatch.setenv("MLSEARCH_OUTPUT_ROOT", str(tmp_path / "out"))
    monkeypatch.setenv("MLSEARCH_BUILD_DIR", str(tmp_path / "build"))
    return tmp_path
