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


def replace_dir(tmp: Path, out: Path) -> None:
    """Move a finished ``tmp`` directory to ``out``, replacing any old ``out`` without a moment where neither exists
    in a half-written state: the old one is renamed aside first and removed only after the swap."""
    import shutil

    if out.exists():
        old = out.with_name(out.name + f".old{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
