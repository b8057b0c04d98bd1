"""Benchmarks over the engine: decode speed of EAGLE vs the vanilla loop vs ``model.generate``, per domain."""
