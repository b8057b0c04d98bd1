"""Data curation: exact and MinHash dedup (datasketch on one machine, datatrove beyond it), benchmark
decontamination, tagging and balance, reward-model filtering, difficulty selection, with a manifest per output.

Each step is a module with a pure-ish function over rows (``list[dict]``) and a config dataclass (input, output,
settings: the command line, YAML and Python at once) that ``steps.run_step`` runs with a manifest,
skip-if-done, resume and atomic output; ``io`` reads JSONL / Parquet / ``datasets``, ``manifest`` records what
a step did. The package knows nothing about training or serving; it uses ``tpro.eval`` for benchmarks and
answer checking and ``tpro.engine`` for generation.
"""
