"""Ablation arms as data, tags feeding the prompt, paired comparisons and the seed's numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsearch_lib.config.profiles import load_profile
from mlsearch_lib.evaluation import ablation, experiments
from mlsearch_lib.features.prompts import PromptBuilder


@pytest.fixture()
def tiny(isolated_outputs):
    return load_profile("tiny", {"ablation": {"backbone": "tfidf", "backbones": ["all_yes", "tfidf"]}})


def test_arm_profile_switches_exactly_the_arm_components(tiny):
    arm = ablation.arm_profile(tiny, ["lt", "sit"])
    assert (arm.prompt.lt, arm.prompt.sit, arm.prompt.hct, arm.prompt.dg, arm.prompt.icl) == (True, True, False, False, False)
    with_always = ablation.arm_profile(tiny.model_copy(update={"ablation": tiny.ablation.model_copy(update={"always": ["icl"]})}), [])
    assert with_always.prompt.icl and not with_always.prompt.lt
    assert tiny.prompt.hct  # the profile itself is untouched


@pytest.mark.parametrize("name, overrides", [("tiny", {}), ("cpu", {}), ("gpu", {}), ("gpu-qlora", {}),
                                             ("tiny", {"per_task": {"QC": {"prompt": {"hct": False, "lt": True}}}})])
def test_an_arms_prompt_flags_survive_per_task_settings(name, overrides):
    """Models apply ``per_task`` after the arm is built: a prompt flag set there must not
    overrule the arm (every shipped profile, and one that sets flags per task)."""
    profile = load_profile(name, overrides)
    for flag in (f for f in ablation.PROMPT_FLAGS if f not in profile.ablation.always):
        for task in ("QC", "QI"):
            assert getattr(ablation.arm_profile(profile, [flag]).for_task(task).prompt, flag), (flag, task)
            assert not getattr(ablation.arm_profile(profile, []).for_task(task).prompt, flag), (flag, task)


def test_saved_tags_reach_the_prompt_and_the_fold_cache_key(tiny):
    df, _ = experiments.prepare("QI", tiny)
    experiments.save_tags(tiny, "QI", "sit", pd.DataFrame({"id": df["id"].head(3), "sit": ["colour: red", "size: 67 mm", ""]}))
    tagged, _ = experiments.prepare("QI", tiny)
    assert list(tagged["sit"].head(3)) == ["colour: red", "size: 67 mm", ""] and (tagged["sit"].iloc[3:] == "").all()
    pairs = PromptBuilder("QI", ablation.arm_profile(tiny, ["sit"]).prompt).pairs(tagged.head(1))
    assert pairs[0][1].endswith("[ATTR] colour: red")
    assert PromptBuilder("QI", ablation.arm_profile(tiny, ["lt"]).prompt).pairs(tagged.head(1))[0][1] == tagged["item_title"][0]


def test_arms_are_cached_and_compared_on_the_same_folds(tiny):
    df, folds = ablation.rows("QC", tiny)
    preds = ablation.run_arms("QC", tiny, df, folds)
    assert list(preds) == ["none", "LT", "HCT", "LT+HCT", "QR+LT+HCT"]
    assert all(p.shape == (len(df),) and np.isfinite(p).all() for p in preds.values())
    assert not np.allclose(preds["none"], preds["LT+HCT"])  # the components change the inputs
    cached = sorted((experiments.run_dir(tiny) / "folds").rglob("fold*.npz"))
    again = ablation.run_arms("QC", tiny, df, folds)
    assert sorted((experiments.run_dir(tiny) / "folds").rglob("fold*.npz")) == cached  # nothing retrained
    assert all(np.array_equal(preds[k], again[k]) for k in preds)

    table = ablation.compare(df["label"].to_numpy(), folds, preds, baseline="none")
    assert table.loc["none", "Δroc_auc vs none"] == 0 and not table.loc["none", "beyond fold noise"]
    assert {"f1@tuned", "f1@tuned std", "roc_auc std", "p (paired t, roc_auc)"} <= set(table.columns)
    seeded = ablation.with_seed_numbers(table, "QC", "table4")
    assert list(seeded.index) == list(table.index)
    assert seeded.iloc[:, -1].notna().sum() == 4 and np.isnan(seeded.loc["none"].iloc[-1])


def test_paired_comparison_sees_a_real_difference_and_ignores_noise():
    rng = np.random.default_rng(0)
    y = (rng.random(3000) < 0.6).astype(int)
    folds = np.arange(3000) % 5
    base = np.clip(0.5 + 0.1 * (y - 0.5) + rng.normal(0, 0.2, 3000), 0, 1)
    better = np.clip(0.5 + 0.4 * (y - 0.5) + rng.normal(0, 0.2, 3000), 0, 1)
    noise = np.clip(base + rng.normal(0, 0.001, 3000), 0, 1)
    t = ablation.compare(y, folds, {"none": base, "better": better, "noise": noise}, baseline="none")
    assert t.loc["better", "beyond fold noise"] and t.loc["better", "Δroc_auc vs none"] > 0.1
    assert abs(t.loc["noise", "Δroc_auc vs none"]) < 0.01


def test_table3_rows_and_seed_numbers(tiny):
    runs = ablation.backbone_runs(tiny.model_copy(update={"ablation": tiny.ablation.model_copy(
        update={"llm_models": {"Qwen2.5-7B-Instruct": "Qwen/Qwen2.5-7B-Instruct"}})}), ["tfidf", "llm"])
    assert list(runs) == ["TF-IDF char n-gram + LR", "google/gemma-3-270m + LoRA", "Qwen2.5-7B-Instruct + LoRA"]
    assert runs["Qwen2.5-7B-Instruct + LoRA"][1].llm.model == "Qwen/Qwen2.5-7B-Instruct"
    table = pd.DataFrame({"roc_auc": [0.6]}, index=pd.Index(["TF-IDF char n-gram + LR"], name="arm"))
    seeded = ablation.with_seed_numbers(table, "QI", "table3")
    assert seeded.index[0] == "TF-IDF char n-gram + LR" and seeded.index.name == "arm"  # ours first, theirs after
    assert seeded.loc["Qwen2.5-14B"].iloc[-1] == pytest.approx(0.8667) and np.isnan(seeded.loc["Qwen2.5-14B", "roc_auc"])
