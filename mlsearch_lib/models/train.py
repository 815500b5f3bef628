"""Train one relevance model on a task's training rows and save it: the entry point for GPUs.

    python -m mlsearch_lib.models.train --profile gpu --task QC --kind llm --output build/gpu/models/QC \\
        [--max-rows N] [--set llm.batch_size=1 --set llm.grad_accum=8 ...]

The same command runs unchanged on several processes, one per GPU (or CPU process, with gloo)::

    accelerate launch --num_processes 4 -m mlsearch_lib.models.train --profile gpu ...            # DDP
    accelerate launch --config_file configs/accelerate/fsdp_14b.yaml -m mlsearch_lib.models.train ...
    torchrun --nproc_per_node 4 -m mlsearch_lib.models.train --profile gpu ...

The Hugging Face Trainer reads the launcher's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``) and trains with DDP (or FSDP when accelerate says so): every process takes
``llm.batch_size`` rows a step, so the effective batch is ``batch_size x grad_accum x processes``.
Only rank 0 writes the model and ``train_log.json``; ``OUTPUT/checkpoints/`` (written by the
Trainer on rank 0) lets an interrupted job resume and is removed when the model is saved. For
more than one machine ``OUTPUT`` must be on a file system every node sees.

``OUTPUT`` then holds a model for ``python -m mlsearch_lib predict --model OUTPUT``.
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
from typing import Any

log = logging.getLogger("mlsearch_lib.models.train")  # not __name__: run with -m it is "__main__"


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


def train(profile_name: str, task: str, kind: str, output: Path, max_rows: int | None = None,
          sets: list[str] | None = None) -> dict[str, Any]:
    """Train and (on rank 0) save; returns the training log (every rank)."""
    from mlsearch_lib.config.profiles import load_profile, parse_sets
    from mlsearch_lib.data.records import load_training
    from mlsearch_lib.models.relevance import RelevanceModel

    sets = list(sets or [])
    if max_rows is not None:
        sets.append(f"data.max_rows.{task}={max_rows}")
    overrides = parse_sets(sets)
    profile = load_profile(profile_name, overrides)
    _init_distributed()
    df = load_training(task, profile.data, profile.seed)
    log.info("rank %d/%d: %s %s on %d %s rows (profile %s)", rank(), world_size(), kind,
             getattr(profile, kind).model, len(df), task, profile.name)
    model = RelevanceModel(kind, task, profile)
    model.backbone.profile_name = profile.name  # named by the memory check's error message
    output = Path(output)
    t0 = time.perf_counter()
    fit_log = model.fit(df, output_dir=output / "checkpoints")
    record = {"profile": profile.name, "task": task, "kind": kind, "rows": len(df), "world_size": world_size(),
              "per_device_batch": getattr(profile, kind).batch_size,
              "grad_accum": getattr(getattr(profile, kind), "grad_accum", 1),
              "seconds": round(time.perf_counter() - t0, 2), **fit_log}
    if rank() == 0:
        model.save(output)
        (output / "train_log.json").write_text(json.dumps(record, indent=2, default=float) + "\n", encoding="utf-8")
        shutil.rmtree(output / "checkpoints", ignore_errors=True)
        log.info("saved %s", output)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlsearch_lib.models.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", required=True, help="a name in profiles/ or a YAML path")
    parser.add_argument("--task", required=True, choices=("QC", "QI"))
    parser.add_argument("--kind", required=True, choices=("llm", "encoder"))
    parser.add_argument("--output", required=True, type=Path, help="directory for the saved model")
    parser.add_argument("--max-rows", type=int, help="use a stratified sample of this many training rows")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a profile key, e.g. llm.batch_size=1 (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"[rank {rank()}] %(levelname)s %(name)s: %(message)s")
    train(args.profile, args.task, args.kind, args.output, args.max_rows, args.sets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
