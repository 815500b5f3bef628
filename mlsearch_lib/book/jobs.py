"""The book's training work as a list of jobs, one per (notebook, task, model or arm, fold or split),
each runnable as its own process, so an existing engine can fan them out:

    python -m mlsearch_lib.book.jobs list --profile gpu            # one line per job (index, notebook, task, ...)
    python -m mlsearch_lib.book.jobs run --profile gpu --index 7   # one job: a SLURM array task, a Ray task, a shell loop
    python -m mlsearch_lib.book.jobs ray --profile gpu [--address auto] [--gpus-per-job 1]   # every job through Ray
    sbatch --array=0-$(( $(python -m mlsearch_lib.book.jobs count --profile gpu) - 1 )) scripts/slurm_jobs.sh gpu

A job trains and scores one unit of one of the cross-validations notebooks 04 and 06 run
(:class:`~mlsearch_lib.evaluation.experiments.CVCall`, the same objects the notebooks run), into
the fold cache the notebooks read: after the jobs, ``book run`` finds every unit done and trains
nothing. Jobs need what notebooks 00-03 wrote first (the tags the prompts read); they do not
depend on each other. A job that needs several GPUs (FSDP for a 14B) is launched the same way
under ``accelerate launch`` / ``torchrun``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from mlsearch_lib.config.fanout import ray_commands
from mlsearch_lib.config.profiles import Profile, load_profile, parse_sets
from mlsearch_lib.evaluation import ablation, experiments
from mlsearch_lib.evaluation.experiments import CVCall
from mlsearch_lib.models.relevance import cv_units, unit_rows

#: Model kinds that want a GPU at paper scale; the others are logistic regressions on a CPU.
GPU_KINDS = ("encoder", "llm")


@dataclass(frozen=True)
class Job:
    """One unit of training + scoring, named so the same job list is built in every process."""

    notebook: str  # 04_training or 06_ablation
    task: str
    table: str  # oof (04), arms / backbones (06)
    setting: str  # all, official
    label: str  # the model kind (04) or the arm / Table 3 row (06)
    unit: str  # fold<i> or split
    kind: str
    model: str  # the backbone's model id ("" for the logistic regressions)
    train_rows: int
    scored_rows: int

    @property
    def gpu(self) -> bool:
        return self.kind in GPU_KINDS


def _model_id(call: CVCall, task: str) -> str:
    prof = call.profile.for_task(task)  # per-task overrides may change the model
    return prof.llm.model if call.kind == "llm" else prof.encoder.model if call.kind == "encoder" else ""


@lru_cache(maxsize=8)
def _rows(notebook: str, task: str, profile_json: str) -> tuple[pd.DataFrame, np.ndarray]:
    profile = Profile.model_validate_json(profile_json)
    return ablation.rows(task, profile) if notebook == "06_ablation" else experiments.prepare(task, profile)


def _calls(notebook: str, task: str, profile: Profile, df: pd.DataFrame) -> dict[tuple[str, str, str], CVCall]:
    """(table, setting, label) -> call, for one notebook and task: what the notebook cross-validates."""
    out: dict[tuple[str, str, str], CVCall] = {}
    if notebook == "04_training":
        settings = [("all", experiments.model_kinds(profile, task))]
        if task == "QC":  # 04 shows the official (unseen-language) setting on QC
            settings.append(("official", list(profile.validation.official_models)))
        for setting, kinds in settings:
            out |= {("oof", setting, c.label): c for c in experiments.oof_calls(task, profile, df, kinds, setting)}
        return out
    for setting in ("all", "official"):
        if setting == "official" and not ablation.unseen_mask(df, profile).any():
            continue  # 06 skips the unseen-language tables where every language is trained on
        kinds = None if setting == "all" else list(profile.validation.official_models)
        out |= {("arms", setting, k): c for k, c in ablation.arm_calls(task, profile, df, setting).items()}
        out |= {("backbones", setting, k): c for k, c in ablation.backbone_calls(task, profile, df, setting, kinds).items()}
    return out


def plan(profile: Profile, notebooks: tuple[str, ...] = ("04_training", "06_ablation")) -> list[Job]:
    """Every job of the book's cross-validations, in a fixed order (the same in every process)."""
    jobs = []
    for notebook in notebooks:
        for task in profile.tasks:
            df, folds = _rows(notebook, task, profile.model_dump_json())
            for (table, setting, label), call in _calls(notebook, task, profile, df).items():
                for unit in cv_units(folds):
                    rows, scored = unit_rows(folds, unit)
                    jobs.append(Job(notebook, task, table, setting, label, unit, call.kind, _model_id(call, task),
                                    int((rows & call.mask).sum()), int(scored.sum())))
    return list(dict.fromkeys(jobs))  # a kind in two tables of one notebook is one job


