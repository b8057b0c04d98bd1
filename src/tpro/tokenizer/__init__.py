"""Cyrillic-dense tokenizer (T-pro 2.0): swap low-value tokens of a byte-level BPE vocabulary for Cyrillic ones
(``adapt``), validate the result (``check``), measure density (``density``), and carry a model over to the new
vocabulary (``remap``). The CLI is ``tpro tokenizer adapt|check|report|remap-model``.

It knows nothing about decoding or training; ``tpro.models.bpc`` scores a model before and after a remap.
"""
