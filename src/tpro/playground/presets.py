"""Preset prompts by domain (math from T-Math, code, chat, translation), shipped as ``presets.json``."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

PRESETS_FILE = Path(__file__).with_name("presets.json")


@cache
def load_presets() -> dict[str, list[dict]]:
    """-> {domain: [{"title", "prompt", "source", optional "answer"}]}, in file order."""
    data = json.loads(PRESETS_FILE.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def attribution() -> str:
    return json.loads(PRESETS_FILE.read_text(encoding="utf-8"))["_attribution"]
