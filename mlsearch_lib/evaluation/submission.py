"""Notebook 05's side of the experiments: thresholds tuned out of fold, calibration, the model a
profile submits (trained once, or the one cross-validation kept) and the inputs it scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from mlsearch_lib.config.paths import replace_dir
from mlsearch_lib.config.profiles import Profile
from mlsearch_lib.data.folds import scored
from mlsearch_lib.data.records import Task
from mlsearch_lib.evaluation.experiments import HOLDOUT_FOLD, load_oof, run_dir, scored_rows, submitted_parts, train_mask
from mlsearch_lib.evaluation.metrics import by_language
from mlsearch_lib.evaluation.thresholds import Thresholds
from mlsearch_lib.features.prompts import TAG_COLUMNS
from mlsearch_lib.models import stacking
from mlsearch_lib.models.relevance import LABELS, RelevanceModel, fold_model_dir


def thresholds_table(df: pd.DataFrame, p: np.ndarray, shrinkage: float, folds: np.ndarray) -> tuple[pd.DataFrame, Thresholds]:
    """F1 at 0.5, at the global and at the per-language thresholds; the latter two tuned on
    the other folds for each fold (so the reported F1 is not tuned on its own rows)."""
    df, folds, only = scored_rows(df, folds, {"p": p})
    p = only["p"]
    y, lang = df["label"].to_numpy(), df["language"].to_numpy()
    glob, per = np.empty(len(y)), np.empty(len(y))
    for i in np.unique(folds):
        t = Thresholds.tune(lang[folds != i], y[folds != i], p[folds != i], shrinkage)
        glob[folds == i] = t.global_
        per[folds == i] = t.for_rows(lang[folds == i])
    full = Thresholds.tune(lang, y, p, shrinkage)
    table = pd.DataFrame({
        "at 0.5": by_language(lang, y, p, 0.5)["f1"],
        "global threshold": by_language(lang, y, p, glob)["f1"],
        "per-language threshold": by_language(lang, y, p, per)["f1"],
        "tuned threshold (all rows)": pd.Series({**full.per_language, "all": full.global_}),
    })
    return table, full


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[pd.DataFrame, float]:
    """Observed positive rate per p(yes) bin, and the expected calibration error (ECE), over the
    rows that have a p(yes) (split mode scores the dev rows only)."""
    keep = np.isfinite(p)
    y, p = np.asarray(y)[keep], np.asarray(p)[keep]
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    frame = pd.DataFrame({"bin": idx, "p": p, "y": y}).groupby("bin").agg(rows=("y", "size"), mean_p=("p", "mean"), observed=("y", "mean"))
    ece = float((frame["rows"] * (frame["mean_p"] - frame["observed"]).abs()).sum() / len(y))
    return frame, ece


def unlabelled_inputs(task: Task, train_file: str) -> dict[str, Path]:
    """Official dev/test files present beside the training file (what notebook 05 predicts)."""
    from mlsearch_lib.data.eda import discover_splits

    return {split: path for split, path in discover_splits(task, train_file).items() if split != "train"}


def final_model(task: Task, profile: Profile, df: pd.DataFrame, folds: np.ndarray, thresholds: Thresholds,
                hold_out_fold: int | None) -> Path:
    """Train what the profile submits (:func:`submitted_kind`) and save it with its thresholds.

    With ``hold_out_fold`` set (no official test file at hand), that fold is left out so the
    submission written for it is a genuine held-out check; otherwise every row trains, except in
    split mode, where the model cross-validation trained on the non-dev rows is submitted (its
    thresholds and stack weights come from the dev rows it never saw). A stack's
    parts are trained on the same rows, and its weights are fit on their out-of-fold p(yes) of
    those rows (saved by notebook 04).
    """
    mask = train_mask(df, profile)
    train = mask if hold_out_fold is None else mask & (folds != hold_out_fold)
    kinds = submitted_parts(profile, task)
    if hold_out_fold is None and not scored(folds).all():
        hold_out_fold = HOLDOUT_FOLD  # split mode: the split model is submitted (trained once, on the non-dev rows)
    directory = run_dir(profile) / "models" / task
    partial = directory.with_name(directory.name + ".partial")  # the whole model, thresholds included, then renamed
    shutil.rmtree(partial, ignore_errors=True)
    if len(kinds) > 1:
        for kind in kinds:
            _final_part(kind, task, profile, df, folds, train, hold_out_fold, partial / "parts" / kind)
        parts = [load_oof(profile, task, k)["p_yes"].to_numpy() for k in kinds]
        fit = train & np.isfinite(parts[0])  # split mode: the dev rows, the ones with out-of-fold p(yes)
        stacker = stacking.fit_stacker([p[fit] for p in parts], df["label"].to_numpy()[fit])
        stacking.save_stack(partial, task, kinds, stacker)
    else:
        _final_part(kinds[0], task, profile, df, folds, train, hold_out_fold, partial)
    (partial / "thresholds.json").write_text(json.dumps(thresholds.to_dict(), indent=2), encoding="utf-8")
    return replace_dir(partial, directory)


def _final_part(kind: str, task: Task, profile: Profile, df: pd.DataFrame, folds: np.ndarray, train: np.ndarray,
                hold_out_fold: int | None, directory: Path) -> None:
    """One model trained on ``train`` rows, saved to ``directory``. Held out, it is the model
    :func:`out_of_fold` trained for that fold when that one was kept, so it is not trained twice."""
    kept = None if hold_out_fold is None else fold_model_dir(
        kind, task, profile, df, folds, run_dir(profile) / "folds", hold_out_fold, train_mask(df, profile))
    if kept is not None:
        shutil.copytree(kept, directory)
        print(f"{task}: the {LABELS[kind]} cross-validation trained for fold {hold_out_fold} is reused ({kept})")
        return
    checkpoints = directory.with_name(directory.name + "_ckpt")  # only needed to resume this training
    model = RelevanceModel(kind, task, profile)
    model.fit(df[train].reset_index(drop=True), output_dir=checkpoints)
    model.save(directory)  # into the caller's .partial directory: an interrupted fit keeps the old model
    shutil.rmtree(checkpoints, ignore_errors=True)


def tagged_input(task: Task, profile: Profile, path: Path, out: Path) -> Path:
    """``path`` (an official dev/test file) with the generated tags the submitted model reads:
    DG for QI and QT, from the generation cache, generating what it lacks (a rerun resumes: every
    finished row is cached). ``path`` itself when the model reads none (SIT is computed by the
    prompt builder for every row)."""
    from mlsearch_lib.data.records import read_task_file
    from mlsearch_lib.features import generation

    prompt = profile.for_task(task).prompt
    needs_dg, needs_qt = task == "QI" and prompt.dg, prompt.qt
    df = read_task_file(path, task=task)
    if not (needs_dg and "dg_tags" not in df) and not (needs_qt and "query_en" not in df):
        return path
    gen, cache = profile.generation, generation.default_cache()
    generator = generation.make_generator(gen)
    if needs_dg and "dg_tags" not in df:
        described, _ = generation.describe(df, generator, gen, profile.seed, cache)
        df = df.assign(dg_tags=described["dg_tags"].to_numpy(), dg_desc=described["dg_desc"].to_numpy())
    if needs_qt and "query_en" not in df:
        translated, _ = generation.translate(df, generator, gen, profile.seed, cache)
        df = df.assign(query_en=df["id"].map(dict(zip(translated["id"], translated["query_en"]))).fillna("").to_numpy())
    df.drop(columns=[c for c in ("label", "empty_title") if c in df]).to_json(
        out.with_suffix(".tmp"), orient="records", lines=True, force_ascii=False)
    out.with_suffix(".tmp").replace(out)
    return out


def write_holdout_file(df: pd.DataFrame, folds: np.ndarray, fold: int, path: Path) -> tuple[Path, Path]:
    """The held-out fold as an unlabelled input file and a labelled gold file (official schema)."""
    from mlsearch_lib.data.records import ITEM_FIELD

    rows = df[folds == fold]
    item = ITEM_FIELD[df.attrs.get("task") or ("QC" if "category_path" in df else "QI")]
    cols = ["id", "language", "origin_query", item]
    tags = [c for c in TAG_COLUMNS if c in rows]  # its rows' 02/03 tags travel with them, as a test file's would
    rows[cols + tags].to_json(path, orient="records", lines=True, force_ascii=False)
    gold = path.with_name(path.stem + "_gold.txt")
    rows[cols + ["label"]].to_json(gold, orient="records", lines=True, force_ascii=False)
    return path, gold
