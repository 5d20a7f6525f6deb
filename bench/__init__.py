"""The Entra-scale benchmark harness (``bench/run.py``); see README "Benchmarks"."""
