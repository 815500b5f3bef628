"""One interface over every backbone (``fit``, ``predict_proba``, ``save``/``load``), and
cross-validation that yields out-of-fold p(yes) for every training row, fold by fold,
cached on disk so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from mlsearch_lib.config.paths import build_dir, ensure
from mlsearch_lib.config.profiles import Profile
from mlsearch_lib.config.progress import tqdm
from mlsearch_lib.data.folds import TRAIN_ONLY, grouped_folds
from mlsearch_lib.features.prompts import PromptBuilder

KINDS = ("all_yes", "tfidf", "bi_encoder", "hybrid", "hybrid_nl", "hybrid_cat", "hybrid_pmi", "hybrid_ctr", "hybrid_ctr_gbt",
         "encoder", "llm")
LABELS = {"all_yes": 'all "yes"', "tfidf": "TF-IDF char n-gram + LR", "bi_encoder": "frozen e5 embeddings + LR",
          "hybrid": "TF-IDF + frozen e5 + LR", "hybrid_nl": "TF-IDF + frozen e5 + neighbour labels + LR",
          "hybrid_cat": "TF-IDF + frozen e5 + neighbour labels + category priors + LR",
          "hybrid_pmi": "TF-IDF + frozen e5 + neighbour labels + category priors + gemma PMI + LR",
          "hybrid_ctr": "TF-IDF + frozen e5 + neighbour labels + category priors + contrastive e5 + LR",
          "hybrid_ctr_gbt": "TF-IDF + frozen e5 + neighbour labels + category priors + contrastive e5 + LR + trees",
          "encoder": "e5 cross-encoder", "llm": "causal LM + LoRA"}
#: the kinds that read frozen e5 vectors (from the embedding cache) beside or instead of TF-IDF
FROZEN_E5 = ("bi_encoder", "hybrid", "hybrid_nl", "hybrid_cat", "hybrid_pmi", "hybrid_ctr", "hybrid_ctr_gbt")
#: the kinds that train the contrastive towers (their settings: the profile's ``contrastive``)
CONTRASTIVE = ("hybrid_ctr", "hybrid_ctr_gbt")


def _backbone_class(kind: str) -> type:
    """The class behind a backbone kind, imported only when that kind is used."""
    if kind in ("all_yes", "tfidf"):
        from mlsearch_lib.models.reference import AllYes, TfidfPair

        return AllYes if kind == "all_yes" else TfidfPair
    if kind in ("bi_encoder", "hybrid"):
        from mlsearch_lib.models.frozen_e5 import BiEncoderPair, HybridPair

        return BiEncoderPair if kind == "bi_encoder" else HybridPair
    if kind == "hybrid_nl":
        from mlsearch_lib.models.neighbour_labels import NeighbourLabelPair

        return NeighbourLabelPair
    if kind in ("hybrid_cat", "hybrid_pmi"):
        from mlsearch_lib.models.category_pair import CategoryPMIPair, CategoryPriorPair

        return CategoryPriorPair if kind == "hybrid_cat" else CategoryPMIPair
    if kind == "hybrid_ctr":
        from mlsearch_lib.models.contrastive_pair import CategoryContrastivePair

        return CategoryContrastivePair
    if kind == "hybrid_ctr_gbt":
        from mlsearch_lib.models.boosted_pair import BoostedContrastivePair

        return BoostedContrastivePair
    if kind == "encoder":
        from mlsearch_lib.models.encoder import CrossEncoder

        return CrossEncoder
    if kind == "llm":
        from mlsearch_lib.models.causal_lm import CausalLMScorer

        return CausalLMScorer
    raise ValueError(f"unknown backbone {kind!r} (known: {', '.join(KINDS)})")


class UntrustedModel(PermissionError):
    """A model directory whose weights would execute code on load, from outside the build dir."""


def _inside(path: Path, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def _backbone(kind: str, profile: Profile) -> Any:
    cls = _backbone_class(kind)
    if kind == "all_yes":
        return cls()
    if kind == "tfidf":
        return cls(seed=profile.seed)
    if kind in CONTRASTIVE:
        return cls(profile.encoder.model, profile.encoder.max_length, seed=profile.seed,
                   tower=profile.contrastive.model_dump())
    if kind in FROZEN_E5:
        return cls(profile.encoder.model, profile.encoder.max_length, seed=profile.seed)
    return cls(getattr(profile, kind), seed=profile.seed)


class RelevanceModel:
    """A prompt builder (tags, in-context examples) bound to a backbone, for one task."""

    def __init__(self, kind: str, task: str, profile: Profile):
        profile = profile.for_task(task)
        self.kind, self.task, self.profile = kind, task, profile
        self.builder = PromptBuilder(task, profile.prompt, seed=profile.seed)
        self.backbone = _backbone(kind, profile)

    @property
    def distills(self) -> bool:
        """Whether fit trains on soft teacher targets (:func:`distill_targets`): the cross-encoder's ``distill``."""
        return self.kind == "encoder" and self.profile.encoder.distill > 0

    def _inputs(self, df: pd.DataFrame) -> list:
        return self.builder.prompts(df) if self.kind == "llm" else self.builder.pairs(df)

    def fit(self, df: pd.DataFrame, weights: np.ndarray | None = None, output_dir: Path | None = None) -> Any:
        """Choose in-context examples from ``df`` and train; returns the backbone's training log."""
        self.builder.fit(df)
        kwargs: dict[str, Any] = {"output_dir": output_dir} if self.kind in ("encoder", "llm") else {}
        if self.distills:  # the teacher's folds are kept beside the checkpoints, for a resumed fit
            kwargs["targets"] = distill_targets(df, self.task, self.profile, weights,
                                                None if output_dir is None else Path(output_dir) / "teacher")
        return self.backbone.fit(self._inputs(df), df["label"].to_numpy(), weights, **kwargs)

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.backbone.predict_proba(self._inputs(df)), dtype=float)

    def save(self, directory: Path) -> Path:
        directory = ensure(Path(directory))
        meta = {"kind": self.kind, "task": self.task, "profile": self.profile.model_dump(), "builder": self.builder.state()}
        (directory / "mlsearch_model.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
        if self.kind in ("encoder", "llm"):
            self.backbone.save(directory / "backbone")
        else:
            (directory / "backbone.pkl").write_bytes(pickle.dumps(self.backbone))
        return directory

    @classmethod
    def load(cls, directory: Path, trust: bool = False) -> "RelevanceModel":
        """The model saved in ``directory``. The scikit-learn backbones are pickles, and unpickling
        runs code: they are read only from this checkout's build dir (models its runs wrote) or with
        ``trust`` (``predict --trust-model``), never from any directory handed over."""
        directory = Path(directory)
        meta_path = directory / "mlsearch_model.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{directory} is not a saved mlsearch model (no mlsearch_model.json)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            model = cls.__new__(cls)
            model.kind, model.task = meta["kind"], meta["task"]
            model.profile = Profile.model_validate(meta["profile"])
            model.builder = PromptBuilder.from_state(meta["builder"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{meta_path}: not a readable model description ({type(exc).__name__}: {exc})") from None
        if model.kind in ("encoder", "llm"):
            model.backbone = _backbone_class(model.kind).load(directory / "backbone")  # no base model loaded twice
            return model
        pkl = directory / "backbone.pkl"
        if not (trust or _inside(directory, build_dir())):
            raise UntrustedModel(f"{pkl} is a pickle, and loading it runs whatever code it holds; it is outside "
                                 f"this checkout's build dir ({build_dir()}). Pass --trust-model (trust=True) "
                                 "only for a model whose origin you trust.")
        try:
            model.backbone = pickle.loads(pkl.read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            raise ValueError(f"{pkl}: unreadable weights ({type(exc).__name__}: {exc})") from None
        return model


def distill_targets(df: pd.DataFrame, task: str, profile: Profile, weights: np.ndarray | None = None,
                    cache_dir: Path | None = None) -> np.ndarray:
    """Soft training targets for the cross-encoder: each row's label mixed with its teacher's p(yes).

    The teacher (``encoder.teacher``) is cross-validated on ``df`` alone, on folds grouped by query,
    so a row's teacher score comes from a model that never saw that row, its query, or anything
    outside ``df`` (in a cross-validation: never the held-out fold). Its folds are cached under
    ``cache_dir`` (:func:`cross_validate`), or in a temporary folder without one.
    """
    cfg = profile.for_task(task).encoder
    folds = grouped_folds(df, profile.validation.folds, profile.seed)
    with tempfile.TemporaryDirectory(prefix="mlsearch-teacher-") as tmp:
        teacher, _ = cross_validate(cfg.teacher, task, profile, df, folds, Path(cache_dir or tmp), weights=weights,
                                    log=lambda _: None)
    return (1 - cfg.distill) * df["label"].to_numpy(dtype=np.float64) + cfg.distill * teacher


def _cache_key(kind: str, task: str, profile: Profile, df: pd.DataFrame, folds: np.ndarray,
               train_mask: np.ndarray, weights: np.ndarray | None) -> str:
    """Changes whenever anything that determines the fold predictions changes."""
    profile = profile.for_task(task)
    h = hashlib.sha256()
    builder = PromptBuilder(task, profile.prompt)
    settings = {"kind": kind, "task": task, "seed": profile.seed, "prompt": profile.prompt.model_dump(),
                "backbone": getattr(profile, kind).model_dump() if kind in ("encoder", "llm") else
                profile.contrastive.model_dump() if kind in CONTRASTIVE else None}
    if kind in FROZEN_E5:  # frozen e5 vectors: which model, length and way of computing
        from mlsearch_lib.features.embeddings import EMBEDDING_VERSION

        settings["embedding"] = [profile.encoder.model, profile.encoder.max_length, EMBEDDING_VERSION]
    if kind in ("hybrid_nl", "hybrid_cat", "hybrid_pmi", *CONTRASTIVE):  # and what is read off the neighbours
        from mlsearch_lib.models.neighbour_labels import FEATURES

        settings["neighbour_labels"] = FEATURES
    settings["code"] = code_version(kind)
    if kind == "llm":  # the prompt's wording and layout live in a data file
        settings["template"] = builder.template
    h.update(json.dumps(settings, sort_keys=True).encode())
    tags = [df[c].astype(str).to_numpy() for c in builder.used_columns() if c in df]
    for arr in (df["id"].astype(str).to_numpy(), df["label"].to_numpy(), folds, train_mask, *tags):
        h.update(np.ascontiguousarray(arr).tobytes() if arr.dtype != object else "\x00".join(arr).encode())
    if weights is not None:
        h.update(np.asarray(weights, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def code_version(kind: str) -> str:
    """A digest of the source of the model and feature modules the backbone's class is built from
    (its bases' and those whose functions and classes they use), so a fold cached by other code is not reused and a
    table's cache key says which code filled it."""
    import inspect
    import sys

    if kind == "all_yes":
        return "-"
    def computes(name: str) -> bool:  # settings (config) are in the key already; data handling is not the model
        return name.startswith(("mlsearch_lib.models.", "mlsearch_lib.features."))

    cls = _backbone_class(kind)
    names = {c.__module__ for c in cls.__mro__ if computes(c.__module__)}
    for name in list(names):  # and the modules whose functions and classes those use (one level)
        names |= {v.__module__ for v in vars(sys.modules[name]).values()
                  if (inspect.isfunction(v) or inspect.isclass(v)) and computes(getattr(v, "__module__", ""))}
    h = hashlib.sha256()
    for name in sorted(names):
        h.update(name.encode() + b"\0" + inspect.getsource(sys.modules[name]).encode())
    return h.hexdigest()[:12]


def cv_units(folds: np.ndarray) -> list[str]:
    """The training units of a cross-validation: ``fold<i>`` per fold, or the one ``split`` model
    (split mode: rows of fold :data:`~mlsearch_lib.data.folds.TRAIN_ONLY` train it, the others are scored)."""
    folds = np.asarray(folds)
    if (folds == TRAIN_ONLY).any():
        return ["split"]
    return [f"fold{i}" for i in sorted(set(folds.tolist()))]


def unit_rows(folds: np.ndarray, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows the unit's model trains on before ``train_mask``, rows it scores)."""
    if unit == "split":
        return folds == TRAIN_ONLY, folds != TRAIN_ONLY
    i = int(unit.removeprefix("fold"))
    return folds != i, folds == i


def cross_validate(kind: str, task: str, profile: Profile, df: pd.DataFrame, folds: np.ndarray, cache_dir: Path,
                   train_mask: np.ndarray | None = None, weights: np.ndarray | None = None,
                   log: Callable[[str], None] = print, keep_model: int | None = None,
                   units: list[str] | None = None) -> tuple[np.ndarray, list[Any]]:
    """Out-of-fold p(yes) for every scored row: fold ``i`` is predicted by a model trained on the
    other folds' rows that ``train_mask`` allows (split mode: the dev rows by one model trained on
    the :data:`~mlsearch_lib.data.folds.TRAIN_ONLY` rows; those get NaN). Each finished unit
    (:func:`cv_units`) is saved under ``cache_dir/<key>/`` and reused by a rerun with the same
    inputs, so a unit trained by another process (``python -m mlsearch_lib.models.jobs``) is read
    here, not trained again. ``units`` limits the call to those units (a job's share). The model
    that predicted fold ``keep_model`` (split mode: the split model) is kept too (:func:`fold_model_dir`)."""
    folds = np.asarray(folds)
    train_mask = np.ones(len(df), dtype=bool) if train_mask is None else np.asarray(train_mask, dtype=bool)
    run_dir = ensure(_cv_dir(kind, task, profile, df, folds, cache_dir, train_mask, weights))
    keep = None if keep_model is None else _kept_unit(folds, keep_model)
    oof = np.full(len(df), np.nan)
    logs: list[Any] = []
    for unit in tqdm(units or cv_units(folds), desc=f"{task} {kind} folds", leave=False):
        done = run_dir / f"{unit}.npz"
        rows, val = unit_rows(folds, unit)
        if done.exists() and (unit != keep or _kept_model(run_dir, unit) is not None):
            saved = np.load(done, allow_pickle=False)
            oof[val] = saved["p"]
            logs.append(json.loads(str(saved["log"])))
            log(f"{task} {kind} {unit}: cached")
            continue
        train = rows & train_mask
        model = RelevanceModel(kind, task, profile)
        fit_log = model.fit(df[train].reset_index(drop=True), None if weights is None else weights[train],
                            output_dir=run_dir / f"{unit}_ckpt")
        p = model.predict_proba(df[val].reset_index(drop=True))
        if unit == keep:  # saved whole before it is named, so a half-written model is never taken
            kept, partial = run_dir / f"{unit}_model", run_dir / f"{unit}_model.partial"
            shutil.rmtree(partial, ignore_errors=True)
            model.save(partial)
            shutil.rmtree(kept, ignore_errors=True)
            partial.replace(kept)
        tmp = done.with_suffix(f".{os.getpid()}.tmp.npz")  # one name per process: jobs may share the cache
        np.savez(tmp, p=p, log=json.dumps(fit_log or {}, default=float))
        tmp.replace(done)
        shutil.rmtree(run_dir / f"{unit}_ckpt", ignore_errors=True)  # only needed to resume this unit
        del model
        free_memory()  # the next unit's model must not sit beside this one (a 14B twice does not fit)
        oof[val] = p
        logs.append(fit_log or {})
        log(f"{task} {kind} {unit}: trained on {train.sum()} rows, predicted {val.sum()}")
    return oof, logs


def free_memory() -> None:
    """Return a dropped model's memory: Python's cycles first, then the CUDA allocator's cache."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _kept_unit(folds: np.ndarray, fold: int) -> str:
    return "split" if (np.asarray(folds) == TRAIN_ONLY).any() else f"fold{fold}"


def fold_model_dir(kind: str, task: str, profile: Profile, df: pd.DataFrame, folds: np.ndarray, cache_dir: Path,
                   fold: int, train_mask: np.ndarray | None = None, weights: np.ndarray | None = None) -> Path | None:
    """The saved model :func:`cross_validate` kept for ``fold`` (split mode: the split model) with these
    inputs, if any: it is exactly what training on the same rows would give again (same settings and seed)."""
    return _kept_model(_cv_dir(kind, task, profile, df, folds, cache_dir, train_mask, weights), _kept_unit(folds, fold))


def _kept_model(run_dir: Path, unit: str) -> Path | None:
    directory = run_dir / f"{unit}_model"
    return directory if (directory / "mlsearch_model.json").is_file() else None


def _cv_dir(kind: str, task: str, profile: Profile, df: pd.DataFrame, folds: np.ndarray, cache_dir: Path,
            train_mask: np.ndarray | None, weights: np.ndarray | None) -> Path:
    """Where :func:`cross_validate` keeps its folds for these inputs."""
    train_mask = np.ones(len(df), dtype=bool) if train_mask is None else np.asarray(train_mask, dtype=bool)
    return Path(cache_dir) / f"{task}_{kind}_{_cache_key(kind, task, profile, df, folds, train_mask, weights)}"
