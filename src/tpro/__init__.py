"""tpro: make and serve a fast Russian hybrid-reasoning LLM (the T-pro 2.0 system as a toolkit).

Subpackages, bottom up: ``models`` (loading, the embedded default, chat formats), ``engine`` (the
streaming decode loop), then the stages built on them. Importing ``tpro`` imports nothing heavy.
"""

__version__ = "0.1.0"
