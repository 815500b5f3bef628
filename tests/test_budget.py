"""The GPU budget: every line of the plan measured or projected from ``reports/bench/gpu.json``,
the gpu book within its 48 GPU-hours at the official sizes, and a book run over budget stopped
before its first notebook."""

from __future__ import annotations

import pytest

from mlsearch_lib.bench import cli
from mlsearch_lib.book import budget, runner
from mlsearch_lib.config.profiles import load_profile

OFFICIAL = {"QC": 300_000, "QI": 340_000}


def test_the_gpu_book_fits_its_budget_at_the_official_sizes(isolated_outputs):
    profile = load_profile("gpu")
    lines = budget.budget(profile, budget.measured(), OFFICIAL)
    total = sum(x.gpu_hours for x in lines)
    assert 0 < total <= profile.budget.gpu_hours == 48
    assert budget.wall_hours(lines, 8) <= 12 < budget.wall_hours(lines, 1)
    assert all("measured" in x.source or "projected" in x.source for x in lines)
    # the 14B trains the two submitted systems only, once each (split mode); the arms run the 7B
    big = [x.job for x in lines if x.job and x.job.model == "Qwen/Qwen2.5-14B-Instruct"]
    assert {(j.notebook, j.table) for j in big} == {("04_training", "oof"), ("06_ablation", "backbones")}
    assert all(j.unit == "split" for j in big) and len([j for j in big if j.notebook == "04_training"]) == 2
    arms = [x.job for x in lines if x.job and x.job.table == "arms"]
    assert arms and {j.model for j in arms} == {"Qwen/Qwen2.5-7B-Instruct"}


def test_the_budget_command_writes_the_report_with_a_total_line(isolated_outputs, capsys):
    cli.main(["budget", "--profile", "gpu", "--rows", "QC=300000", "QI=340000"])
    text = (isolated_outputs / "out" / "reports" / "bench" / "gpu_budget.md").read_text()
    assert text.strip() in capsys.readouterr().out
    total = next(line for line in text.splitlines() if line.startswith("total: "))
    assert total.endswith(" GPU-h") and float(total.split()[1]) <= 48
    for notebook in ("03_description_generation", "04_training", "05_prediction", "06_ablation"):
        assert f"| {notebook} |" in text


def test_a_book_run_over_budget_stops_before_its_first_notebook(isolated_outputs, tmp_path, monkeypatch):
    (tmp_path / "over.yaml").write_text("base: gpu\nname: over\nbudget: {gpu_hours: 0.01}\n")
    started = []
    monkeypatch.setattr("papermill.execute_notebook", lambda *a, **k: started.append(a))
    with pytest.raises(budget.BudgetExceeded, match=r"over its budget.gpu_hours 0.01 .*validation.mode: split"):
        runner.run(str(tmp_path / "over.yaml"))
    assert not started
