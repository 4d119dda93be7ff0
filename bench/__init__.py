"""Benchmarks of kubeffmpeg on the local stack (`python -m bench.run`); see bench/README.md."""
