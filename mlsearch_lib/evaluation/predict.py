"""Prediction files at any size: streamed, written in shards, resumable, data-parallel.

An input of millions of pairs is read twice as a stream, never whole: the first pass validates
every line (a bad line is named, ``file:line: field``, before any model loads or any shard is
scored), the second scores ``shard_rows`` lines at a time into ``OUTPUT.shards/NNNNNN.jsonl``,
each shard written to a temporary name and renamed when complete. A killed run loses nothing and
redoes nothing: the next run with the same arguments scores only the shards not on disk (the
shard folder's ``manifest.json`` says which input, model, threshold and shard size they belong
to, and a run with other ones stops rather than mix them).

``workers`` processes share the shards (worker ``i`` scores every shard ``k`` with
``k % workers == i``) and leave them in place: a SLURM array runs ``--workers N --worker
$SLURM_ARRAY_TASK_ID``, ``--ray N`` runs the N workers as Ray tasks. A run without ``--worker``
scores whatever is missing, then joins the shards in input order into ``OUTPUT`` (through
``OUTPUT.partial``) and removes them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsearch_lib.config.progress import tqdm
from mlsearch_lib.data.records import ITEM_FIELD, DataFormatError, TaskRows, fingerprint, iter_jsonl, read_task_file, unique_id

SHARD_ROWS = 50_000


def check_threshold(model_dir: Path, threshold: float | None) -> Path:
    """``model_dir/thresholds.json``, which must exist unless a fixed ``threshold`` in (0, 1) is given."""
    if threshold is not None and not 0 < threshold < 1:
        raise ValueError(f"--threshold must be in (0, 1), got {threshold}")
    thr_file = Path(model_dir) / "thresholds.json"
    if threshold is None and not thr_file.is_file():
        raise FileNotFoundError(f"{thr_file}: the model has no tuned thresholds (notebook 05 and "
                                "`python -m mlsearch_lib.models.train --kind stacked` write them); "
                                "pass --threshold to decide at a fixed one")
    return thr_file


def row_thresholds(thr_file: Path, threshold: float | None, languages: np.ndarray) -> np.ndarray:
    """Each row's threshold: ``threshold`` for all, else the saved one of its language (or the global one)."""
    from mlsearch_lib.evaluation.thresholds import Thresholds

    if threshold is not None:
        return np.full(len(languages), threshold)
    try:
        return Thresholds.from_dict(json.loads(thr_file.read_text(encoding="utf-8"))).for_rows(languages)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{thr_file}: not a thresholds file ({type(exc).__name__}: {exc})") from None


def load_for_task(task: str, model_dir: Path, trust: bool) -> Any:
    from mlsearch_lib.models.loading import load_model

    model = load_model(model_dir, trust)
    if model.task != task:
        raise ValueError(f"{model_dir} is a {model.task} model, not {task}")
    return model


def shards_dir(output_path: Path) -> Path:
    return output_path.with_name(output_path.name + ".shards")


def _manifest(task: str, model_dir: Path, input_path: Path, threshold: float | None, shard_rows: int,
              rows: int, thr_file: Path) -> dict[str, Any]:
    return {"task": task, "input": str(Path(input_path).resolve()), "input_sha256": fingerprint([input_path]),
            "model": str(Path(model_dir).resolve()), "threshold": threshold,
            "thresholds_sha256": fingerprint([thr_file]) if threshold is None else None,
            "shard_rows": shard_rows, "rows": rows, "shards": math.ceil(rows / shard_rows)}


def _check_shards(folder: Path, manifest: dict[str, Any]) -> None:
    """The shards already in ``folder`` (if any) are this run's: same input, model, threshold, size."""
    path = folder / "manifest.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        differs = sorted(k for k in manifest if old.get(k) != manifest[k])
        if differs:
            raise FileExistsError(f"{folder} holds shards of another run ({', '.join(differs)} differ); "
                                  "pass --overwrite to start again")


def _claim_shards(folder: Path, manifest: dict[str, Any]) -> None:
    path = folder / "manifest.json"
    if path.is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"manifest.json.{os.getpid()}")
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    tmp.replace(path)


