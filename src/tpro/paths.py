"""Where tpro keeps files it makes for the user (converted models, joined GGUF files).

Only the cache location lives here; nothing is downloaded by this module.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$TPRO_CACHE``, else ``$XDG_CACHE_HOME/tpro``, else ``~/.cache/tpro``; created on first use."""
    env = os.environ.get("TPRO_CACHE")
    if env:
        root = Path(env)
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tpro"
    root.mkdir(parents=True, exist_ok=True)
    return root
