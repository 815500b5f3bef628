"""The book's command line.

    python -m mlsearch_lib.book run --profile cpu [--only 00,04] [--from 03]
    python -m mlsearch_lib.book render [--profile cpu] [--partial]
"""

from __future__ import annotations

import argparse
import sys

from mlsearch_lib.book.budget import BudgetExceeded
from mlsearch_lib.book.render import DEFAULT_PROFILE, render
from mlsearch_lib.book.runner import NotebookFailed, run
from mlsearch_lib.config.paths import DataNotFound
from mlsearch_lib.config.profiles import ProfileError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlsearch_lib.book", description="Run the book's notebooks, or render the executed book.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="execute the notebooks with papermill")
    p_run.add_argument("--profile", default=DEFAULT_PROFILE)
    p_run.add_argument("--only", help="comma-separated notebook numbers, e.g. 00,04")
    p_run.add_argument("--from", dest="start", help="start at this notebook number")
    p_render = sub.add_parser("render", help="render the executed book to one HTML file under reports/")
    p_render.add_argument("--profile", default=DEFAULT_PROFILE)
    p_render.add_argument("--partial", action="store_true", help="render even if some notebooks were not executed")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            print(f"run finished: {run(args.profile, args.only, args.start)}")
        else:
            print(f"rendered: {render(args.profile, args.partial)}")
    except (DataNotFound, ProfileError, NotebookFailed, BudgetExceeded) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if not isinstance(exc, NotebookFailed) else 1
    return 0