def run(profile: Profile, job: Job) -> None:
    """Train and score ``job``'s unit into the fold cache (nothing when it is there already)."""
    df, folds = _rows(job.notebook, job.task, profile.model_dump_json())
    call = _calls(job.notebook, job.task, profile, df)[(job.table, job.setting, job.label)]
    call.run(job.task, df, folds, units=[job.unit])


def _command(args: argparse.Namespace, index: int) -> list[str]:
    cmd = [sys.executable, "-m", "mlsearch_lib.book.jobs", "run", "--profile", args.profile, "--index", str(index),
           "--notebooks", args.notebooks]
    return cmd + [x for s in args.set for x in ("--set", s)]


def run_with_ray(args: argparse.Namespace, jobs: list[Job]) -> None:
    """Every job as a Ray task (one process each, ``--gpus-per-job`` GPUs for the GPU kinds, so
    Ray runs as many at once as there are GPUs); local by default, a cluster with ``--address``."""
    failed = ray_commands([_command(args, i) for i in range(len(jobs))], [job.gpu for job in jobs],
                          args.gpus_per_job, args.address, args.workers)
    if failed:
        raise SystemExit("failed jobs:\n" + "\n".join(f"{' '.join(c)}\n{e}" for c, e in failed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlsearch_lib.book.jobs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("list", "print the jobs, one JSON line each"), ("count", "print the number of jobs"),
                       ("run", "run one job (or all, in order, with --all)"), ("ray", "run every job through Ray")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--profile", required=True, help="profile name in profiles/ or a YAML path")
        p.add_argument("--set", action="append", default=[], help="override a profile key, e.g. validation.mode=split")
        p.add_argument("--notebooks", default="04_training,06_ablation", help="whose jobs (comma-separated)")
        if name == "run":
            p.add_argument("--index", type=int, help="the job's index in `list` (e.g. $SLURM_ARRAY_TASK_ID)")
            p.add_argument("--all", action="store_true", help="every job, one after the other (a laptop)")
        if name == "ray":
            p.add_argument("--address", default=None, help="a running Ray cluster ('auto'); default: start one here")
            p.add_argument("--workers", type=int, default=None, help="CPUs of a local Ray (default: all)")
            p.add_argument("--gpus-per-job", type=float, default=None,
                           help="GPUs a GPU job asks Ray for (default: 1 where the cluster has GPUs, else 0)")
    args = parser.parse_args(argv)
    profile = load_profile(args.profile, parse_sets(args.set))
    jobs = plan(profile, tuple(args.notebooks.split(",")))
    if args.command == "list":
        for i, job in enumerate(jobs):
            print(json.dumps({"index": i, **asdict(job)}))
    elif args.command == "count":
        print(len(jobs))
    elif args.command == "ray":
        run_with_ray(args, jobs)
    elif args.all:
        for job in jobs:
            run(profile, job)
    else:
        if args.index is None or not 0 <= args.index < len(jobs):
            parser.error(f"--index must be in 0..{len(jobs) - 1} (or --all)")
        run(profile, jobs[args.index])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
