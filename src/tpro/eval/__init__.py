"""Evaluation: math benchmarks as data (``benchmarks``), answer checking (``check``), decontamination
(``contamination``), runners over the local engine or an OpenAI-compatible endpoint (``runner``), run
directories that resume after a kill, reports and plots (``report``), and the ``tpro eval`` CLI.

Import the submodules directly; this package imports nothing heavy.
"""