def _write_shard(path: Path, out: pd.DataFrame) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for rid, pred, p in zip(out["id"].tolist(), out["prediction"].tolist(), out["p_yes"].tolist()):
            fh.write(json.dumps({"id": rid, "prediction": int(pred), "p_yes": round(float(p), 6)}) + "\n")
    tmp.replace(path)  # a shard on disk is a whole shard


def predict_shards(task: str, model_dir: Path, input_path: Path, output_path: Path, threshold: float | None = None,
                   overwrite: bool = False, trust: bool = False, shard_rows: int = SHARD_ROWS,
                   worker: int | None = None, workers: int = 1) -> dict[str, int]:
    """Score ``input_path`` into ``output_path`` (one JSON line per input id, in input order), or,
    with ``worker``, score that worker's shards and leave them for the joining run. Returns the
    counts ``{"rows", "shards", "scored", "skipped"}`` (``scored``: shards this call scored)."""
    output_path, input_path = Path(output_path), Path(input_path)
    if output_path.resolve() == input_path.resolve():
        raise ValueError(f"--output {output_path} is the input file: it would be overwritten (--overwrite or not)")
    if shard_rows < 1 or workers < 1 or worker is not None and not 0 <= worker < workers:
        raise ValueError(f"need shard_rows >= 1 and 0 <= worker < workers, got {shard_rows}, {worker}, {workers}")
    thr_file = check_threshold(model_dir, threshold)
    partial, folder = output_path.with_name(output_path.name + ".partial"), shards_dir(output_path)
    for path in (output_path, partial):
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    if overwrite and worker is None:  # a worker never removes what its siblings wrote
        shutil.rmtree(folder, ignore_errors=True)
    rows = TaskRows(input_path, task)  # type: ignore[arg-type]
    for _ in rows:  # the first pass: every line valid, before any model loads
        pass
    total, int_ids = rows.rows, rows.int_ids
    n_shards = math.ceil(total / shard_rows)
    manifest = _manifest(task, model_dir, input_path, threshold, shard_rows, total, thr_file)
    _check_shards(folder, manifest)
    mine = [k for k in range(n_shards) if worker is None or k % workers == worker]
    todo = {k for k in mine if not (folder / f"{k:06d}.jsonl").is_file()}
    model = load_for_task(task, model_dir, trust) if todo else None  # a wrong model stops before any shard
    _claim_shards(folder, manifest)
    batch = []
    with tqdm(total=len(todo), desc=f"predict {task} shards", unit="shard") as bar:
        for i, (_, rec) in enumerate(rows if todo else ()):  # the second pass: one shard at a time
            k = i // shard_rows
            if k in todo:
                batch.append(rec)
            if (i + 1) % shard_rows and i + 1 < total:
                continue
            if batch:
                df = rows.frame(batch, int_ids)
                p = model.predict_proba(df)
                thr = row_thresholds(thr_file, threshold, df["language"].to_numpy())
                _write_shard(folder / f"{k:06d}.jsonl",
                             pd.DataFrame({"id": df["id"], "prediction": (p >= thr).astype(int), "p_yes": p}))
                bar.update(1)
                batch = []
            if k >= max(todo):
                break  # nothing of this worker's after it
    counts = {"rows": total, "shards": n_shards, "scored": len(todo), "skipped": len(mine) - len(todo)}
    if worker is None:
        _join(folder, n_shards, partial, output_path)
    return counts


def predict_file(task: str, model_dir: Path, input_path: Path, output_path: Path, threshold: float | None = None,
                 overwrite: bool = False, trust: bool = False) -> pd.DataFrame:
    """:func:`predict_shards` into ``output_path``, read back as a frame (id, prediction, p_yes):
    for the notebooks and files that fit in memory."""
    predict_shards(task, model_dir, input_path, output_path, threshold, overwrite, trust)
    return read_predictions(output_path).drop(columns="line")


