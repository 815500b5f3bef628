"""Ablation (notebook 06): arms are data — named sets of components in the profile — trained on
the same rows, folds and seed, and compared fold by fold so a difference is judged against
fold noise, which the seed's single-number tables never showed.

Every arm goes through :func:`relevance.cross_validate`, whose per-fold cache makes a rerun
skip finished arms and an interrupted run resume at the fold it stopped in.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from mlsearch_lib.config.paths import RESOURCES_DIR
from mlsearch_lib.config.profiles import Profile
from mlsearch_lib.config.progress import tqdm
from mlsearch_lib.data.folds import scored
from mlsearch_lib.data.records import ITEM_FIELD, Task
from mlsearch_lib.evaluation.experiments import CVCall, label_folds, prepare, run_dir, train_mask
from mlsearch_lib.evaluation.metrics import scores
from mlsearch_lib.evaluation.thresholds import best_f1_threshold
from mlsearch_lib.features.refine import apply_action, flag_rows
from mlsearch_lib.models.relevance import LABELS, cross_validate

PROMPT_FLAGS = ("lt", "hct", "sit", "dg", "qt", "icl", "cot")
SEED_RESULTS = RESOURCES_DIR / "seed_results.yaml"


def arm_profile(profile: Profile, flags: list[str]) -> Profile:
    """The profile with exactly the arm's prompt components (plus ``ablation.always``) switched on;
    ``per_task`` prompt flags are dropped, since models merge ``per_task`` over the arm."""
    on = set(flags) | set(profile.ablation.always)
    per_task = {task: {**o, "prompt": {k: v for k, v in o["prompt"].items() if k not in PROMPT_FLAGS}}
                if isinstance(o.get("prompt"), dict) else o for task, o in profile.per_task.items()}
    update = {"prompt": profile.prompt.model_copy(update={f: f in on for f in PROMPT_FLAGS}), "per_task": per_task}
    if profile.ablation.arms_llm:
        update["llm"] = profile.llm.model_copy(update={"model": profile.ablation.arms_llm})
    return profile.model_copy(update=update)


def rows(task: Task, profile: Profile) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows (with their tags) and query-grouped folds every arm and backbone of a task uses."""
    return prepare(task, profile, profile.ablation.max_rows.get(task))


def qr_weights(task: Task, profile: Profile, df: pd.DataFrame) -> np.ndarray:
    """Training weights after quality refinement: the refine rules on out-of-fold p(yes) of
    ``refine.model``, then ``ablation.qr_action`` (drop = weight 0, or down-weight)."""
    folds = label_folds(df, profile)  # every training row judged out of fold, in split mode too
    p, _ = cross_validate(profile.refine.model, task, profile, df, folds, run_dir(profile) / "folds", log=lambda s: None)
    flags = flag_rows(df, ITEM_FIELD[task], p, profile.refine)
    return apply_action(df["label"].to_numpy(), p, flags, profile.ablation.qr_action, profile.refine)[1]


def arm_calls(task: Task, profile: Profile, df: pd.DataFrame, setting: str = "all") -> dict[str, CVCall]:
    """What :func:`run_arms` cross-validates: ``ablation.backbone`` per arm of ``task``; QR arms
    train with the refined weights (computed once, when first needed)."""
    mask = train_mask(df, profile, setting)
    qr = lru_cache(maxsize=1)(lambda: qr_weights(task, profile, df))
    return {name: CVCall(name, profile.ablation.backbone, arm_profile(profile, flags), mask,
                         qr if "qr" in flags else (lambda: None))
            for name, flags in profile.ablation.arms.get(task, {}).items()}


def run_arms(task: Task, profile: Profile, df: pd.DataFrame, folds: np.ndarray, setting: str = "all") -> dict[str, np.ndarray]:
    """Out-of-fold p(yes) of ``ablation.backbone`` per arm of ``task``."""
    return {name: call.run(task, df, folds)[0]
            for name, call in tqdm(arm_calls(task, profile, df, setting).items(), desc=f"{task} arms ({setting})")}


def backbone_runs(profile: Profile, kinds: list[str] | None = None) -> dict[str, tuple[str, Profile]]:
    """Table 3's rows: label -> (backbone kind, profile); extra causal LMs from ``ablation.llm_models``."""
    runs = {LABELS[k] if k != "llm" else f"{profile.llm.model} + LoRA": (k, profile) for k in kinds or profile.ablation.backbones}
    for label, model_id in profile.ablation.llm_models.items():
        runs[f"{label} + LoRA"] = ("llm", profile.model_copy(update={"llm": profile.llm.model_copy(update={"model": model_id})}))
    return runs


