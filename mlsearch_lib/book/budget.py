"""GPU-hours a profile's book costs, from the throughputs ``bench gpu`` measured, before it runs.

    python -m mlsearch_lib.bench budget --profile gpu [--rows QC=300000 QI=340000] [--gpus 8]

prints, and writes to ``reports/bench/gpu_budget.md`` (+ ``.json``), the GPU-hours of every job of
:func:`mlsearch_lib.book.jobs.plan` (04's and 06's cross-validations), of notebook 03's generation
and of 05's scoring, per notebook and in total (``total: N GPU-h``), with the wall time on
``--gpus`` GPUs (jobs spread longest first). ``--rows`` plans at another data size than the files
at hand (the official sizes), caps (``data.max_rows``, ``ablation.max_rows``) included.

Every figure says where it comes from. *measured*: the model and setting ``bench gpu`` ran
(``reports/bench/gpu.json``: Qwen2.5-14B on one H200, random weights, 257-token QC prompts).
*projected*: derived from a measured one — another model by its non-embedding parameters (time
per row ∝ parameters, as the FLOPs are), training at ``batch_size`` > 2 from the tokens/s measured
on full-length rows (the same tokens a step), generation from the measured sampling rate per new
token, a job's start (loading the model) at a fixed allowance. An H100 is taken to run as the
H200 did (the same compute; the H200's extra memory bandwidth mostly helps decoding).

:func:`check` is what ``book run`` calls before its first notebook: a plan over
``budget.gpu_hours`` stops the run and says which settings to change.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlsearch_lib.book.jobs import Job, plan
from mlsearch_lib.config.paths import PROJECT_ROOT, ensure, reports_dir
from mlsearch_lib.config.profiles import Profile
from mlsearch_lib.models.model_shapes import model_shape

#: Seconds a GPU job spends starting (loading weights, building the prompts): an allowance.
JOB_START_S = {"llm": 180.0, "encoder": 20.0}
#: Official dev and test files scored by 05 when none is at hand to count (rows per task): an assumption.
DEFAULT_SUBMIT_ROWS = 100_000


class BudgetExceeded(RuntimeError):
    """The plan needs more GPU-hours than the profile's ``budget.gpu_hours``."""


@dataclass
class Rate:
    value: float  # rows per second
    source: str  # "measured" or "projected: why"


def measured(path: Path | None = None) -> dict[str, Any]:
    """``bench gpu``'s last run: ``reports/bench/gpu.json`` of this output root, else the committed one."""
    if path is None:
        here = [d / "bench" / "gpu.json" for d in (reports_dir(), PROJECT_ROOT / "reports")]
        path = next((p for p in here if p.is_file()), here[0])
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no GPU measurements; run `python -m mlsearch_lib.bench gpu` on a GPU first")
    return json.loads(path.read_text(encoding="utf-8"))


def _params(model_id: str) -> float:
    return float(model_shape(model_id).total_params())


def _scale(model_id: str, ref: dict[str, Any]) -> tuple[float, str]:
    """How many times faster than the measured model ``model_id`` runs a row, and why."""
    if model_id == ref["model"]:
        return 1.0, ""
    ratio = _params(ref["model"]) / _params(model_id)
    return ratio, f"{ref['model'].split('/')[-1]} x {ratio:.1f} (parameters)"


def training_rate(profile: Profile, task: str, kind: str, model_id: str, ref: dict[str, Any]) -> Rate:
    """Training rows/s of ``kind`` at the profile's batch size."""
    cfg = profile.for_task(task).llm if kind == "llm" else profile.for_task(task).encoder
    times, why = _scale(model_id, ref)
    train = ref["training"]
    ckpt = bool(getattr(cfg, "gradient_checkpointing", False))
    if cfg.batch_size <= train["batch_size"] and ckpt == bool(train.get("gradient_checkpointing")):
        rate, note = train["rows_per_s"], ""
    else:  # a step of batch_size short rows holds as many tokens as the measured full-length step
        full = max((m for m in ref["memory"] if m["gradient_checkpointing"] == ckpt), key=lambda m: m["tokens_per_s"])
        rate = full["tokens_per_s"] / ref["mean_prompt_tokens"]
        note = (f"batch {cfg.batch_size} from {full['tokens_per_s']:.0f} tokens/s at full length"
                + (", gradient checkpointing" if ckpt else ""))
    notes = "; ".join(n for n in (note, why) if n)
    return Rate(rate * times, f"projected: {notes}" if notes else "measured")


def scoring_rate(model_id: str, ref: dict[str, Any]) -> Rate:
    """p(yes) rows/s with the prefix cache (method (c))."""
    times, why = _scale(model_id, ref)
    rate = next(v["rows_per_s"] for k, v in ref["methods"].items() if k.startswith("(c)") and "slack" not in k)
    return Rate(rate * times, f"projected: {why}" if why else "measured")


