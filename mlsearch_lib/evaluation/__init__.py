"""Stage 4, evaluation: metrics, thresholds, the book's experiments, ablations."""
