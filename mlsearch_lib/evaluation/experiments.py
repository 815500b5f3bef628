"""The experiments notebooks 04 and 05 narrate: out-of-fold runs, result tables, unseen languages."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlsearch_lib.config.paths import build_dir, ensure, write_atomically
from mlsearch_lib.config.profiles import Profile
from mlsearch_lib.data.folds import (
    OFFICIAL_TRAIN_LANGUAGES,
    TRAIN_ONLY,
    grouped_folds,
    grouped_split,
    query_groups,
    scored,
    trainable,
)
from mlsearch_lib.data.records import Task, load_training, normalize_text, stratified_sample
from mlsearch_lib.evaluation.metrics import auc_delta_interval, by_language, scores
from mlsearch_lib.evaluation.thresholds import best_f1_threshold
from mlsearch_lib.features.prompts import TAG_COLUMNS, PromptBuilder
from mlsearch_lib.models import stacking
from mlsearch_lib.models.relevance import LABELS, RelevanceModel, cross_validate, cv_units, unit_rows


def run_dir(profile: Profile) -> Path:
    return ensure(build_dir() / profile.name)


def model_kinds(profile: Profile, task: str) -> list[str]:
    """Reference rows first, then the task's main backbone and the ones it compares (``per_task``
    may give a task its own ``backbone`` and ``stack_with``)."""
    profile = profile.for_task(task)
    kinds = ["all_yes", "tfidf", profile.backbone, *profile.compare, *filter(None, [profile.stack_with])]
    return list(dict.fromkeys(kinds))


def tags_dir(profile: Profile) -> Path:
    """``build/<profile>/tags/``: per-row tags (SIT, DG, QT) as ``<task>_<name>.csv`` keyed by ``id``."""
    return ensure(run_dir(profile) / "tags")


def save_tags(profile: Profile, task: str, name: str, frame: pd.DataFrame) -> Path:
    """Write tags that :func:`prepare` attaches to every later notebook's rows."""
    path = tags_dir(profile) / f"{task}_{name}.csv"
    frame.to_csv(path.with_suffix(".tmp"), index=False)
    path.with_suffix(".tmp").replace(path)
    return path


def attach_tags(df: pd.DataFrame, task: str, profile: Profile) -> pd.DataFrame:
    """``df`` plus the tag columns notebooks 02 and 03 saved (empty string where a row has none)."""
    df, key = df.copy(), df["id"].astype(str)  # ids are numbers in some files, strings in others
    for path in sorted(tags_dir(profile).glob(f"{task}_*.csv")):
        tags = pd.read_csv(path, dtype=str, keep_default_na=False).set_index("id")
        for col in (c for c in tags.columns if c in TAG_COLUMNS):
            df[col] = key.map(tags[col]).to_numpy()
    for col in TAG_COLUMNS:
        if col in df:
            df[col] = df[col].fillna("")
    return df


