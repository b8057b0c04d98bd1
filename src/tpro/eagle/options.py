"""``--model`` as the eagle and bench commands spell it: the shared field with ``--target``, their old spelling.

Imports neither torch nor transformers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tpro.config import like
from tpro.options import ModelOptions


def target_model(role: str) -> Any:
    """``--model``/``-m`` (the shared field; ``role`` says what the target is to this command) with the hidden old
    spelling ``--target``."""
    shared = next(f for f in dataclasses.fields(ModelOptions) if f.name == "model").metadata["help"]
    return like(ModelOptions, "model", help=f"{role}. {shared}", aliases=("--target",))
