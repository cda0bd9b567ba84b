"""Evaluating runs: one run on a split (evaluate), and the runs of a sweep side by side (compare: tables,
plots, significance over test sentences and seeds, gold AER)."""
