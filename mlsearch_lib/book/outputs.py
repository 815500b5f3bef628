"""What a notebook produces, saved under stable names so the rendered book can index it.

Each notebook calls :func:`setup` once, right after its parameters cell; afterwards
``save_figure("name")`` writes ``figures/NN_name.png``, ``save_table("name", df)`` writes
``reports/tables/NN_name.{csv,md}`` and ``record_metric`` adds to the run's ``metrics.json``
(NN = the notebook's number).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlsearch_lib.config.paths import build_dir, ensure, figures_dir, tables_dir, write_atomically
from mlsearch_lib.config.profiles import Profile, load_profile
from mlsearch_lib.config.seeds import seed_everything


@dataclass
class _Context:
    notebook: str
    run_dir: Path


_CONTEXT: _Context | None = None


def setup(notebook: str, profile: str, overrides: dict[str, Any] | None = None, run_dir: str = "") -> Profile:
    """Load and validate the profile, seed everything, and name this notebook's outputs."""
    global _CONTEXT
    prof = load_profile(profile, overrides)
    seed_everything(prof.seed)
    _CONTEXT = _Context(notebook=notebook, run_dir=Path(run_dir) if run_dir else build_dir() / prof.name)
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return prof


def _context() -> _Context:
    if _CONTEXT is None:
        raise RuntimeError("call mlsearch_lib.book.outputs.setup(...) first: it names the notebook's outputs")
    return _CONTEXT


def _stem(name: str) -> str:
    return f"{_context().notebook[:2]}_{name}"


def save_figure(name: str, fig: Any = None) -> Path:
    """Write ``figures/NN_name.png`` (the current figure unless ``fig`` is given)."""
    import matplotlib.pyplot as plt

    fig = fig or plt.gcf()
    path = ensure(figures_dir()) / f"{_stem(name)}.png"
    return write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight"))


def save_table(name: str, df: pd.DataFrame, floatfmt: str = ".4f") -> pd.DataFrame:
    """Write ``reports/tables/NN_name.csv`` and ``.md``; returns ``df`` so a cell can display it."""
    out = ensure(tables_dir())
    write_atomically(out / f"{_stem(name)}.csv", lambda tmp: df.to_csv(tmp, index=not isinstance(df.index, pd.RangeIndex)))
    text = markdown_table(df, floatfmt) + "\n"
    write_atomically(out / f"{_stem(name)}.md", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return df


def markdown_table(df: pd.DataFrame, floatfmt: str = ".4f") -> str:
    """``df`` as a markdown table a reader can scan: each index level its own column (not a tuple),
    column levels joined by a space, and float columns holding whole numbers (counts) without decimals."""
    flat = df.copy()
    if isinstance(flat.columns, pd.MultiIndex):
        flat.columns = [" ".join(str(part) for part in col if str(part)) for col in flat.columns]
    if not isinstance(flat.index, pd.RangeIndex):
        flat = flat.reset_index(names=[name or "" for name in flat.index.names])
    return flat.to_markdown(index=False, floatfmt=[_float_format(flat[col], floatfmt) for col in flat.columns])


def _float_format(values: pd.Series, floatfmt: str) -> str:
    if not pd.api.types.is_float_dtype(values):
        return "g"
    return ".0f" if bool((values.dropna() % 1 == 0).all()) else floatfmt


def record_metric(name: str, value: float | int | str) -> None:
    """Add ``value`` under this notebook's name to the run's ``metrics.json`` (atomic rewrite)."""
    ctx = _context()
    path = ensure(ctx.run_dir) / "metrics.json"
    metrics = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    if hasattr(value, "item"):
        value = value.item()  # numpy scalars
    metrics.setdefault(ctx.notebook, {})[name] = value
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
