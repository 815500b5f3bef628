"""validation.mode: split — one query-grouped dev share scored by one model per unit, the tables on
the dev rows; and profiles that build on another (``base:``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsearch_lib.config.profiles import ProfileError, load_profile
from mlsearch_lib.data.folds import TRAIN_ONLY, grouped_split, query_groups, scored
from mlsearch_lib.data.records import read_task_file
from mlsearch_lib.evaluation import ablation, experiments, submission
from mlsearch_lib.models import relevance


@pytest.fixture()
def qc(synthetic_data):
    return read_task_file(synthetic_data / "QC" / "train_QC.txt")


def test_the_dev_share_is_query_grouped_and_cut_into_parts(qc):
    folds = grouped_split(qc, dev_share=0.25, k=3, seed=0)
    dev = scored(folds)
    assert 0.15 < dev.mean() < 0.35 and set(folds[dev]) == {0, 1, 2} and set(folds[~dev]) == {TRAIN_ONLY}
    groups = pd.Series(folds).groupby(query_groups(qc)).nunique()
    assert (groups == 1).all()  # no query on both sides, nor in two parts
    assert np.array_equal(folds, grouped_split(qc, 0.25, 3, seed=0))


def test_one_model_scores_the_dev_rows_and_equals_a_model_trained_on_the_rest(qc, tmp_path):
    prof = load_profile("tiny")
    folds = grouped_split(qc, 0.25, 3, seed=0)
    msgs: list[str] = []
    p, _ = relevance.cross_validate("tfidf", "QC", prof, qc, folds, tmp_path, log=msgs.append, keep_model=0)
    dev = scored(folds)
    assert relevance.cv_units(folds) == ["split"] and len(msgs) == 1
    assert np.isnan(p[~dev]).all() and np.isfinite(p[dev]).all()
    alone = relevance.RelevanceModel("tfidf", "QC", prof)
    alone.fit(qc[~dev].reset_index(drop=True))
    np.testing.assert_allclose(p[dev], alone.predict_proba(qc[dev].reset_index(drop=True)))
    kept = relevance.fold_model_dir("tfidf", "QC", prof, qc, folds, tmp_path, 0)
    assert kept is not None and kept.name == "split_model"
    again, _ = relevance.cross_validate("tfidf", "QC", prof, qc, folds, tmp_path, log=msgs.append, keep_model=0)
    assert "cached" in msgs[-1] and np.array_equal(again, p, equal_nan=True)


def test_tables_read_the_dev_rows_only(qc, tmp_path):
    prof = load_profile("tiny")
    folds = grouped_split(qc, 0.3, 3, seed=0)
    dev = scored(folds)
    oofs = {k: relevance.cross_validate(k, "QC", prof, qc, folds, tmp_path, log=lambda _: None)[0]
            for k in ("all_yes", "tfidf")}
    table = experiments.results_table(qc, folds, oofs)
    assert table["roc_auc"].notna().all() and table.loc['all "yes"', "roc_auc"] == 0.5
    thresholds, _ = submission.thresholds_table(qc, oofs["tfidf"], 200.0, folds)
    assert thresholds["at 0.5"].notna().all()
    per_arm = ablation.compare(qc["label"].to_numpy(), folds, oofs, baseline="all_yes")
    assert (per_arm["rows"] == dev.sum()).all()
    curve, ece = submission.reliability(qc["label"].to_numpy(), oofs["tfidf"])
    assert curve["rows"].sum() == dev.sum() and 0 <= ece <= 1
    by_lang = experiments.per_language_table(qc, oofs, {})
    assert by_lang.loc[("all", 'all "yes"'), "rows"] == dev.sum()


def test_split_mode_comes_from_the_profile_and_quality_refinement_keeps_every_row(isolated_outputs):
    prof = load_profile("tiny", {"validation": {"mode": "split", "dev_share": 0.3}})
    df, folds = experiments.prepare("QC", prof)
    assert (folds == TRAIN_ONLY).any() and scored(folds).any()
    assert set(experiments.label_folds(df, prof)) == {0, 1, 2}  # QR judges every label out of fold


def test_a_profile_builds_on_its_base(tmp_path):
    (tmp_path / "small.yaml").write_text("base: tiny\nname: small\nencoder: {epochs: 2}\n")
    small, tiny = load_profile(tmp_path / "small.yaml"), load_profile("tiny")
    assert small.name == "small" and small.encoder.epochs == 2
    assert small.encoder.max_length == tiny.encoder.max_length and small.stack_with == tiny.stack_with
    (tmp_path / "loop.yaml").write_text(f"base: {tmp_path / 'loop.yaml'}\n")
    with pytest.raises(ProfileError, match="cycle"):
        load_profile(tmp_path / "loop.yaml")
