"""What training either backbone needs, shared by :mod:`~mlsearch_lib.models.encoder` and
:mod:`~mlsearch_lib.models.causal_lm`: the row-weighted loss, the row cap, the fit fingerprint
and the backbone's metadata file, and one Hugging Face Trainer run with checkpoints that resume
after an interruption, evaluation callbacks and the learning curve read off its log."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import get_last_checkpoint

from mlsearch_lib.config.seeds import seed_everything

log = logging.getLogger(__name__)

META_FILE = "mlsearch_backbone.json"
FINGERPRINT_FILE = "mlsearch_fit_fingerprint.txt"


class LengthGrouped(Trainer):
    """Training batches of rows of similar length (shuffled in blocks of 50 batches, then sorted:
    transformers' ``LengthGroupedSampler``), so a step pads little. Rows are token ids or the
    cached lower-layer states of ``train_top_layers``."""

    def _get_train_sampler(self, train_dataset=None):  # noqa: ANN001, ANN202
        rows = self.train_dataset if train_dataset is None else train_dataset
        lengths = [len(r["hidden"] if "hidden" in r else r["input_ids"]) for r in rows]
        return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths=lengths)


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None,
                           target: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``weight * CE`` over the batch; against soft p(label 1) ``target`` when given.

    Weights are normalised to mean 1 over the whole training set (:func:`normalised_weights`), so
    the batch mean is an unbiased estimate of the globally weighted loss and the learning rate
    means the same with or without weights.
    """
    if target is None:
        loss = F.cross_entropy(logits.float(), labels, reduction="none")
    else:
        logp = F.log_softmax(logits.float(), dim=-1)
        t = target.to(logp.dtype)
        loss = -(t * logp[:, 1] + (1 - t) * logp[:, 0])
    if weight is None:
        return loss.mean()
    return (loss * weight.to(loss.dtype)).mean()


def normalised_weights(weights: np.ndarray | None, n: int) -> np.ndarray:
    """Row weights scaled to mean 1 (all ones when ``None``)."""
    if weights is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"weights must be {n} finite non-negative numbers with a positive sum")
    return w / w.mean()


def cap_rows(labels: np.ndarray, max_rows: int | None, seed: int) -> np.ndarray:
    """Indices of at most ``max_rows`` rows, a seeded sample stratified by label (sorted)."""
    n = len(labels)
    if max_rows is None or n <= max_rows:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes, sizes = np.unique(labels, return_counts=True)
    quota = sizes * max_rows / n
    counts = np.floor(quota).astype(int)
    for j in np.argsort(-(quota - counts), kind="stable")[:max_rows - counts.sum()]:
        counts[j] += 1  # largest remainders: the counts add up to max_rows exactly
    keep = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c, k in zip(classes, counts)]
    return np.sort(np.concatenate(keep))


def fit_fingerprint(inputs: Sequence[Any], labels: np.ndarray, weights: np.ndarray, cfg: dict, seed: int) -> str:
    """sha256 naming one training job: a checkpoint is only resumed by the job that wrote it."""
    h = hashlib.sha256()
    h.update(json.dumps([list(x) if isinstance(x, tuple) else repr(x) for x in inputs], ensure_ascii=False).encode())
    h.update(np.ascontiguousarray(labels, dtype=np.float64).tobytes())  # 0/1 labels or soft targets
    h.update(np.ascontiguousarray(weights, dtype=np.float64).tobytes())
    h.update(json.dumps(cfg, sort_keys=True).encode())
    h.update(str(seed).encode())
    return h.hexdigest()


def write_meta(directory: Path, kind: str, cfg: dict, seed: int) -> None:
    (directory / META_FILE).write_text(json.dumps({"kind": kind, "cfg": cfg, "seed": seed}, indent=2) + "\n",
                                       encoding="utf-8")


def read_meta(directory: Path, kind: str, cfg_cls: type) -> tuple[Any, int]:
    meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
    if meta.get("kind") != kind:
        raise ValueError(f"{directory} holds a {meta.get('kind')!r} backbone, not {kind!r}")
    return cfg_cls(**meta["cfg"]), int(meta["seed"])


class _EvalCallback(TrainerCallback):
    """Logs ``eval_auc`` every ``every`` steps and at the end, with the backbone's own scorer.

    Using ``predict_proba`` (not ``Trainer.evaluate``) lets the causal LM score with its prefix
    KV cache; the entries land in ``state.log_history`` and so survive a resume.
    """

    def __init__(self, evaluate: Callable[[], np.ndarray], labels: np.ndarray, every: int):
        self.evaluate, self.labels, self.every = evaluate, np.asarray(labels), max(1, every)

    def on_step_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, ANN201
        if state.global_step % self.every == 0 or state.global_step >= state.max_steps:
            from sklearn.metrics import roc_auc_score

            p = self.evaluate()
            auc = float(roc_auc_score(self.labels, p)) if len(np.unique(self.labels)) == 2 else float("nan")
            state.log_history.append({"eval_auc": auc, "epoch": state.epoch, "step": state.global_step})
            log.info("step %d: eval AUC %.4f", state.global_step, auc)
        return control


