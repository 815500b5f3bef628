"""Progress bars that reach a log as well as a notebook.

Inside a notebook run by ``book run`` a tqdm bar draws in the executed notebook, which nobody
watches while it runs; the runner names a file in :data:`ENV`, every bar then writes plain text
there (a line at most every :data:`MININTERVAL` seconds, with elapsed and remaining time) and the
runner's heartbeat repeats the newest line, so CI logs and ``| tee`` show where a notebook is.
Anywhere else (JupyterLab, a script) this is ``tqdm.auto.tqdm``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm as _text_bar
from tqdm.auto import tqdm as _auto_bar

#: the environment variable through which ``book run`` names a notebook's progress file
ENV = "MLSEARCH_PROGRESS_FILE"
MININTERVAL = 10.0


@lru_cache(maxsize=8)
def _stream(path: str) -> IO[str]:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - kept open for the kernel's life


def tqdm(*args: Any, **kwargs: Any) -> Any:
    """``tqdm.auto.tqdm``, or a plain-text bar into the runner's progress file when :data:`ENV` is set."""
    path = os.environ.get(ENV)
    if not path:
        return _auto_bar(*args, **kwargs)
    kwargs.setdefault("mininterval", MININTERVAL)
    kwargs.setdefault("maxinterval", 60 * MININTERVAL)  # a long step still updates its line
    return _text_bar(*args, file=_stream(path), ascii=True, ncols=110, **kwargs)


def latest(path: Path) -> str:
    """The newest progress line written to ``path`` ('' when there is none yet)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    pieces = [p.strip() for p in tail.replace("\r", "\n").split("\n")]
    return next((p for p in reversed(pieces) if p), "")
