"""mlsearch: a research book on multilingual e-commerce search relevance (QC and QI)."""

__version__ = "0.1.0"
