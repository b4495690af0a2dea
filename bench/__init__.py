"""Benchmarks. Each module prints its figures and writes JSON under bench/results/. Run one with
``python -m bench.<module>``; ``python -m bench`` runs them all."""
