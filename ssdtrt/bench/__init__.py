"""Benchmarks users run to decide how to deploy: latency per backend and stage, postprocess implementations.

Nothing heavy is imported here; `ssdtrt.bench.latency` and `ssdtrt.bench.postprocess` load their backends lazily.
"""
