"""Benchmarks of methods on a zoo: results.json, report.md, report.html with plots."""

from .runner import RESULTS, run_bench

__all__ = ["RESULTS", "run_bench"]
