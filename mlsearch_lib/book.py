"""Execute the numbered notebooks through papermill, and render the executed book to HTML.

    python -m mlsearch_lib.book run --profile cpu [--only 00,04] [--from 03]
    python -m mlsearch_lib.book render [--profile cpu]

Executed notebooks and ``run.json`` (code version, profile, data fingerprint, per-notebook
durations) go to ``build/<profile>/``; figures and tables go where :mod:`mlsearch_lib.paths`
says. The run stops at the first failing notebook and names it and its cell.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .paths import PROJECT_ROOT, DataNotFound, build_dir, data_dir, ensure, output_root, reports_dir
from .profiles import Profile, ProfileError, load_profile

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"


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
        from . import __version__

        return f"mlsearch_lib {__version__} (no git)"


def data_fingerprint(profile: Profile) -> dict[str, str]:
    from .data import fingerprint

    root = data_dir()
    out = {}
    for rel in (profile.data.qc_file, profile.data.qi_file):
        path = root / rel
        out[rel] = fingerprint([path]) if path.is_file() else "missing"
    return out


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
        meta["notebooks"][nb.stem] = {"status": "ok", "seconds": seconds}
        _write_json(meta_path, meta)
        log(f"[{i}/{len(chosen)}] {nb.stem} done in {seconds:.1f} s")
    meta["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    _write_json(meta_path, meta)
    publish_metadata(profile.name)
    return run_dir


def publish_metadata(profile_name: str) -> Path:
    """Copy a run's ``run.json`` and ``metrics.json`` to ``reports/runs/<profile>/``, beside the
    figures and tables they describe (those are committed; ``build/`` is not)."""
    run_dir = build_dir() / profile_name
    out = ensure(reports_dir() / "runs" / profile_name)
    for name in ("run.json", "metrics.json"):
        if (run_dir / name).exists():
            (out / name).write_text((run_dir / name).read_text(encoding="utf-8"), encoding="utf-8")
    return out


def render(profile_name: str) -> Path:
    """Turn the executed notebooks of a run into HTML pages plus an index under ``reports/``."""
    import nbformat
    from nbconvert import HTMLExporter

    run_dir = build_dir() / load_profile(profile_name).name
    executed = sorted((run_dir / "notebooks").glob("*.ipynb"))
    if not executed:
        raise SystemExit(f"nothing to render: run `python -m mlsearch_lib.book run --profile {profile_name}` first")
    out = ensure(reports_dir() / "book" / profile_name)
    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input_prompt = exporter.exclude_output_prompt = True
    links = []
    for nb_path in executed:
        body, _ = exporter.from_notebook_node(nbformat.read(nb_path, as_version=4))
        (out / f"{nb_path.stem}.html").write_text(body, encoding="utf-8")
        links.append(f'<li><a href="{nb_path.stem}.html">{nb_path.stem}</a></li>')
    meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8")) if (run_dir / "run.json").exists() else {}
    index = (
        "<!doctype html><meta charset='utf-8'><title>mlsearch book</title>"
        f"<h1>mlsearch research book — profile {profile_name}</h1><ol>{''.join(links)}</ol>"
        f"<h2>Run metadata</h2><pre>{json.dumps(meta, indent=2, default=str)}</pre>"
    )
    (out / "index.html").write_text(index, encoding="utf-8")
    return out / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlsearch_lib.book", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="execute the notebooks with papermill")
    p_run.add_argument("--profile", default="cpu")
    p_run.add_argument("--only", help="comma-separated notebook numbers, e.g. 00,04")
    p_run.add_argument("--from", dest="start", help="start at this notebook number")
    p_render = sub.add_parser("render", help="render the executed notebooks to HTML under reports/")
    p_render.add_argument("--profile", default="cpu")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            print(f"run finished: {run(args.profile, args.only, args.start)}")
        else:
            print(f"rendered: {render(args.profile)}")
    except (DataNotFound, ProfileError, NotebookFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if not isinstance(exc, NotebookFailed) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