def backbone_calls(task: Task, profile: Profile, df: pd.DataFrame, setting: str = "all",
                   kinds: list[str] | None = None) -> dict[str, CVCall]:
    """What :func:`run_backbones` cross-validates: one call per Table 3 row."""
    mask = train_mask(df, profile, setting)
    return {label: CVCall(label, kind, prof, mask) for label, (kind, prof) in backbone_runs(profile, kinds).items()}


def run_backbones(task: Task, profile: Profile, df: pd.DataFrame, folds: np.ndarray, setting: str = "all",
                  kinds: list[str] | None = None) -> dict[str, np.ndarray]:
    """Out-of-fold p(yes) per Table 3 row, with the profile's own prompt components."""
    calls = backbone_calls(task, profile, df, setting, kinds)
    return {label: call.run(task, df, folds)[0] for label, call in tqdm(calls.items(), desc=f"{task} backbones ({setting})")}


def fold_scores(y: np.ndarray, folds: np.ndarray, p: np.ndarray, evaluate: np.ndarray | None = None) -> pd.DataFrame:
    """Per fold: F1 at the threshold tuned on the other folds, ROC-AUC and PR-AUC, on the fold's
    rows that ``evaluate`` selects (all by default)."""
    evaluate = np.ones(len(y), dtype=bool) if evaluate is None else evaluate
    has = scored(folds)  # split mode: the dev rows and their parts
    out = []
    for i in np.unique(folds[has]):
        thr, _ = best_f1_threshold(y[has & (folds != i)], p[has & (folds != i)])
        m = (folds == i) & evaluate
        s = scores(y[m], p[m], thr)
        out.append({"fold": int(i), "f1@tuned": s["f1"], "roc_auc": s["roc_auc"], "pr_auc": s["pr_auc"]})
    return pd.DataFrame(out).set_index("fold")


def compare(y: np.ndarray, folds: np.ndarray, preds: dict[str, np.ndarray], baseline: str,
            evaluate: np.ndarray | None = None) -> pd.DataFrame:
    """Mean ± std over folds per arm, and the paired difference to ``baseline`` on the same folds.

    "beyond fold noise" means a paired t-test over the folds gives p < 0.05 for ROC-AUC.
    """
    per_fold = {name: fold_scores(y, folds, p, evaluate) for name, p in preds.items()}
    base = per_fold[baseline]
    rows = {}
    for name, f in per_fold.items():
        row = {"rows": int(np.sum(scored(folds) & (True if evaluate is None else evaluate)))}
        for metric in ("f1@tuned", "roc_auc", "pr_auc"):
            row[metric], row[f"{metric} std"] = f[metric].mean(), f[metric].std(ddof=1)
        diff = f["roc_auc"] - base["roc_auc"]
        row[f"Δroc_auc vs {baseline}"] = diff.mean()
        row["Δroc_auc std"] = diff.std(ddof=1)
        row[f"Δf1 vs {baseline}"] = (f["f1@tuned"] - base["f1@tuned"]).mean()
        p_value = stats.ttest_rel(f["roc_auc"], base["roc_auc"]).pvalue if name != baseline and diff.std() > 0 else np.nan
        row["p (paired t, roc_auc)"] = p_value
        row["beyond fold noise"] = bool(p_value < 0.05) if name != baseline else False
        rows[name] = row
    return pd.DataFrame(rows).T.rename_axis("arm").infer_objects()


@lru_cache(maxsize=1)
def seed_results() -> dict:
    return yaml.safe_load(SEED_RESULTS.read_text(encoding="utf-8"))


def with_seed_numbers(table: pd.DataFrame, task: Task, which: str) -> pd.DataFrame:
    """``table`` joined with the seed's published F1 (``which``: table3 or table4), labelled as
    theirs; Table 3 keeps the seed's own model rows, Table 4 only the arms we also ran."""
    published = seed_results()[which]
    values = {name: v[task] for name, v in published.items()} if which == "table3" else published.get(task, {})
    theirs = pd.Series(values, dtype=float, name="seed's F1 (theirs: private test, Qwen2.5-14B)")
    out = table.join(theirs)
    if which == "table3":  # their model rows after ours
        out = pd.concat([out, theirs.drop(table.index, errors="ignore").to_frame()])
    return out.rename_axis(table.index.name)


def unseen_mask(df: pd.DataFrame, profile: Profile) -> np.ndarray:
    """Rows in languages the official setting never trains on (ar de it pl in QC)."""
    return ~train_mask(df, profile, "official")