def read_predictions(path: Path) -> pd.DataFrame:
    """A submission as the official checker reads it: every line an object with an ``id`` (an
    integer or a string, as the gold file writes it), a 0/1 ``prediction`` and, optionally, a
    ``p_yes`` in [0, 1]; ids once each. Every problem is ``file:line: field: why``."""
    rows, first = [], {}
    for lineno, rec in iter_jsonl(Path(path)):
        for field in ("id", "prediction"):
            if field not in rec:
                raise DataFormatError(path, lineno, field, "missing")
        rid = unique_id(path, lineno, rec["id"], first, invalid="not an id as the gold file writes them")
        pred = rec["prediction"]
        if isinstance(pred, bool) or pred not in (0, 1) or isinstance(pred, float) and not pred.is_integer():
            raise DataFormatError(path, lineno, "prediction", f"must be 0 or 1, got {pred!r}")
        row = {"id": rid, "prediction": int(pred), "line": lineno}
        if "p_yes" in rec:
            p = rec["p_yes"]
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or not 0 <= p <= 1:
                raise DataFormatError(path, lineno, "p_yes", f"must be a number in [0, 1], got {p!r}")
            row["p_yes"] = float(p)
        rows.append(row)
    if not rows:
        raise DataFormatError(path, 0, None, "no predictions")
    if len({"p_yes" in r for r in rows}) > 1:
        line = next(r["line"] for r in rows if "p_yes" not in r)
        raise DataFormatError(path, line, "p_yes", "present on some lines and absent on others")
    return pd.DataFrame(rows)


def _join(folder: Path, n_shards: int, partial: Path, output_path: Path) -> None:
    """Concatenate the shards in order into ``output_path`` (through ``partial``), then remove them."""
    missing = [k for k in range(n_shards) if not (folder / f"{k:06d}.jsonl").is_file()]
    if missing:  # a worker scored them meanwhile, or one failed: say which
        raise FileNotFoundError(f"{folder}: shard(s) {', '.join(map(str, missing[:5]))} missing; rerun to score them")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with partial.open("wb") as out:
        for k in range(n_shards):
            with (folder / f"{k:06d}.jsonl").open("rb") as fh:
                shutil.copyfileobj(fh, out)
    partial.replace(output_path)
    shutil.rmtree(folder, ignore_errors=True)


def predict_with_ray(argv: list[str], workers: int, address: str | None = None) -> None:
    """Run ``python -m mlsearch_lib predict ARGV`` as ``workers`` Ray tasks, each its share of the
    shards (one GPU each where the cluster has GPUs); the caller then joins them."""
    from mlsearch_lib.config.fanout import ray_commands

    base = [sys.executable, "-m", "mlsearch_lib", "predict", *argv]
    commands = [base + ["--workers", str(workers), "--worker", str(i)] for i in range(workers)]
    failed = ray_commands(commands, gpu=True, address=address, num_cpus=workers)
    if failed:
        raise SystemExit("predict workers failed:\n" + "\n".join(f"{' '.join(c)}\n{e}" for c, e in failed))


def score_pair(task: str, model_dir: Path, query: str, item: str, language: str = "en",
               threshold: float | None = None, trust: bool = False) -> dict:
    """One (query, category path or item title) pair: ``{"p_yes", "threshold", "prediction"}``.

    The pair goes through the same reader as a line of ``predict``'s input (a one-line file), so
    its p(yes) is the one ``predict`` writes for that line."""
    import tempfile

    thr_file = check_threshold(model_dir, threshold)
    record = {"id": 1, "language": language, "origin_query": query, ITEM_FIELD[task]: item}
    with tempfile.TemporaryDirectory(prefix="mlsearch-score-") as tmp:
        path = Path(tmp) / "pair.jsonl"
        path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
        df = read_task_file(path, task=task)  # type: ignore[arg-type]
    model = load_for_task(task, model_dir, trust)
    p = float(model.predict_proba(df)[0])
    thr = float(row_thresholds(thr_file, threshold, df["language"].to_numpy())[0])
    return {"p_yes": p, "threshold": thr, "prediction": int(p >= thr)}
