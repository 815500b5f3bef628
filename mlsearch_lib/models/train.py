"""Train one relevance model on a task's training rows and save it: the entry point for GPUs.

    python -m mlsearch_lib.models.train --profile gpu --task QC --kind llm --output build/gpu/models/QC \\
        [--max-rows N] [--set llm.batch_size=1 --set llm.grad_accum=8 ...]
    python -m mlsearch_lib.models.train --profile cpu --task QC --output models/QC     # what notebook 05 submits

``--kind`` is any backbone (``tfidf``, ``bi_encoder``, ``hybrid``, ``hybrid_nl``, ``hybrid_cat``, ``hybrid_pmi``,
``hybrid_ctr``, ``encoder``, ``llm``) or ``stacked``: the profile's ``backbone`` stacked with its ``stack_with`` model, built
by notebook 04 and 05's own code (:func:`mlsearch_lib.evaluation.experiments.out_of_fold`, then
:func:`mlsearch_lib.evaluation.submission.final_model`): both parts cross-validated on the
profile's folds, a logistic regression fit on their out-of-fold logits, thresholds tuned on the
stack's out-of-fold p(yes) (``thresholds.json``), and both parts trained on every row. Without
``--kind`` the profile's submitted model is trained (the stack when it has ``stack_with``). A
stack runs in ``build/<profile>.train/`` (its folds are cached there: a rerun resumes) so the
book's own ``build/<profile>/`` is never touched, then moves to ``OUTPUT``.

The training rows are the profile's (``data``: the official files under ``MLSEARCH_DATA_DIR``,
JSON lines with ``id, language, origin_query, category_path`` (QC) or ``item_title`` (QI) and
``label``), sampled as the profile says.

A single backbone runs unchanged on several processes, one per GPU (or CPU process, with gloo)::

    accelerate launch --num_processes 4 -m mlsearch_lib.models.train --profile gpu ...            # DDP
    accelerate launch --config_file configs/accelerate/fsdp_14b.yaml -m mlsearch_lib.models.train ...
    torchrun --nproc_per_node 4 -m mlsearch_lib.models.train --profile gpu ...

The Hugging Face Trainer reads the launcher's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``) and trains with DDP (or FSDP when accelerate says so): every process takes
``llm.batch_size`` rows a step, so the effective batch is ``batch_size x grad_accum x processes``.
Only rank 0 writes the model and ``train_log.json``; ``OUTPUT/checkpoints/`` (written by the
Trainer on rank 0) lets an interrupted job resume and is removed when the model is saved. For
more than one machine ``OUTPUT`` must be on a file system every node sees.

``OUTPUT`` then holds a model for ``python -m mlsearch_lib predict --model OUTPUT`` and
``python -m mlsearch_lib score --model OUTPUT`` (a single backbone has no ``thresholds.json``:
pass ``--threshold``; models outside the build dir need ``--trust-model``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, get_args

from mlsearch_lib.config.profiles import Backbone
from mlsearch_lib.models.stacking import KIND as STACKED

log = logging.getLogger("mlsearch_lib.models.train")  # not __name__: run with -m it is "__main__"

#: what ``--kind`` takes: every backbone a profile can submit, and the stack of two
TRAINABLE = (*get_args(Backbone), STACKED)


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _init_distributed() -> None:
    """Start the process group before any model is loaded, so each process picks its own GPU and
    transformers' FSDP-aware loading knows its rank (the Trainer would start it later anyway)."""
    import torch

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)  # "cuda" now means this process's GPU, not everyone's cuda:0
    if world_size() > 1:
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available())


def train(profile_name: str, task: str, kind: str | None, output: Path, max_rows: int | None = None,
          sets: list[str] | None = None) -> dict[str, Any]:
    """Train and (on rank 0) save; returns the training log (every rank). ``kind`` None: what
    the profile submits (:func:`~mlsearch_lib.evaluation.experiments.submitted_kind`)."""
    from mlsearch_lib.config.profiles import load_profile, parse_sets
    from mlsearch_lib.data.records import load_training
    from mlsearch_lib.models.relevance import FROZEN_E5, RelevanceModel

    sets = list(sets or [])
    if max_rows is not None:
        sets.append(f"data.max_rows.{task}={max_rows}")
    overrides = parse_sets(sets)
    profile = load_profile(profile_name, overrides)
    if kind is None:
        from mlsearch_lib.evaluation.experiments import submitted_kind

        kind = submitted_kind(profile, task)
    if kind not in TRAINABLE:
        raise ValueError(f"unknown --kind {kind!r} (known: {', '.join(TRAINABLE)})")
    if kind == STACKED:
        return train_stack(profile, task, Path(output))
    _init_distributed()
    df = load_training(task, profile.data, profile.seed)
    cfg = getattr(profile, kind, None)  # encoder / llm settings; the scikit-learn kinds have none of their own
    log.info("rank %d/%d: %s %s on %d %s rows (profile %s)", rank(), world_size(), kind,
             getattr(cfg, "model", profile.encoder.model if kind in FROZEN_E5 else "-"),
             len(df), task, profile.name)
    model = RelevanceModel(kind, task, profile)
    if kind in ("encoder", "llm"):
        model.backbone.profile_name = profile.name  # named by the memory check's error message
    output = Path(output)
    t0 = time.perf_counter()
    fit_log = model.fit(df, output_dir=output / "checkpoints")
    record = {"profile": profile.name, "task": task, "kind": kind, "rows": len(df), "world_size": world_size(),
              "per_device_batch": getattr(cfg, "batch_size", None), "grad_accum": getattr(cfg, "grad_accum", 1),
              "seconds": round(time.perf_counter() - t0, 2), **(fit_log if isinstance(fit_log, dict) else {})}
    if rank() == 0:
        model.save(output)
        (output / "train_log.json").write_text(json.dumps(record, indent=2, default=float) + "\n", encoding="utf-8")
        shutil.rmtree(output / "checkpoints", ignore_errors=True)
        log.info("saved %s", output)
    return record


