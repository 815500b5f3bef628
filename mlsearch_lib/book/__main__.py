"""``python -m mlsearch_lib.book``: see :mod:`mlsearch_lib.book.cli`."""

from mlsearch_lib.book.cli import main

raise SystemExit(main())
