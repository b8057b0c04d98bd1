"""Cyrillic-dense tokenizer (T-pro 2.0): swap low-value tokens of a byte-level BPE vocabulary for Cyrillic ones
(``adapt``), validate the result (``check``), measure density (``density``), carry a model over to the new
vocabulary (``remap``) and win back what the swap cost it under a time budget (``recover``). The CLI is
``tpro tokenizer adapt|check|report|remap-model|recover``.

It knows nothing about decoding or training; ``tpro.models.bpc`` scores a model before and after a remap.
"""
