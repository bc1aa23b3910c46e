"""Palaestra's performance benchmarks: ``python -m benchmarks.run_all`` (see BENCHMARKS.md)."""
