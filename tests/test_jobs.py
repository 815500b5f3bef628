"""One job per (notebook, task, model or arm, unit): the same list everywhere, fanned out by Ray
(local, 2 workers) into the fold cache, after which the notebook's cross-validation trains nothing
and gives the sequential run's tables."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mlsearch_lib.book import jobs
from mlsearch_lib.config.profiles import load_profile, parse_sets
from mlsearch_lib.evaluation import experiments
from mlsearch_lib.models import relevance

SETS = ["backbone=encoder", "compare=[]", "stack_with=null", "validation.mode=split", "validation.dev_share=0.3"]


def _tables(profile) -> dict[str, pd.DataFrame]:
    out = {}
    for task in profile.tasks:
        df, folds = experiments.prepare(task, profile)
        oofs = experiments.out_of_fold(task, profile, df, folds, experiments.model_kinds(profile, task))
        out[task] = experiments.results_table(df, folds, oofs)
    return out


def test_the_job_list_names_every_unit_once_and_is_the_same_in_every_process(isolated_outputs):
    profile = load_profile("tiny", parse_sets(SETS))
    plan = jobs.plan(profile, ("04_training",))
    # QC: all_yes, tfidf, encoder + the official setting's tfidf, encoder; QI: all_yes, tfidf, encoder
    assert [(j.task, j.setting, j.label) for j in plan] == [
        ("QC", "all", "all_yes"), ("QC", "all", "tfidf"), ("QC", "all", "encoder"),
        ("QC", "official", "tfidf"), ("QC", "official", "encoder"),
        ("QI", "all", "all_yes"), ("QI", "all", "tfidf"), ("QI", "all", "encoder")]
    assert all(j.unit == "split" and j.scored_rows > 0 and j.train_rows > j.scored_rows for j in plan)
    assert [j.gpu for j in plan].count(True) == 3
    folds_plan = jobs.plan(load_profile("tiny", parse_sets(SETS[:3])), ("04_training",))
    assert len(folds_plan) == 3 * len(plan) and {j.unit for j in folds_plan} == {"fold0", "fold1", "fold2"}
    listed = subprocess.run([sys.executable, "-m", "mlsearch_lib.book.jobs", "count", "--profile", "tiny",
                             "--notebooks", "04_training", *[x for s in SETS for x in ("--set", s)]],
                            capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert listed.returncode == 0, listed.stderr[-2000:] and int(listed.stdout) == len(plan)


def test_ray_fan_out_fills_the_cache_the_notebooks_read_with_the_sequential_tables(isolated_outputs, monkeypatch):
    pytest.importorskip("ray")
    profile = load_profile("tiny", parse_sets(SETS))
    sequential = _tables(profile)  # in this process, one unit after the other
    monkeypatch.setenv("MLSEARCH_BUILD_DIR", str(isolated_outputs / "fanned"))
    done = subprocess.run([sys.executable, "-m", "mlsearch_lib.book.jobs", "ray", "--profile", "tiny", "--workers", "2",
                           "--notebooks", "04_training", *[x for s in SETS for x in ("--set", s)]],
                          capture_output=True, text=True, env=os.environ.copy(), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    def no_training(*args, **kwargs):
        raise AssertionError("the notebook trained a unit the jobs should have left in the cache")

    monkeypatch.setattr(relevance.RelevanceModel, "fit", no_training)
    fanned = _tables(profile)
    for task in profile.tasks:
        # the fanned cross-encoder's PR-AUC differed by 1e-4 (fp32 and bf16 alike): a Ray worker's
        # torch threads (Ray sets OMP_NUM_THREADS=1) are not this process's, so its sums round otherwise
        pd.testing.assert_frame_equal(fanned[task], sequential[task], rtol=1e-3)
        assert np.isfinite(fanned[task]["roc_auc"]).all()
