"""Every path the book reads or writes, resolved in one place.

Environment variables let tests and users redirect each root without editing code:
``MLSEARCH_PROJECT_ROOT`` (the working tree), ``MLSEARCH_DATA_DIR`` (input data),
``MLSEARCH_OUTPUT_ROOT`` (where a book run publishes ``figures/`` and ``reports/``),
``MLSEARCH_BUILD_DIR`` (executed notebooks, their figures and tables, checkpoints, caches) and
``MLSEARCH_MODEL_CACHE`` (converted offline model copies).

The project root is the working tree the command runs in (found upwards from the current
directory), not where the package was installed: a second clone sharing one virtual environment
reads and writes its own files.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent


def _is_checkout(path: Path) -> bool:
    return (path / "pyproject.toml").is_file() and (path / "notebooks").is_dir() and (path / "mlsearch_lib").is_dir()


def find_project_root(start: Path | None = None) -> Path:
    """``MLSEARCH_PROJECT_ROOT``, else the nearest folder at or above ``start`` (the current
    directory) that holds this project's ``pyproject.toml``, ``notebooks/`` and ``mlsearch_lib/``,
    else the folder the package was installed from."""
    env = os.environ.get("MLSEARCH_PROJECT_ROOT", "").strip()
    if env:
        return Path(env).expanduser().resolve()
    here = (start or Path.cwd()).resolve()
    return next((cand for cand in (here, *here.parents) if _is_checkout(cand)), PACKAGE_DIR.parent)


PROJECT_ROOT = find_project_root()
#: Data files shipped with the package: lexicons, QR keywords, the seed's published numbers.
RESOURCES_DIR = PACKAGE_DIR / "resources"
#: Prompt templates (YAML), read by the prompt builder and the generators.
TEMPLATES_DIR = PACKAGE_DIR / "templates"
#: The book: numbered notebooks, run in order by :mod:`mlsearch_lib.book.runner`.
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"

#: Where the official files go; the message in :class:`DataNotFound` points here.
DATA_HELP = (
    "Put the official files (train_QC.txt, train_QI.txt, dev_*.txt, test_*.txt; JSON lines) "
    "under data/raw/QC/ and data/raw/QI/, or set MLSEARCH_DATA_DIR to a folder holding QC/ and QI/."
)


class DataNotFound(FileNotFoundError):
    """No data directory could be found; the message says where to put the files."""


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser().resolve() if value else None


def data_dir() -> Path:
    """MLSEARCH_DATA_DIR, else ``data/raw/``, else the public copy at ``../shared/data/``."""
    env = _env_path("MLSEARCH_DATA_DIR")
    if env is not None:
        if not env.is_dir():
            raise DataNotFound(f"MLSEARCH_DATA_DIR={env} is not a directory. {DATA_HELP}")
        return env
    candidates = [PROJECT_ROOT / "data" / "raw", PROJECT_ROOT.parent / "shared" / "data"]
    for cand in candidates:
        if cand.is_dir() and any(cand.iterdir()):
            return cand
    raise DataNotFound(f"No data found (looked in {', '.join(map(str, candidates))}). {DATA_HELP}")


def data_file(relative: str) -> Path:
    """A file inside :func:`data_dir`; a clear error when it is missing."""
    path = data_dir() / relative
    if not path.is_file():
        raise DataNotFound(f"{path} does not exist. {DATA_HELP}")
    return path


def output_root() -> Path:
    """Root under which ``figures/`` and ``reports/`` are written (the project by default)."""
    return _env_path("MLSEARCH_OUTPUT_ROOT") or PROJECT_ROOT


def figures_dir() -> Path:
    return output_root() / "figures"


def reports_dir() -> Path:
    return output_root() / "reports"


def tables_dir() -> Path:
    return reports_dir() / "tables"


def build_dir() -> Path:
    """Build products (executed notebooks, checkpoints, caches); git-ignored."""
    return _env_path("MLSEARCH_BUILD_DIR") or PROJECT_ROOT / "build"


def model_cache_dir() -> Path:
    """Converted offline copies of hub models (see :mod:`mlsearch_lib.models.offline`)."""
    return _env_path("MLSEARCH_MODEL_CACHE") or Path.home() / ".cache" / "mlsearch" / "models"


def refine_dir() -> Path:
    """Refined training sets written by notebook 01."""
    return output_root() / "data" / "refine"


def ensure(path: Path) -> Path:
    """Create ``path`` (a directory) if needed and return it."""
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` into a temporary sibling of ``path``, then rename it over ``path``: a reader never
    sees half a file, and an interrupted write leaves the previous one whole."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")  # same suffix: writers that infer formats
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def replace_dir(new: Path, target: Path) -> Path:
    """Put the complete directory ``new`` in place of ``target`` (the old one is moved aside first,
    then removed: at no moment is there a half-written ``target``)."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.replace(old)
    new.replace(target)
    shutil.rmtree(old, ignore_errors=True)
    return target

