"""Cross-validation: out-of-fold for every row, cached per fold, resumed after an interruption."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from mlsearch_lib.config.profiles import load_profile
from mlsearch_lib.data.folds import grouped_folds
from mlsearch_lib.data.records import read_task_file
from mlsearch_lib.models import relevance
from mlsearch_lib.models.loading import load_model


@pytest.fixture()
def qc(synthetic_data):
    df = read_task_file(synthetic_data / "QC" / "train_QC.txt")
    return df, grouped_folds(df, 3, seed=0)


def test_every_row_gets_an_out_of_fold_prediction_and_reruns_are_cached(tmp_path, qc):
    df, folds = qc
    prof = load_profile("tiny")
    messages: list[str] = []
    p1, _ = relevance.cross_validate("tfidf", "QC", prof, df, folds, tmp_path, log=messages.append)
    assert not np.isnan(p1).any() and len(p1) == len(df)
    assert not any("cached" in m for m in messages)
    messages.clear()
    p2, _ = relevance.cross_validate("tfidf", "QC", prof, df, folds, tmp_path, log=messages.append)
    assert np.array_equal(p1, p2) and sum("cached" in m for m in messages) == 3


def test_interrupted_run_resumes_from_finished_folds(tmp_path, qc, monkeypatch):
    df, folds = qc
    prof = load_profile("tiny")
    real_fit, calls = relevance.RelevanceModel.fit, []

    def flaky_fit(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while training the second fold
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(relevance.RelevanceModel, "fit", flaky_fit)
    with pytest.raises(KeyboardInterrupt):
        relevance.cross_validate("tfidf", "QC", prof, df, folds, tmp_path, log=lambda s: None)
    messages: list[str] = []
    relevance.cross_validate("tfidf", "QC", prof, df, folds, tmp_path, log=messages.append)
    assert sum("cached" in m for m in messages) == 1 and len(calls) == 4


def test_training_mask_and_weights_change_the_cache_key(tmp_path, qc):
    df, folds = qc
    prof = load_profile("tiny")
    base, _ = relevance.cross_validate("tfidf", "QC", prof, df, folds, tmp_path, log=lambda s: None)
    only_en = (df["language"] == "en").to_numpy()
    masked, _ = relevance.cross_validate("tfidf", "QC", prof, df, folds, tmp_path, train_mask=only_en, log=lambda s: None)
    assert not np.allclose(base, masked)
    assert len(list(tmp_path.iterdir())) == 2


def test_save_and_load_round_trip_keeps_examples(tmp_path, qc):
    df, _ = qc
    model = relevance.RelevanceModel("tfidf", "QC", load_profile("tiny"))
    model.fit(df)
    again = relevance.RelevanceModel.load(model.save(tmp_path / "m"), trust=True)
    assert again.builder.examples == model.builder.examples
    assert np.allclose(again.predict_proba(df), model.predict_proba(df))
    with pytest.raises(FileNotFoundError, match="not a saved mlsearch model"):
        relevance.RelevanceModel.load(tmp_path)


def test_the_embedding_model_is_part_of_the_frozen_e5_cache_keys(qc):
    df, folds = qc
    prof = load_profile("tiny")
    other = load_profile("tiny", {"encoder": {"max_length": prof.encoder.max_length + 8}})
    mask = np.ones(len(df), bool)
    for kind in ("bi_encoder", "hybrid", "hybrid_nl"):  # vectors of another length: never the cached folds
        assert relevance._cache_key(kind, "QC", prof, df, folds, mask, None) != \
            relevance._cache_key(kind, "QC", other, df, folds, mask, None)
    assert relevance._cache_key("tfidf", "QC", prof, df, folds, mask, None) == \
        relevance._cache_key("tfidf", "QC", other, df, folds, mask, None)


def test_the_prompt_template_is_part_of_the_llm_cache_key(qc, monkeypatch):
    from mlsearch_lib.features import prompts

    df, folds = qc
    prof, mask = load_profile("tiny"), np.ones(len(df), bool)
    before = {k: relevance._cache_key(k, "QC", prof, df, folds, mask, None) for k in ("llm", "tfidf")}
    real = prompts.load_template
    monkeypatch.setattr(prompts, "load_template", lambda name: {**real(name), "body": "{query} | {item}\n"})
    assert relevance._cache_key("llm", "QC", prof, df, folds, mask, None) != before["llm"]  # a reworded prompt
    assert relevance._cache_key("tfidf", "QC", prof, df, folds, mask, None) == before["tfidf"]


def test_a_per_task_override_reaches_that_tasks_model_and_cache_key_only(qc):
    df, folds = qc
    prof = load_profile("tiny")
    other = load_profile("tiny", {"per_task": {"QI": {"encoder": {"epochs": 2}}}})
    mask = np.ones(len(df), bool)
    key = lambda task, p: relevance._cache_key("encoder", task, p, df, folds, mask, None)  # noqa: E731
    assert key("QC", prof) == key("QC", other) and key("QI", prof) != key("QI", other)
    assert relevance.RelevanceModel("encoder", "QI", other).backbone.cfg.epochs == 2
    assert relevance.RelevanceModel("encoder", "QC", other).backbone.cfg.epochs == 1


def test_the_held_out_final_model_is_the_one_cross_validation_kept(isolated_outputs, qc, monkeypatch):
    from mlsearch_lib.evaluation import experiments, submission
    from mlsearch_lib.evaluation.thresholds import Thresholds

    df, folds = qc
    prof = load_profile("tiny", {"stack_with": None})
    p = experiments.out_of_fold("QC", prof, df, folds, ["encoder"])["encoder"]
    held_out = df[folds == experiments.HOLDOUT_FOLD].reset_index(drop=True)
    real_fit = relevance.RelevanceModel.fit
    monkeypatch.setattr(relevance.RelevanceModel, "fit", lambda *a, **k: pytest.fail("trained again"))
    reused = submission.final_model("QC", prof, df, folds, Thresholds(0.5), experiments.HOLDOUT_FOLD)
    np.testing.assert_array_equal(relevance.RelevanceModel.load(reused).predict_proba(held_out),
                                  p[folds == experiments.HOLDOUT_FOLD])
    assert (reused / "thresholds.json").is_file()
    # without the kept model it trains on the same rows, and gets the same model
    kept = relevance.fold_model_dir("encoder", "QC", prof, df, folds, experiments.run_dir(prof) / "folds",
                                    experiments.HOLDOUT_FOLD, experiments.train_mask(df, prof))
    shutil.rmtree(kept)
    monkeypatch.setattr(relevance.RelevanceModel, "fit", real_fit)
    trained = submission.final_model("QC", prof, df, folds, Thresholds(0.5), experiments.HOLDOUT_FOLD)
    np.testing.assert_allclose(relevance.RelevanceModel.load(trained).predict_proba(held_out),
                               p[folds == experiments.HOLDOUT_FOLD], atol=1e-6)


def test_distill_targets_mix_the_label_with_a_teacher_that_never_saw_the_row(qc, monkeypatch):
    df, folds = qc
    monkeypatch.setattr(relevance, "grouped_folds", lambda *_: folds)  # label-stratified folds, held fixed here
    prof = load_profile("tiny", {"encoder": {"distill": 1.0, "teacher": "tfidf"}})
    teacher = relevance.distill_targets(df, "QC", prof)
    assert teacher.shape == (len(df),) and ((teacher > 0) & (teacher < 1)).all()
    flipped = df.copy()
    flipped.loc[0, "label"] = 1 - flipped.loc[0, "label"]  # a row's own label never reaches its teacher score
    assert relevance.distill_targets(flipped, "QC", prof)[0] == teacher[0]
    half = load_profile("tiny", {"encoder": {"distill": 0.25, "teacher": "tfidf"}})
    np.testing.assert_allclose(relevance.distill_targets(df, "QC", half), 0.75 * df["label"] + 0.25 * teacher)


def test_a_distilling_cross_encoder_trains_on_the_targets_and_keys_its_cache(qc, monkeypatch):
    df, folds = qc
    prof = load_profile("tiny", {"encoder": {"distill": 0.5, "teacher": "tfidf"}})
    model = relevance.RelevanceModel("encoder", "QC", prof)
    seen = {}
    monkeypatch.setattr(model.backbone, "fit", lambda pairs, labels, weights, **kw: seen.update(kw))
    model.fit(df)
    np.testing.assert_allclose(seen["targets"], relevance.distill_targets(df, "QC", prof))
    assert not relevance.RelevanceModel("encoder", "QC", load_profile("tiny")).distills
    mask = np.ones(len(df), dtype=bool)
    assert (relevance._cache_key("encoder", "QC", prof, df, folds, mask, None)
            != relevance._cache_key("encoder", "QC", load_profile("tiny"), df, folds, mask, None))


def test_a_resumed_distilling_fit_reuses_its_teachers_folds(qc, monkeypatch, tmp_path):
    df, _ = qc
    prof = load_profile("tiny", {"encoder": {"distill": 0.5, "teacher": "tfidf"}})
    model = relevance.RelevanceModel("encoder", "QC", prof)
    seen = {}
    monkeypatch.setattr(model.backbone, "fit", lambda pairs, labels, weights, **kw: seen.update(kw))
    model.fit(df, output_dir=tmp_path / "ckpt")
    assert len(list((tmp_path / "ckpt" / "teacher").glob("*/fold*.npz"))) == prof.validation.folds

    def no_training(*_, **__):
        raise AssertionError("the teacher was trained again")

    monkeypatch.setattr(relevance.RelevanceModel, "fit", no_training)
    again = relevance.distill_targets(df, "QC", prof, cache_dir=tmp_path / "ckpt" / "teacher")
    np.testing.assert_array_equal(again, seen["targets"])


def test_the_submitted_stack_reads_its_parts_with_the_weights_their_out_of_fold_scores_give(isolated_outputs, qc,
                                                                                          monkeypatch):
    from scipy.special import expit, logit
    from sklearn.linear_model import LogisticRegression

    from mlsearch_lib.__main__ import predict_file
    from mlsearch_lib.evaluation import experiments, submission
    from mlsearch_lib.evaluation.thresholds import Thresholds
    from mlsearch_lib.models.stacking import StackedModel

    df, folds = qc
    prof = load_profile("tiny", {"backbone": "tfidf", "stack_with": "bi_encoder"})
    assert experiments.submitted_kind(prof, "QC") == "stacked"
    oofs = experiments.out_of_fold("QC", prof, df, folds, ["tfidf", "bi_encoder"])
    real_fit = relevance.RelevanceModel.fit  # both parts were kept for the held-out fold: none trains again
    monkeypatch.setattr(relevance.RelevanceModel, "fit", lambda *a, **k: pytest.fail("trained again"))
    directory = submission.final_model("QC", prof, df, folds, Thresholds(0.5), experiments.HOLDOUT_FOLD)
    monkeypatch.setattr(relevance.RelevanceModel, "fit", real_fit)
    stack = load_model(directory)
    assert isinstance(stack, StackedModel) and list(stack.parts) == ["bi_encoder", "tfidf"]
    assert not directory.with_name("QC.partial").exists() and (directory / "thresholds.json").is_file()
    # the weights: a logistic regression on the parts' out-of-fold logits of the training rows
    train, held = folds != experiments.HOLDOUT_FOLD, folds == experiments.HOLDOUT_FOLD
    x = np.column_stack([logit(np.clip(oofs[k], 1e-6, 1 - 1e-6)) for k in ("bi_encoder", "tfidf")])
    ref = LogisticRegression().fit(x[train], df["label"].to_numpy()[train])
    np.testing.assert_allclose(stack.coef, ref.coef_[0])
    assert stack.intercept == pytest.approx(ref.intercept_[0])
    # each part is the model trained on the other folds: the held-out p(yes) follow from theirs
    held_out = df[held].reset_index(drop=True)
    parts = np.column_stack([logit(np.clip(oofs[k][held], 1e-6, 1 - 1e-6)) for k in ("bi_encoder", "tfidf")])
    expected = expit(parts @ ref.coef_[0] + ref.intercept_[0])
    np.testing.assert_allclose(stack.predict_proba(held_out), expected, atol=1e-6)
    # and the prediction CLI reads the stack like any model
    src, _ = submission.write_holdout_file(df, folds, experiments.HOLDOUT_FOLD, isolated_outputs / "held.txt")
    out = predict_file("QC", directory, src, isolated_outputs / "pred.jsonl")
    np.testing.assert_allclose(out["p_yes"], expected, atol=1e-6)


def test_a_stack_without_its_parts_is_refused(tmp_path):
    from sklearn.linear_model import LogisticRegression

    from mlsearch_lib.models.stacking import save_stack

    stacker = LogisticRegression().fit(np.array([[0.0, 1.0], [1.0, 0.0]]), [0, 1])
    with pytest.raises(FileNotFoundError, match="no saved part for hybrid_nl, encoder"):
        save_stack(tmp_path, "QC", ["hybrid_nl", "encoder"], stacker)


def test_a_task_submits_its_own_main_model_when_per_task_sets_one(isolated_outputs, qc, monkeypatch):
    """``per_task`` may drop the stack for one task (cpu: QC submits the contrastive model alone):
    04 trains only that task's models and 05 saves that single model, the one kept for fold 0."""
    from mlsearch_lib.evaluation import experiments, submission
    from mlsearch_lib.evaluation.thresholds import Thresholds

    df, folds = qc
    prof = load_profile("tiny", {"backbone": "tfidf", "stack_with": "bi_encoder", "compare": [],
                                 "per_task": {"QC": {"backbone": "bi_encoder", "stack_with": None}}})
    assert experiments.model_kinds(prof, "QC") == ["all_yes", "tfidf", "bi_encoder"]
    assert experiments.submitted_kind(prof, "QC") == "bi_encoder" and experiments.submitted_kind(prof, "QI") == "stacked"
    oofs = experiments.out_of_fold("QC", prof, df, folds, experiments.model_kinds(prof, "QC"))
    monkeypatch.setattr(relevance.RelevanceModel, "fit", lambda *a, **k: pytest.fail("trained again"))
    directory = submission.final_model("QC", prof, df, folds, Thresholds(0.5), experiments.HOLDOUT_FOLD)
    model = load_model(directory)
    assert model.kind == "bi_encoder" and not (directory / "parts").exists()
    held = folds == experiments.HOLDOUT_FOLD
    np.testing.assert_allclose(model.predict_proba(df[held].reset_index(drop=True)), oofs["bi_encoder"][held], atol=1e-9)