def generation_rate(model_id: str, new_tokens: int, ref: dict[str, Any]) -> Rate:
    """Generated rows/s at ``new_tokens`` tokens a row, from method (a): 5 sampled tokens a row."""
    times, why = _scale(model_id, ref)
    per_token = next(v["rows_per_s"] for k, v in ref["methods"].items() if k.startswith("(a)")) * 5
    notes = "; ".join(n for n in (f"{per_token:.0f} new tokens/s (transformers) / {new_tokens} a row", why) if n)
    return Rate(per_token / new_tokens * times, f"projected: {notes}")


@dataclass
class Line:
    notebook: str
    what: str
    gpu_hours: float
    source: str
    job: Job | None = None


def _scales(profile: Profile, rows: dict[str, int] | None, jobs: list[Job]) -> dict[tuple[str, str], float]:
    """Per (notebook, task), how many times the planned rows exceed the rows at hand."""
    if not rows:
        return {}
    out = {}
    for (notebook, task) in {(j.notebook, j.task) for j in jobs}:
        cap = (profile.ablation.max_rows if notebook == "06_ablation" else profile.data.max_rows).get(task)
        here = max(j.train_rows + j.scored_rows for j in jobs if (j.notebook, j.task) == (notebook, task)
                   and j.setting == "all")
        if task in rows:
            out[(notebook, task)] = min(rows[task], cap or rows[task]) / here
    return out


def job_line(profile: Profile, job: Job, ref: dict[str, Any], scale: float = 1.0) -> Line:
    cfg = profile.for_task(job.task).llm if job.kind == "llm" else profile.for_task(job.task).encoder
    train_rows = job.train_rows * scale
    if cfg.max_train_rows:
        train_rows = min(train_rows, cfg.max_train_rows)
    train, score = training_rate(profile, job.task, job.kind, job.model, ref), scoring_rate(job.model, ref)
    seconds = JOB_START_S[job.kind] + train_rows * cfg.epochs / train.value + job.scored_rows * scale / score.value
    notes = [f"train {train.source}", f"score {score.source}"]
    return Line(job.notebook, f"{job.task} {job.table}/{job.setting} {job.label} {job.unit} ({job.model.split('/')[-1]})",
                seconds / 3600, "; ".join(notes) + f"; start: {JOB_START_S[job.kind]:.0f} s allowance", job)


def budget(profile: Profile, ref: dict[str, Any], rows: dict[str, int] | None = None,
           submit_rows: int = DEFAULT_SUBMIT_ROWS) -> list[Line]:
    """Every GPU line of the book: 03's generation, 04's and 06's jobs, 05's scoring."""
    jobs = plan(profile)
    scales = _scales(profile, rows, jobs)
    lines = []
    gen = profile.generation
    if "QI" in profile.tasks and profile.prompt.dg or any("dg" in f for f in profile.ablation.arms.get("QI", {}).values()):
        qi = max(j.train_rows + j.scored_rows for j in jobs if j.notebook == "06_ablation" and j.task == "QI")
        n = min(gen.dg_rows or 1e12, qi * scales.get(("06_ablation", "QI"), 1.0))
        r = generation_rate(gen.model, gen.max_new_tokens, ref)
        lines.append(Line("03_description_generation", f"DG, {n:,.0f} QI rows ({gen.model.split('/')[-1]})", n / r.value / 3600, r.source))
    if any("qt" in f for arms in profile.ablation.arms.values() for f in arms.values()) or profile.prompt.qt:
        for task in profile.tasks:
            here = [j for j in jobs if j.notebook == "06_ablation" and j.task == task]
            if here:
                n = min(gen.qt_rows or 1e12, max(j.train_rows + j.scored_rows for j in here)
                        * scales.get(("06_ablation", task), 1.0))
                r = generation_rate(gen.model, gen.qt_max_new_tokens, ref)
                lines.append(Line("03_description_generation", f"QT, up to {n:,.0f} {task} queries", n / r.value / 3600, r.source))
    for job in jobs:
        if job.gpu:
            lines.append(job_line(profile, job, ref, scales.get((job.notebook, job.task), 1.0)))
    for task in profile.tasks:
        main = profile.for_task(task)
        if main.backbone in ("llm", "encoder"):
            model = main.llm.model if main.backbone == "llm" else main.encoder.model
            r = scoring_rate(model, ref)
            lines.append(Line("05_prediction", f"{task} dev + test, {2 * submit_rows:,} rows (assumed sizes)",
                              2 * submit_rows / r.value / 3600, r.source if r.source != "measured" else "measured; rows assumed"))
    return lines


