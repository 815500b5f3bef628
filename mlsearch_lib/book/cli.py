"""The book's command line.

    python -m mlsearch_lib.book run --profile cpu [--only 00,04] [--from 03] [--draft]
    python -m mlsearch_lib.book render [--profile cpu] [--partial]
    python -m mlsearch_lib.book kernel      # register the "mlsearch" Jupyter kernel of this venv
"""

from __future__ import annotations

import argparse
import sys

from mlsearch_lib.book.budget import BudgetExceeded
from mlsearch_lib.book.publish import DEFAULT_PROFILE, NotPublishable
from mlsearch_lib.book.render import render
from mlsearch_lib.book.runner import NotebookFailed, run
from mlsearch_lib.config.paths import DataNotFound
from mlsearch_lib.config.profiles import ProfileError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlsearch_lib.book",
        description="Run the book's notebooks with papermill (results in build/<profile>/, then published to figures/ "
                    "and reports/ when the whole book ran at one clean commit), render the executed book to one HTML "
                    "file, or register the Jupyter kernel.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="execute the notebooks with papermill, then publish the run")
    p_run.add_argument("--profile", default=DEFAULT_PROFILE, help="profile name in profiles/ or a YAML path (default: %(default)s)")
    p_run.add_argument("--only", help="comma-separated notebook numbers, e.g. 00,04 (the run is then a draft unless "
                                      "the other notebooks already ran at this commit)")
    p_run.add_argument("--from", dest="start", help="start at this notebook number, e.g. 03")
    p_run.add_argument("--draft", action="store_true", help="run and publish even from a dirty tree or with notebooks "
                                                            "at different commits; run.json and the book say it is a draft")
    p_run.add_argument("--heartbeat", type=float, default=60.0, metavar="SECONDS",
                       help="print a progress line this often while a notebook runs (0: never; default %(default)s)")
    p_render = sub.add_parser("render", help="render the executed book to one HTML file under reports/")
    p_render.add_argument("--profile", default=DEFAULT_PROFILE, help="the run to render (default: %(default)s)")
    p_render.add_argument("--partial", action="store_true", help="render even if some notebooks were not executed")
    p_kernel = sub.add_parser("kernel", help="register this environment as the Jupyter kernel 'mlsearch' (for JupyterLab)")
    p_kernel.add_argument("--user", action="store_true", help="install into the user's Jupyter dir, not the venv's")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            print(f"run finished: {run(args.profile, args.only, args.start, draft=args.draft, heartbeat_s=args.heartbeat)}")
        elif args.command == "kernel":
            print(f"kernel installed: {install_kernel(args.user)}")
        else:
            print(f"rendered: {render(args.profile, args.partial)}")
    except (DataNotFound, ProfileError, NotebookFailed, BudgetExceeded, NotPublishable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if not isinstance(exc, NotebookFailed) else 1
    return 0


def install_kernel(user: bool = False) -> str:
    """Register this interpreter as the Jupyter kernel ``mlsearch`` ("Python (mlsearch)"), so
    JupyterLab started anywhere runs the notebooks with the project's environment."""
    from ipykernel.kernelspec import install

    prefix = None if user else sys.prefix
    return install(kernel_name="mlsearch", display_name="Python (mlsearch)", user=user, prefix=prefix)
