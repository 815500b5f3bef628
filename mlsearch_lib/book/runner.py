"""Execute the numbered notebooks through papermill: ``python -m mlsearch_lib.book run``.

Executed notebooks, their figures and tables, and ``run.json`` (code version, packages, machine,
profile, data fingerprint, per-notebook times) go to ``build/<profile>/``; a run of the whole book
at one clean commit is then published (:mod:`mlsearch_lib.book.publish`). The run stops at the
first failing notebook and names it and its cell.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mlsearch_lib.book.publish import (
    NotPublishable,
    blockers,
    code_version,
    machine,
    package_versions,
    publish,
    read_json,
    write_json,
)
from mlsearch_lib.config import progress
from mlsearch_lib.config.paths import NOTEBOOKS_DIR, build_dir, data_dir, ensure, output_root
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


def data_fingerprint(profile: Profile) -> dict[str, str]:
    from mlsearch_lib.data.records import fingerprint

    root = data_dir()
    out = {}
    for rel in (profile.data.qc_file, profile.data.qi_file):
        path = root / rel
        out[rel] = fingerprint([path]) if path.is_file() else "missing"
    return out


def _failure(nb: Path, exc: Exception, executed: Path) -> NotebookFailed:
    cell = getattr(exc, "exec_count", None)
    what = f"{getattr(exc, 'ename', type(exc).__name__)}: {getattr(exc, 'evalue', exc)}"
    return NotebookFailed(f"notebook {nb.name} failed at cell {cell if cell is not None else '?'}: {what}\n"
                          f"  executed copy: {executed}")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class _Heartbeat:
    """A line every ``every`` seconds while a notebook runs: elapsed time, from the last run's
    duration about how long is left, and the newest line of the notebook's own progress bars
    (:mod:`mlsearch_lib.config.progress`: the step, its count, elapsed and remaining time). It
    shows in CI logs and ``| tee``, where papermill's progress bar (a terminal's) does not."""

    def __init__(self, log, label: str, expected: float | None, every: float, steps: Path | None = None) -> None:
        self.log, self.label, self.expected, self.every, self.steps = log, label, expected, every, steps
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._t0 = time.perf_counter()

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            elapsed = time.perf_counter() - self._t0
            left = ""
            if self.expected:
                left = (f", about {(self.expected - elapsed) / 60:.0f} min left (last run {self.expected / 60:.0f} min)"
                        if elapsed < self.expected else f", past the last run's {self.expected / 60:.0f} min")
            step = progress.latest(self.steps) if self.steps else ""
            self.log(f"{self.label} running for {elapsed / 60:.1f} min{left}" + (f" | {step}" if step else ""))

    def __enter__(self) -> _Heartbeat:
        if self.every > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


def run(profile_name: str, only: str | None = None, start: str | None = None, log=print,
        draft: bool = False, heartbeat_s: float = 60.0) -> Path:
    """Execute the selected notebooks in order, then publish the run (:mod:`mlsearch_lib.book.publish`);
    returns the run directory. A run that could not be published (a dirty tree, notebooks left at
    another commit) stops before its first notebook unless ``draft``."""
    import papermill as pm

    profile = load_profile(profile_name)  # fail before starting a kernel
    data_root = data_dir()  # raises DataNotFound with a message saying where the files go
    if profile.budget.gpu_hours is not None:  # a plan over budget stops here, naming what to change
        from mlsearch_lib.book.budget import check

        log(f"budget: {check(profile):.1f} of {profile.budget.gpu_hours:g} GPU-hours planned")
    run_dir = ensure(build_dir() / profile.name)
    nb_dir = ensure(run_dir / "notebooks")
    meta_path = run_dir / "run.json"
    previous = read_json(meta_path).get("notebooks", {})
    version = code_version()
    chosen = select(notebooks(), only, start)
    book = [nb.stem for nb in notebooks()]
    planned = {**previous, **{nb.stem: {"status": "ok", "code_version": version} for nb in chosen}}
    reasons = blockers({"notebooks": planned}, book)
    if reasons and not draft:  # say so now, not after an hour of notebooks
        raise NotPublishable("this run could not be published: " + "; ".join(reasons)
                             + ". Run the whole book from a clean commit, or pass --draft (make book DRAFT=1) "
                             "to run and publish it marked as a draft.")
    meta: dict[str, Any] = {
        "profile": profile.model_dump(),
        "code_version": version,
        "data_dir": str(data_root),
        "data_fingerprint": data_fingerprint(profile),
        "output_root": str(output_root()),
        "python": platform.python_version(),
        "packages": package_versions(),
        "machine": machine(),
        "started": _now(),
        "notebooks": previous,  # notebooks not rerun this time keep their entries (and versions)
    }
    for i, nb in enumerate(chosen, start=1):
        executed = nb_dir / nb.name
        label = f"[{i}/{len(chosen)}] {nb.stem}"
        log(f"{label} (profile {profile.name}) ...")
        expected = previous.get(nb.stem, {}).get("seconds")
        entry = {"started": _now(), "code_version": version}
        t0 = time.perf_counter()
        steps = ensure(run_dir / "progress") / f"{nb.stem}.log"
        steps.write_text("", encoding="utf-8")
        os.environ[progress.ENV] = str(steps)  # the kernel papermill starts inherits it
        try:
            with _Heartbeat(log, label, expected, heartbeat_s, steps):
                pm.execute_notebook(
                    str(nb), str(executed), kernel_name="python3", cwd=str(NOTEBOOKS_DIR),
                    parameters={"PROFILE": profile_name, "RUN_DIR": str(run_dir)},
                    progress_bar=sys.stderr.isatty(), log_output=False,
                )
        except Exception as exc:  # papermill wraps cell errors in PapermillExecutionError
            meta["notebooks"][nb.stem] = {**entry, "status": "failed", "seconds": round(time.perf_counter() - t0, 1)}
            write_json(meta_path, meta)
            raise _failure(nb, exc, executed) from None
        finally:
            os.environ.pop(progress.ENV, None)
        seconds = round(time.perf_counter() - t0, 1)
        meta["notebooks"][nb.stem] = {**entry, "status": "ok", "seconds": seconds, "finished": _now()}
        write_json(meta_path, meta)
        log(f"{label} done in {seconds:.1f} s")
    meta["finished"] = _now()
    write_json(meta_path, meta)
    out = publish(profile.name, book, draft=draft)
    log(f"published to {out}" + (" (draft)" if reasons else ""))
    return run_dir