def wall_hours(lines: list[Line], gpus: int) -> float:
    """Notebook by notebook (03, then 04 + 06's jobs, then 05), each spread over ``gpus`` GPUs
    longest job first: the wall time of the plan."""
    total = 0.0
    phases: dict[str, list[float]] = {"gen": [], "jobs": [], "predict": []}
    for line in lines:
        phases["jobs" if line.job else "gen" if line.notebook.startswith("03") else "predict"].append(line.gpu_hours)
    for name, hours in phases.items():
        if name != "jobs":  # data-parallel work: it divides
            total += sum(hours) / gpus
            continue
        free = [0.0] * gpus
        for h in sorted(hours, reverse=True):
            heapq.heappush(free, heapq.heappop(free) + h)
        total += max(free)
    return total


def report(profile: Profile, lines: list[Line], rows: dict[str, int] | None, gpus: int, ref: dict[str, Any]) -> str:
    total = sum(line.gpu_hours for line in lines)
    by_nb: dict[str, list[Line]] = {}
    for line in lines:
        by_nb.setdefault(line.notebook, []).append(line)
    out = [f"# GPU budget of the `{profile.name}` book",
           "",
           f"- plan from `python -m mlsearch_lib.bench budget --profile {profile.name}"
           + (f" --rows {' '.join(f'{k}={v}' for k, v in rows.items())}" if rows else "") + "`; "
           f"training rows {'as given' if rows else 'of the files at hand'}, caps of the profile applied",
           f"- throughputs: `reports/bench/gpu.json` ({ref['model']}, {'random weights, ' if ref.get('random_weights') else ''}"
           f"{ref['rows']} QC rows, {ref['mean_prompt_tokens']:.0f}-token prompts), measured on one H200; an H100 is "
           "taken to run alike. Each line says whether its figure is measured or projected, and from what.",
           f"- validation: {profile.validation.mode}"
           + (f" (dev share {profile.validation.dev_share})" if profile.validation.mode == "split" else
              f" ({profile.validation.folds} folds)"),
           "",
           "| notebook | GPU jobs or steps | GPU-hours |",
           "|---|---:|---:|"]
    for nb, ls in by_nb.items():
        out.append(f"| {nb} | {len(ls)} | {sum(x.gpu_hours for x in ls):.2f} |")
    out += ["", "| notebook | job or step | GPU-hours | source |", "|---|---|---:|---|"]
    for line in sorted(lines, key=lambda x: (x.notebook, -x.gpu_hours)):
        out.append(f"| {line.notebook} | {line.what} | {line.gpu_hours:.2f} | {line.source} |")
    out += ["", f"wall time on 1 GPU: {wall_hours(lines, 1):.1f} h; on {gpus} GPUs: {wall_hours(lines, gpus):.1f} h "
            "(03 and 05 divide over the GPUs; 04 + 06's jobs are spread longest first)",
            "", f"budget.gpu_hours: {profile.budget.gpu_hours if profile.budget.gpu_hours else 'none'}",
            "", f"total: {total:.1f} GPU-h", ""]
    return "\n".join(out)


def check(profile: Profile) -> float | None:
    """The plan's GPU-hours on the data at hand; :class:`BudgetExceeded` when over ``budget.gpu_hours``."""
    if profile.budget.gpu_hours is None:
        return None
    total = sum(line.gpu_hours for line in budget(profile, measured()))
    if total > profile.budget.gpu_hours:
        raise BudgetExceeded(
            f"profile {profile.name!r} plans {total:.1f} GPU-hours, over its budget.gpu_hours "
            f"{profile.budget.gpu_hours:g} (`python -m mlsearch_lib.bench budget --profile {profile.name}` shows "
            "where they go). Lower data.max_rows or ablation.max_rows, llm.epochs, the ablation arms or "
            "ablation.llm_models; use validation.mode: split, a smaller ablation.arms_llm, or raise budget.gpu_hours.")
    return total


def write(profile: Profile, rows: dict[str, int] | None = None, gpus: int | None = None) -> str:
    ref = measured()
    lines = budget(profile, ref, rows)
    text = report(profile, lines, rows, gpus or max(profile.budget.gpus, 8), ref)
    out = ensure(reports_dir() / "bench")
    stem = "gpu_budget" if profile.name == "gpu" else f"gpu_budget_{profile.name}"
    (out / f"{stem}.md").write_text(text, encoding="utf-8")
    (out / f"{stem}.json").write_text(json.dumps([{**asdict(x), "job": asdict(x.job) if x.job else None}
                                                  for x in lines], indent=1) + "\n", encoding="utf-8")
    return text
