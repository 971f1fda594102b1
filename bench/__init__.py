"""Benchmarks of Berth against its baselines on the same machine; see docs/benchmarks.md."""
