"""Stage 1, data: reading and validating task files, EDA statistics, query-grouped folds."""
