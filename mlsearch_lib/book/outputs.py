"""What a notebook produces, saved under stable names so the rendered book can index it.

Each notebook calls :func:`setup` once, right after its parameters cell; afterwards
``save_figure("name")`` writes ``<run>/figures/NN_name.png``, ``save_table("name", df)`` writes
``<run>/tables/NN_name.{csv,md}`` and ``record_metric`` adds to the run's ``metrics.json``
(NN = the notebook's number; ``<run>`` = ``build/<profile>/``).

A notebook never writes the committed ``figures/`` and ``reports/``: run from JupyterLab or
nbconvert it leaves its results in the build folder, and only a book run publishes them
(:func:`mlsearch_lib.book.publish.publish`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlsearch_lib.config.paths import build_dir, ensure, write_atomically
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

    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    _display_tables_for_reading()
    return prof


def _display_tables_for_reading() -> None:
    """In a notebook, show every DataFrame whole (no ``...`` rows or columns) with the numbers of
    :func:`format_numbers` and blanks for missing values, as the saved tables are."""
    pd.set_option("display.max_rows", None)
    pd.set_option("display.max_columns", None)
    pd.set_option("display.width", None)
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with papermill and jupyter
        return
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, lambda df: format_numbers(df).to_html(na_rep=""))


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
    path = ensure(_context().run_dir / "figures") / f"{_stem(name)}.png"
    return write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight"))


def save_table(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """Write ``<run>/tables/NN_name.csv`` (full precision) and ``.md`` (for reading); returns ``df``
    so a cell can display it."""
    out = ensure(_context().run_dir / "tables")
    write_atomically(out / f"{_stem(name)}.csv", lambda tmp: df.to_csv(tmp, index=not isinstance(df.index, pd.RangeIndex)))
    text = markdown_table(df) + "\n"
    write_atomically(out / f"{_stem(name)}.md", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return df


def markdown_table(df: pd.DataFrame) -> str:
    """``df`` as a markdown table a reader can scan: each index level its own column (not a tuple),
    column levels joined by a space, numbers as :func:`format_numbers` writes them, and missing
    values (a reference row's delta) blank, not ``nan``."""
    flat = df.copy()
    if isinstance(flat.columns, pd.MultiIndex):
        flat.columns = [" ".join(str(part) for part in col if str(part)) for col in flat.columns]
    if not isinstance(flat.index, pd.RangeIndex):
        flat = flat.reset_index(names=[name or "" for name in flat.index.names])
    align = ["right" if pd.api.types.is_numeric_dtype(flat.iloc[:, i]) else "left" for i in range(flat.shape[1])]
    return format_numbers(flat).to_markdown(index=False, disable_numparse=True, colalign=align)


def format_numbers(df: pd.DataFrame) -> pd.DataFrame:
    """Float columns as text with as many decimals as a reader needs: whole numbers (counts) as
    integers, otherwise four significant digits at most (0.7312, 12.35, 938.1) and never more than
    four decimals; missing values as blanks. The CSV keeps full precision."""
    out = df.copy()
    for i in range(out.shape[1]):
        col = out.iloc[:, i]
        if pd.api.types.is_float_dtype(col):
            out.isetitem(i, _format_column(col))
    return out


def _format_column(values: pd.Series) -> pd.Series:
    present = values.dropna()
    finite = present[present.abs() != float("inf")]
    if finite.empty or bool((finite % 1 == 0).all()):
        decimals = 0
    else:
        biggest = float(finite.abs().max())
        digits = len(str(int(biggest))) if biggest >= 1 else 0
        decimals = max(0, min(4, 4 - digits))
    return values.map(lambda v: "" if pd.isna(v) else f"{v:.{decimals}f}")


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
