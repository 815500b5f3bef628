"""Execute the numbered notebooks through papermill: ``python -m mlsearch_lib.book run``.

Executed notebooks and ``run.json`` (code version, profile, data fingerprint, per-notebook
durations) go to ``build/<profile>/``; figures and tables go where :mod:`mlsearch_lib.config.paths`
says. The run stops at the first failing notebook and names it and its cell.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mlsearch_lib.config.paths import NOTEBOOKS_DIR, PROJECT_ROOT, build_dir, data_dir, ensure, output_root, reports_dir
from mlsearch_lib.config.profiles import Profile, load_profile


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook, the cell and the error."""


def notebooks() -> list[Path]:
    return sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def select(all_nbs: list[Path], only: str | None = None, start: str | None = None) -> list[Path]:
    """``only="00,04"`` keeps those numbers; ``start="03"`` keeps 03 and after."""
    chosen = all_nbs
    if only:
        wanted = {p.strip().zfill(2) for p in only.split(",") if p.strip()}
        chosen = [p for p in chosen if p.name[:2] in wanted]
        missing = wanted - {p.name[:2] for p in chosen}
        if missing:
            raise SystemExit(f"--only: no notebook numbered {', '.join(sorted(missing))}")
    if start:
        chosen = [p for p in chosen if p.name[:2] >= start.zfill(2)]
    return chosen


def code_version() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        from mlsearch_lib import __version__

        return f"mlsearch_lib {__version__} (no git)"


def data_fingerprint(profile: Profile) -> dict[str, str]:
    from mlsearch_lib.data.records import fingerprint

    root = data_dir()
    out = {}
    for rel in (profile.data.qc_file, profile.data.qi_file):
        path = root / rel
        out[rel] = fingerprint([path]) if path.is_file() else "missing"
    return out


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)


def _failure(nb: Path, exc: Exception, executed: Path) -> NotebookFailed:
    cell = getattr(exc, "exec_count", None)
    what = f"{getattr(exc, 'ename', type(exc).__name__)}: {getattr(exc, 'evalue', exc)}"
    return NotebookFailed(f"notebook {nb.name} failed at cell {cell if cell is not None else '?'}: {what}\n"
                          f"  executed copy: {executed}")


def run(profile_name: str, only: str | None = None, start: str | None = None, log=print) -> Path:
    """Execute the selected notebooks in order; returns the run directory."""
    import papermill as pm

    profile = load_profile(profile_name)  # fail before starting a kernel
    data_root = data_dir()  # raises DataNotFound with a message saying where the files go
    if profile.budget.gpu_hours is not None:  # a plan over budget stops here, naming what to change
        from mlsearch_lib.book.budget import check

        log(f"budget: {check(profile):.1f} of {profile.budget.gpu_hours:g} GPU-hours planned")
    run_dir = ensure(build_dir() / profile.name)
    nb_dir = ensure(run_dir / "notebooks")
    meta_path = run_dir / "run.json"
    meta: dict[str, Any] = {
        "profile": profile.model_dump(),
        "code_version": code_version(),
        "data_dir": str(data_root),
        "data_fingerprint": data_fingerprint(profile),
        "output_root": str(output_root()),
        "python": platform.python_version(),
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "notebooks": {},
    }
    if meta_path.exists():  # keep durations of notebooks not rerun this time
        meta["notebooks"] = json.loads(meta_path.read_text(encoding="utf-8")).get("notebooks", {})
    chosen = select(notebooks(), only, start)
    for i, nb in enumerate(chosen, start=1):
        executed = nb_dir / nb.name
        log(f"[{i}/{len(chosen)}] {nb.stem} (profile {profile.name}) ...")
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(
                str(nb), str(executed), kernel_name="python3", cwd=str(NOTEBOOKS_DIR),
                parameters={"PROFILE": profile_name, "RUN_DIR": str(run_dir)},
                progress_bar=sys.stderr.isatty(), log_output=False,
            )
        except Exception as exc:  # papermill wraps cell errors in PapermillExecutionError
            meta["notebooks"][nb.stem] = {"status": "failed", "seconds": round(time.perf_counter() - t0, 1)}
            _write_json(meta_path, meta)
            raise _failure(nb, exc, executed) from None
        seconds = round(time.perf_counter() - t0, 1)
        meta["notebooks"][nb.stem] = {"status": "ok", "seconds": seconds, "code_version": meta["code_version"]}
        _write_json(meta_path, meta)
        log(f"[{i}/{len(chosen)}] {nb.stem} done in {seconds:.1f} s")
    meta["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    _write_json(meta_path, meta)
    publish_metadata(profile.name)
    return run_dir


def publish_metadata(profile_name: str) -> Path:
    """Merge a run's ``run.json`` and ``metrics.json`` into ``reports/runs/<profile>/``, beside the
    figures and tables they describe (those are committed; ``build/`` is not).

    A run of a few notebooks (``--only``), even from a fresh build dir, replaces those notebooks'
    entries and keeps the others': the published files describe every committed table, and each
    notebook's entry names the code version it ran with."""
    run_dir = build_dir() / profile_name
    out = ensure(reports_dir() / "runs" / profile_name)
    for name in ("run.json", "metrics.json"):
        if not (run_dir / name).exists():
            continue
        new = read_json(run_dir / name)
        old = read_json(out / name)
        if name == "run.json":
            new["notebooks"] = {**old.get("notebooks", {}), **new.get("notebooks", {})}
        else:
            new = {**old, **new}  # per notebook: a rerun notebook's metrics replace its old ones whole
        _write_json(out / name, new)
    return out
