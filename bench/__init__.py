"""Benchmarks, run by hand (`python -m bench.catalogue`, `python -m bench.pipeline`); see RESULTS.md."""