def train_stack(profile, task: str, output: Path) -> dict[str, Any]:
    """The stack notebook 05 submits, built by the notebooks' own functions (04's out-of-fold
    runs and stacked table, 05's thresholds and final model) in ``build/<profile>.train/``, then
    moved to ``output`` with its ``thresholds.json`` and ``train_log.json``."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from mlsearch_lib.config.paths import replace_dir
    from mlsearch_lib.evaluation import experiments, submission

    kinds = experiments.submitted_parts(profile, task)
    if len(kinds) < 2:
        raise ValueError(f"profile {profile.name} has no stack_with for {task}: nothing to stack its {kinds[0]} with "
                         "(--set stack_with=hybrid_nl, or --kind BACKBONE)")
    if world_size() > 1:
        raise ValueError("a stack trains on one process: launch --kind stacked without accelerate/torchrun")
    run = profile.model_copy(update={"name": f"{profile.name}.train"})  # never the book's build/<profile>/
    t0 = time.perf_counter()
    df, folds = experiments.prepare(task, run)
    log.info("stack of %s on %d %s rows (profile %s, run dir %s)", " + ".join(kinds), len(df), task, profile.name,
             experiments.run_dir(run))
    oofs = experiments.out_of_fold(task, run, df, folds, kinds)
    name, p, _, _ = experiments.stacked_table(df, folds, oofs, *kinds)
    experiments.save_oof(run, task, STACKED, df, folds, p)
    _, thresholds = submission.thresholds_table(df, p, run.validation.threshold_shrinkage, folds)
    built = submission.final_model(task, run, df, folds, thresholds, hold_out_fold=None)
    meta = json.loads((built / "mlsearch_model.json").read_text(encoding="utf-8"))
    scored = np.isfinite(p)  # split mode: the dev rows
    y = df["label"].to_numpy()[scored]
    auc = {k: float(roc_auc_score(y, q[scored])) for k, q in {**oofs, STACKED: p}.items()}
    record = {"profile": profile.name, "task": task, "kind": STACKED, "parts": kinds, "rows": len(df),
              "folds": run.validation.folds, "oof_roc_auc": auc,
              "coef": dict(zip(kinds, meta["coef"])), "intercept": meta["intercept"],
              "thresholds": thresholds.to_dict(), "seconds": round(time.perf_counter() - t0, 2)}
    (built / "train_log.json").write_text(json.dumps(record, indent=2, default=float) + "\n", encoding="utf-8")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.move(str(built), str(partial))  # whole, then renamed: never a half-written OUTPUT
    replace_dir(partial, output)
    log.info("saved %s (%s)", output, name)
    return record


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlsearch_lib.models.train", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1] + "\n\n"
        "Training rows: the profile's data files, JSON lines with fields id, language, origin_query, category_path "
        "(QC) or item_title (QI) and label.\nOUTPUT: a model directory (mlsearch_model.json, the weights, "
        "train_log.json; a stack also parts/<kind>/ and thresholds.json) for `python -m mlsearch_lib predict|score "
        "--model OUTPUT`.")
    parser.add_argument("--profile", required=True, help="a name in profiles/ or a YAML path")
    parser.add_argument("--task", required=True, choices=("QC", "QI"),
                        help="QC: query-category relevance; QI: query-item relevance")
    parser.add_argument("--kind", choices=TRAINABLE,
                        help="the backbone to train, or 'stacked' (the profile's backbone stacked with its "
                             "stack_with model); default: what the profile submits")
    parser.add_argument("--output", required=True, type=Path, help="directory for the saved model (created; a stack replaces it whole)")
    parser.add_argument("--max-rows", type=int, help="use a stratified sample of this many training rows")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a profile key, e.g. llm.batch_size=1 (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"[rank {rank()}] %(levelname)s %(name)s: %(message)s")
    train(args.profile, args.task, args.kind, args.output, args.max_rows, args.sets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
