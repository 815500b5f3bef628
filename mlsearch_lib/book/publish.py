"""Publishing a run: copy ``build/<profile>/{figures,tables}`` and the run's ``run.json`` /
``metrics.json`` into the committed ``figures/``, ``reports/tables/`` and ``reports/runs/<profile>/``.

Only the book runner publishes, and only a run a reader can trust: every notebook of the book
executed at one commit of a clean tree (:func:`blockers`). ``--draft`` publishes anyway and says so
in ``run.json`` and the rendered header.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from mlsearch_lib.config.paths import PROJECT_ROOT, build_dir, ensure, figures_dir, output_root, reports_dir, tables_dir

#: The packages whose versions decide the numbers; recorded in every ``run.json``.
PACKAGES = ("torch", "transformers", "peft", "scikit-learn", "numpy", "pandas", "scipy", "sentencepiece",
            "papermill", "matplotlib", "seaborn", "vllm", "bitsandbytes", "ray")


#: The profile whose run is the published book: ``figures/``, ``reports/tables/``, the README's
#: findings and ``reports/book.html``. Every other profile publishes under ``reports/runs/<profile>/``.
DEFAULT_PROFILE = "cpu"


def published_dirs(profile_name: str) -> tuple[Path, Path]:
    """Where a profile's run publishes its figures and tables."""
    if profile_name == DEFAULT_PROFILE:
        return figures_dir(), tables_dir()
    out = reports_dir() / "runs" / profile_name
    return out / "figures", out / "tables"


class NotPublishable(RuntimeError):
    """The run is not one clean commit; the message lists why and how to publish anyway."""


def code_version() -> str:
    """``git describe --dirty`` of the working tree (``...-dirty`` when tracked files changed)."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"],
                             cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        from mlsearch_lib import __version__

        return f"mlsearch_lib {__version__} (no git)"


def package_versions() -> dict[str, str]:
    """Installed version of each of :data:`PACKAGES` (``"not installed"`` where absent)."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine() -> dict[str, Any]:
    """What ran the book: CPU model, cores, memory and GPU, as a reader comparing timings needs."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                            "os": platform.platform(terse=True)}
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages * size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return info


def blockers(meta: dict[str, Any], book: list[str]) -> list[str]:
    """Why the run ``meta`` (a ``run.json``) is not one clean commit of the whole book ``book``
    (notebook stems): empty when it can be published."""
    runs = meta.get("notebooks", {})
    missing = [stem for stem in book if runs.get(stem, {}).get("status") != "ok"]
    versions = sorted({runs[stem].get("code_version", "unknown") for stem in book if stem in runs})
    reasons = []
    if missing:
        reasons.append(f"notebook(s) {', '.join(missing)} did not run to the end in this run")
    if len(versions) > 1:
        reasons.append(f"the notebooks ran at different code versions ({', '.join(versions)})")
    dirty = [v for v in versions if v.endswith("-dirty") or "no git" in v]
    if dirty:
        reasons.append(f"code version {dirty[0]} is not a clean commit (commit or stash the changes)")
    return reasons


def _portable(obj: Any) -> Any:
    """``obj`` with this machine's absolute paths written relative to the project (or ``~``): a
    published file names no one's home directory."""
    text = json.dumps(obj, default=str)
    for root, short in ((str(PROJECT_ROOT), "."), (str(Path.home()), "~")):
        text = text.replace(json.dumps(root)[1:-1] + "/", short + "/").replace(json.dumps(root), json.dumps(short))
    return json.loads(text)


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _mirror(src: Path, dst: Path, prefixes: set[str], patterns: tuple[str, ...]) -> int:
    """Replace ``dst``'s files of the notebooks ``prefixes`` by ``src``'s: a figure the notebook no
    longer draws does not linger in the published folder."""
    ensure(dst)
    for pattern in patterns:
        for old in dst.glob(pattern):
            if old.name[:2] in prefixes:
                old.unlink()
    copied = 0
    for pattern in patterns:
        for new in sorted(src.glob(pattern)):
            if new.name[:2] in prefixes:
                shutil.copy2(new, dst / new.name)
                copied += 1
    return copied


def publish(profile_name: str, book: list[str], draft: bool = False) -> Path:
    """Copy the run's figures, tables and metadata into the committed folders; returns
    ``reports/runs/<profile>/``. Refuses (:class:`NotPublishable`) a run that is not one clean
    commit of the whole ``book`` unless ``draft``."""
    run_dir = build_dir() / profile_name
    meta = read_json(run_dir / "run.json")
    reasons = blockers(meta, book)
    if reasons and not draft:
        raise NotPublishable(
            "not published: " + "; ".join(reasons) + f". The results stay in {run_dir}; rerun the whole book from a "
            "clean commit (`make book`), or publish a draft with `python -m mlsearch_lib.book run --draft` (make book DRAFT=1).")
    prefixes = {stem[:2] for stem, info in meta.get("notebooks", {}).items() if info.get("status") == "ok"}
    figures, tables = published_dirs(profile_name)
    _mirror(run_dir / "figures", figures, prefixes, ("[0-9][0-9]_*.png",))
    _mirror(run_dir / "tables", tables, prefixes, ("[0-9][0-9]_*.csv", "[0-9][0-9]_*.md"))
    out = ensure(reports_dir() / "runs" / profile_name)
    meta["published"] = {"draft": bool(reasons), "why_draft": reasons}
    write_json(run_dir / "run.json", meta)
    # a draft of a few notebooks keeps the published entries of the others, as it keeps their files
    old_meta, old_metrics = read_json(out / "run.json"), read_json(out / "metrics.json")
    write_json(out / "run.json", _portable({**meta, "notebooks": {**old_meta.get("notebooks", {}), **meta["notebooks"]}}))
    write_json(out / "metrics.json", {**old_metrics, **read_json(run_dir / "metrics.json")})
    if profile_name == DEFAULT_PROFILE:
        from mlsearch_lib.book.findings import update_readme

        update_readme(output_root() / "README.md", tables, profile_name, meta)
    return out
