"""Committed notebooks carry no outputs and keep the parameters-cell contract."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
EXPECTED = ["00_eda", "01_quality_refinement", "02_tagging", "03_description_generation",
            "04_training", "05_prediction", "06_ablation"]


def test_the_book_has_its_numbered_notebooks():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_outputs_committed(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; strip them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_is_second_and_holds_literals_only(path):
    nb = nbformat.read(path, as_version=4)
    cell = nb.cells[1]
    assert "parameters" in cell.metadata.get("tags", []), "second cell must be tagged 'parameters'"
    for stmt in ast.parse(cell.source).body:
        assert isinstance(stmt, ast.Assign), f"{path.name}: only assignments in the parameters cell"
        ast.literal_eval(stmt.value)  # raises on anything derived
        assert all(t.id.isupper() for t in stmt.targets), "parameters are UPPER_CASE"
    assert "PROFILE" in cell.source and "RUN_DIR" in cell.source