def prepare(task: Task, profile: Profile, max_rows: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The task's training rows (sampled per profile, then to ``max_rows``), with their tags,
    and their query-grouped folds."""
    profile = profile.for_task(task)
    df = load_training(task, profile.data, profile.seed)
    if max_rows is not None:
        df = stratified_sample(df, max_rows, profile.seed).reset_index(drop=True)
    df = attach_tags(df, task, profile)
    v = profile.validation
    if v.mode == "split":
        return df, grouped_split(df, v.dev_share, v.folds, profile.seed)
    return df, grouped_folds(df, v.folds, profile.seed)


def label_folds(df: pd.DataFrame, profile: Profile) -> np.ndarray:
    """K query-grouped folds over every row, whatever ``validation.mode``: quality refinement
    judges every training label out of fold (with a cheap model), split mode or not."""
    return grouped_folds(df, profile.validation.folds, profile.seed)


def scored_rows(df: pd.DataFrame, folds: np.ndarray, oofs: dict[str, np.ndarray]
                ) -> tuple[pd.DataFrame, np.ndarray, dict[str, np.ndarray]]:
    """The rows that have out-of-fold p(yes) (all of them, or split mode's dev rows), for the tables."""
    keep = scored(folds)
    if keep.all():
        return df, folds, oofs
    return df[keep].reset_index(drop=True), np.asarray(folds)[keep], {k: np.asarray(p)[keep] for k, p in oofs.items()}


def train_mask(df: pd.DataFrame, profile: Profile, setting: str = "all") -> np.ndarray:
    """Rows a model may train on: ``validation.train_languages`` (all when unset), or in the
    ``official`` setting those languages, defaulting to the official en es fr ja ko pt."""
    langs = profile.validation.train_languages
    return trainable(df, (langs or OFFICIAL_TRAIN_LANGUAGES) if setting == "official" else langs)


#: Without official test files, notebook 05 holds this fold out for its submission check; the
#: submitted models that predicted it in cross-validation are kept, so 05 does not train them again.
HOLDOUT_FOLD = 0


def oof_path(profile: Profile, task: str, kind: str, setting: str = "all") -> Path:
    return ensure(run_dir(profile) / "oof") / f"{task}_{kind}_{setting}.csv"


@dataclass
class CVCall:
    """One cross-validation a notebook runs: which model, with which profile, on which rows and
    weights. Notebooks run it whole; a job (:mod:`mlsearch_lib.book.jobs`) runs one of its units,
    into the same cache, so the notebook then reads that unit instead of training it."""

    label: str
    kind: str
    profile: Profile
    mask: np.ndarray
    weights: Callable[[], np.ndarray | None] = lambda: None  # lazy: QR weights cost a cross-validation
    keep_model: int | None = None

    def run(self, task: Task, df: pd.DataFrame, folds: np.ndarray, units: list[str] | None = None
            ) -> tuple[np.ndarray, list]:
        return cross_validate(self.kind, task, self.profile, df, folds, run_dir(self.profile) / "folds", self.mask,
                              self.weights(), log=lambda s: None, keep_model=self.keep_model, units=units)


def oof_calls(task: Task, profile: Profile, df: pd.DataFrame, kinds: list[str], setting: str = "all",
              weights: np.ndarray | None = None) -> list[CVCall]:
    """What :func:`out_of_fold` cross-validates: one call per kind; for each model notebook 05
    submits (the main model and its ``stack_with`` part) the held-out fold's model (split mode: the
    split model) is kept, so 05 reuses it instead of training it again."""
    mask = train_mask(df, profile, setting)
    submitted = set(submitted_parts(profile, task)) if setting == "all" and weights is None else set()
    return [CVCall(kind, kind, profile, mask, lambda: weights, HOLDOUT_FOLD if kind in submitted else None)
            for kind in kinds]


def out_of_fold(task: Task, profile: Profile, df: pd.DataFrame, folds: np.ndarray, kinds: list[str],
                setting: str = "all", weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Out-of-fold p(yes) per model kind, saved as ``build/<profile>/oof/<task>_<kind>_<setting>.csv``.

    ``setting="official"`` trains on ``validation.train_languages`` (default: the official
    en es fr ja ko pt) only and still predicts every row.
    """
    out = {}
    for call in oof_calls(task, profile, df, kinds, setting, weights):
        p, logs = call.run(task, df, folds)
        save_oof(profile, task, call.kind, df, folds, p, setting, logs)
        out[call.kind] = p
    return out


def save_oof(profile: Profile, task: str, kind: str, df: pd.DataFrame, folds: np.ndarray, p: np.ndarray,
             setting: str = "all", logs: list | None = None) -> Path:
    """One model's out-of-fold p(yes) beside id, language, label and fold (and its training logs)."""
    path = oof_path(profile, task, kind, setting)
    write_atomically(path, lambda tmp: df[["id", "language", "label"]].assign(fold=folds, p_yes=p).to_csv(tmp, index=False))
    text = json.dumps(logs or [], default=float)
    write_atomically(path.with_suffix(".logs.json"), lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def submitted_parts(profile: Profile, task: str) -> list[str]:
    """The models notebook 05 submits for ``task``: ``[stack_with, backbone]`` with a stack, else
    ``[backbone]`` (``per_task`` may set either)."""
    profile = profile.for_task(task)
    return [profile.stack_with, profile.backbone] if profile.stack_with else [profile.backbone]


def submitted_kind(profile: Profile, task: str) -> str:
    """What notebook 05 tunes thresholds on and submits for ``task``: the stack when it has one."""
    parts = submitted_parts(profile, task)
    return stacking.KIND if len(parts) > 1 else parts[0]


def submitted_label(profile: Profile, task: str) -> str:
    parts = submitted_parts(profile, task)
    return stacking.label(parts) if len(parts) > 1 else LABELS[parts[0]]


def training_logs(task: str, profile: Profile, kind: str, setting: str = "all") -> list:
    """Per fold, the backbone's training log (``[{step, loss, ...}]``; empty for reference models)."""
    path = oof_path(profile, task, kind, setting).with_suffix(".logs.json")
    logs = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    return [log if isinstance(log, list) else log.get("history", []) for log in logs]


def leave_one_language_out(task: Task, profile: Profile, df: pd.DataFrame, folds: np.ndarray,
                           oof: np.ndarray, kind: str = "tfidf") -> pd.DataFrame:
    """Per language: trained on every other language vs out-of-fold with all languages.

    Grouped as the folds are: a query of the held-out language that other languages also have
    (de, en, it and pl share ~10% of theirs) is kept out of training in every language, or the
    "unseen" language would be scored on queries the model was trained on."""
    y, lang = df["label"].to_numpy(), df["language"].to_numpy()
    keys = df["origin_query"].map(normalize_text).to_numpy()
    rows = {}
    for target in sorted(set(lang)):
        m = lang == target
        train = ~m & ~np.isin(keys, keys[m])
        model = RelevanceModel(kind, task, profile)
        model.fit(df[train].reset_index(drop=True))
        m &= np.isfinite(oof)  # split mode: the dev rows of that language
        held_out = scores(y[m], model.predict_proba(df[m].reset_index(drop=True)))
        seen = scores(y[m], oof[m])
        rows[target] = {"rows": int(m.sum()), "training rows": int(train.sum()), "roc_auc (seen, out-of-fold)": seen["roc_auc"],
                        "roc_auc (language held out)": held_out["roc_auc"],
                        "cost": seen["roc_auc"] - held_out["roc_auc"],
                        "pr_auc (seen)": seen["pr_auc"], "pr_auc (held out)": held_out["pr_auc"]}
    return pd.DataFrame(rows).T.rename_axis("language")


#: TF-IDF's parts (:attr:`~mlsearch_lib.models.reference.TfidfPair.BLOCKS`), from priors alone to the full model
DECOMPOSITION = {"query only": ("query",), "item only": ("item",), "query + item (additive)": ("query", "item"),
                 "full (+ shared n-grams: interaction)": ("query", "item", "overlap")}


def tfidf_decomposition(task: Task, profile: Profile, df: pd.DataFrame, folds: np.ndarray) -> pd.DataFrame:
    """Out-of-fold ROC-AUC and PR-AUC of TF-IDF reading only the query, only the item, both side by
    side (a sum of a query prior and an item prior in the logit) and in full (with the shared
    n-grams, its only interaction): how much of the signal is priors and how much is the pair."""
    from mlsearch_lib.models.reference import TfidfPair

    profile = profile.for_task(task)
    pairs = np.array(PromptBuilder(task, profile.prompt).pairs(df), dtype=object)
    y, rows = df["label"].to_numpy(), {}
    for name, blocks in DECOMPOSITION.items():
        p = np.full(len(df), np.nan)
        for unit in cv_units(folds):
            train, scored = unit_rows(folds, unit)
            model = TfidfPair(seed=profile.seed, blocks=blocks)
            model.fit([tuple(x) for x in pairs[train]], y[train])
            p[scored] = model.predict_proba([tuple(x) for x in pairs[scored]])
        m = np.isfinite(p)
        s = scores(y[m], p[m])
        rows[name] = {"blocks": " + ".join(blocks), "roc_auc": s["roc_auc"], "pr_auc": s["pr_auc"]}
    table = pd.DataFrame(rows).T.rename_axis("TF-IDF reads")
    table["Δroc_auc vs additive"] = table["roc_auc"] - table.loc["query + item (additive)", "roc_auc"]
    return table


def load_oof(profile: Profile, task: str, kind: str, setting: str = "all") -> pd.DataFrame:
    return pd.read_csv(oof_path(profile, task, kind, setting))


def results_table(df: pd.DataFrame, folds: np.ndarray, oofs: dict[str, np.ndarray],
                  reference: str = "tfidf") -> pd.DataFrame:
    """Per model: F1 at 0.5, F1 at the threshold tuned on the other folds' predictions, ROC-AUC, PR-AUC
    (overall), ROC-AUC mean ± std over folds, and, when ``reference`` is among ``oofs``, each other
    model's ROC-AUC minus the reference's with a 95% interval from a bootstrap over queries."""
    df, folds, oofs = scored_rows(df, folds, oofs)
    y = df["label"].to_numpy()
    groups = query_groups(df) if "origin_query" in df else None
    rows = {}
    for kind, p in oofs.items():
        s = scores(y, p)
        tuned = np.empty(len(y))
        for i in np.unique(folds):  # honest: each fold's threshold comes from the others
            thr, _ = best_f1_threshold(y[folds != i], p[folds != i])
            tuned[folds == i] = thr
        fold_auc = [scores(y[folds == i], p[folds == i])["roc_auc"] for i in np.unique(folds)]
        rows[LABELS.get(kind, kind)] = {
            "f1@0.5": s["f1"], "f1@tuned": scores(y, p, tuned)["f1"], "roc_auc": s["roc_auc"], "pr_auc": s["pr_auc"],
            "roc_auc_fold_mean": float(np.nanmean(fold_auc)), "roc_auc_fold_std": float(np.nanstd(fold_auc)),
        }
        if reference in oofs and kind != reference:
            delta = auc_delta_interval(y, p, oofs[reference], groups)
            rows[LABELS.get(kind, kind)].update(zip(("Δroc_auc", "Δroc_auc 95% lo", "Δroc_auc 95% hi"), delta))
    return pd.DataFrame(rows).T.rename_axis("model")


def stacked_table(df: pd.DataFrame, folds: np.ndarray, oofs: dict[str, np.ndarray], base: str,
                  main: str) -> tuple[str, np.ndarray, pd.DataFrame, pd.DataFrame]:
    """``main`` stacked on ``base`` (:func:`~mlsearch_lib.models.stacking.stacked_oof`): its name,
    out-of-fold p(yes), the results table of ``base`` and the stack with ``Δroc_auc`` over
    ``base``, and the TF-IDF reference's gain columns beside (``… vs TF-IDF``) when ``oofs`` holds
    it; and the weights."""
    name = stacking.label([base, main])
    keep = scored(folds)
    df, folds, oofs = scored_rows(df, folds, oofs)
    p, weights = stacking.stacked_oof(df["label"].to_numpy(), folds, {k: oofs[k] for k in (base, main)})
    table = results_table(df, folds, {base: oofs[base], name: p}, reference=base)
    if "tfidf" in oofs:
        gains = results_table(df, folds, {"tfidf": oofs["tfidf"], base: oofs[base], name: p}).filter(like="Δ")
        table = table.join(gains.loc[table.index].add_suffix(" vs TF-IDF"))
    return name, p if keep.all() else _full(keep, p), table, weights


def every_model_stacked(df: pd.DataFrame, folds: np.ndarray, oofs: dict[str, np.ndarray],
                        kinds: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How far combining can go: ``kinds`` (bar all-"yes") stacked at once, beside TF-IDF and every
    other entry of ``oofs`` (the submitted stack), with gains over TF-IDF; and the weights.

    A bound on what the book's models hold together, not a model to submit: no single part can
    gain more over TF-IDF than all of them read by one regression does, up to fold noise.
    """
    parts = [k for k in kinds if k != "all_yes"]
    df, folds, oofs = scored_rows(df, folds, oofs)
    p, weights = stacking.stacked_oof(df["label"].to_numpy(), folds, {k: oofs[k] for k in parts})
    others = {k: v for k, v in oofs.items() if k not in kinds}  # the submitted stack, under its label
    table = results_table(df, folds, {"tfidf": oofs["tfidf"], **others, "every model (stacked)": p})
    return table, weights.rename(columns=LABELS)


def per_language_table(df: pd.DataFrame, oofs: dict[str, np.ndarray], threshold_of: dict[str, float]) -> pd.DataFrame:
    """F1 (at each model's global tuned threshold), ROC-AUC and PR-AUC per language and model: one row
    per (language, model), the models of a language side by side, "all" last (scored rows only)."""
    df, _, oofs = scored_rows(df, _scored_folds(oofs), oofs)
    y, columns = df["label"].to_numpy(), ["rows", "f1", "roc_auc", "pr_auc"]
    parts = {LABELS.get(kind, kind): by_language(df["language"], y, p, threshold_of.get(kind, 0.5))[columns]
             for kind, p in oofs.items()}
    table = pd.concat(parts, names=["model", "language"]).swaplevel()
    languages = next(iter(parts.values())).index  # by_language's order: sorted, "all" last
    return table.loc[[(lang, model) for lang in languages for model in parts]].astype({"rows": int})


def unseen_language_table(df: pd.DataFrame, oofs_all: dict[str, np.ndarray], oofs_official: dict[str, np.ndarray],
                          train_languages: list[str] | None = None) -> pd.DataFrame:
    """ROC-AUC and PR-AUC on seen vs unseen languages, trained on all languages vs on the official ones."""
    folds = _scored_folds({**oofs_all, **oofs_official})
    df, _, oofs_all = scored_rows(df, folds, oofs_all)
    oofs_official = {k: np.asarray(p)[scored(folds)] for k, p in oofs_official.items()}
    seen = df["language"].isin(train_languages or OFFICIAL_TRAIN_LANGUAGES).to_numpy()
    y = df["label"].to_numpy()
    rows = []
    for kind in oofs_official:
        for setting, oofs in (("all languages", oofs_all), ("official (en es fr ja ko pt)", oofs_official)):
            for group, m in (("seen", seen), ("unseen", ~seen)):
                if m.any():
                    s = scores(y[m], oofs[kind][m])
                    rows.append({"model": LABELS[kind], "trained on": setting, "evaluated on": group,
                                 "rows": s["rows"], "roc_auc": s["roc_auc"], "pr_auc": s["pr_auc"]})
    return pd.DataFrame(rows).set_index(["model", "trained on", "evaluated on"])


def learning_curve(task: Task, profile: Profile, df: pd.DataFrame, folds: np.ndarray, kind: str = "tfidf",
                   fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)) -> pd.DataFrame:
    """Out-of-fold ROC-AUC and PR-AUC as the training share of the other folds grows."""
    rng = np.random.default_rng(profile.seed)
    draw = rng.random(len(df))
    rows = []
    for frac in fractions:
        p, _ = cross_validate(kind, task, profile, df, folds, run_dir(profile) / "folds", draw < frac, log=lambda s: None)
        keep = scored(folds)
        s = scores(df["label"].to_numpy()[keep], p[keep])
        rows.append({"train_fraction": frac, "train_rows": int((draw < frac).sum() * (1 - 1 / len(np.unique(folds)))),
                     "roc_auc": s["roc_auc"], "pr_auc": s["pr_auc"]})
    return pd.DataFrame(rows)


def _scored_folds(oofs: dict[str, np.ndarray]) -> np.ndarray:
    """Fold ids that mark the rows without p(yes) (NaN in every model) as train-only."""
    finite = np.isfinite(np.asarray(next(iter(oofs.values())), dtype=float))
    return np.where(finite, 0, TRAIN_ONLY)


def _full(keep: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``p`` of the scored rows back in place among all rows (NaN for the train-only ones)."""
    out = np.full(len(keep), np.nan)
    out[keep] = p
    return out
