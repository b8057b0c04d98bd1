"""Data curation: exact and MinHash dedup (datasketch on one machine, datatrove beyond it), benchmark
decontamination, tagging and balance, reward-model filtering, difficulty selection, with a manifest per output.

Each step is a module with a config dataclass and a pure-ish function over rows (``list[dict]``); ``io`` reads
JSONL / Parquet / ``datasets`` and writes atomically, ``manifest`` records what a step did. The package knows
nothing about training or serving; it uses ``tpro.eval`` for benchmarks and answer checking and
``tpro.engine`` for generation.
"""
