"""Benchmarks of the gateway (``make bench``); see bench/RESULTS.md. Not part of ``make test``."""