def run_trainer(trainer_cls: type[Trainer], model: torch.nn.Module, rows: list[dict[str, Any]],
                collate: Callable, hp: dict[str, Any], seed: int, output_dir: Path | None, tag: str, *,
                max_steps: int | None, save_steps: int, evaluate: Callable[[], np.ndarray] | None,
                eval_labels: np.ndarray | None) -> dict[str, Any]:
    """Train ``model`` on ``rows`` with ``trainer_cls``; resume from ``output_dir``'s last checkpoint.

    A checkpoint is resumed only when ``output_dir`` was written by the same job (same data,
    config and seed: ``tag``); stale checkpoints of another job are removed first.

    Under a distributed launch (DDP/FSDP) every process calls this; only the main process
    cleans ``output_dir`` and writes the fingerprint (the others wait, then read the same
    decision), and the Trainer checkpoints on the main process only. With FSDP the result also
    holds ``full_state_dict``, the gathered weights, for the caller's ``save``.
    """
    bs, accum = int(hp["batch_size"]), int(hp["grad_accum"])
    steps_per_epoch = math.ceil(len(rows) / (bs * accum))
    total = max_steps if max_steps is not None else max(1, math.ceil(hp["epochs"] * steps_per_epoch))
    tmp = None
    if output_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="mlsearch-fit-")
        out = Path(tmp.name)
    else:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=bs, gradient_accumulation_steps=accum,
        num_train_epochs=float(hp["epochs"]), max_steps=total if max_steps is not None else -1,
        learning_rate=hp["lr"], weight_decay=hp["weight_decay"], lr_scheduler_type=hp["scheduler"],
        warmup_steps=min(float(hp["warmup_ratio"]), 0.999), bf16=bool(hp["bf16"]),
        logging_strategy="steps", logging_steps=max(1, total // 50), logging_first_step=True,
        save_strategy="steps" if output_dir is not None else "no", save_steps=max(1, save_steps),
        save_total_limit=1, seed=seed, data_seed=seed, report_to=[], disable_tqdm=False,
        dataloader_num_workers=0, remove_unused_columns=False, label_names=["labels"],
        use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=bool(hp.get("gradient_checkpointing", False)),
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
    resume = None
    if output_dir is not None:
        with args.main_process_first(desc="checkpoint fingerprint"):  # a no-op in a single process
            stamp = out / FINGERPRINT_FILE
            last = get_last_checkpoint(str(out))
            if last and stamp.is_file() and stamp.read_text().strip() == tag:
                resume = last
            elif last:
                log.warning("%s holds checkpoints of another training job; starting afresh", out)
                for ck in out.glob("checkpoint-*"):
                    shutil.rmtree(ck, ignore_errors=True)
            if args.should_save:
                stamp.write_text(tag + "\n")
    if hp.get("group_by_length"):
        trainer_cls = type(trainer_cls.__name__, (LengthGrouped, trainer_cls), {})
    callbacks = []
    if evaluate is not None and eval_labels is not None:
        callbacks.append(_EvalCallback(evaluate, eval_labels, every=max(1, total // 10)))
    trainer = trainer_cls(model=model, args=args, train_dataset=rows, data_collator=collate, callbacks=callbacks)
    t0 = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=resume)
    finally:
        if tmp is not None:
            tmp.cleanup()
    model.eval()
    res = {"history": learning_curve(trainer.state.log_history), "resumed_from": resume,
           "global_step": int(trainer.state.global_step), "train_rows": len(rows),
           "train_seconds": round(time.perf_counter() - t0, 2), "train_loss": float(result.training_loss)}
    if getattr(trainer, "is_fsdp_enabled", False):  # sharded weights: gather them (every rank takes part)
        res["full_state_dict"] = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    return res


def learning_curve(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge Trainer log entries into one ``{step, epoch, loss[, eval_auc][, learning_rate]}`` per step."""
    by_step: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        if "loss" not in entry and "eval_auc" not in entry:
            continue  # the end-of-training summary
        row = by_step.setdefault(int(entry["step"]), {"step": int(entry["step"])})
        row["epoch"] = float(entry.get("epoch") or 0.0)
        for key in ("loss", "eval_auc", "learning_rate"):
            if key in entry:
                row[key] = float(entry[key])
    return [by_step[s] for s in sorted(by_step)]
