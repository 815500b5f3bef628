"""``python -m mlsearch_lib.bench``: see :mod:`mlsearch_lib.bench.cli`."""

from mlsearch_lib.bench.cli import main

main()
