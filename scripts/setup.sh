#!/usr/bin/env bash
# One-time (idempotent) setup on a fresh Linux machine with Python >= 3.11 and pip; no GPU needed.
# Creates .venv, installs the CPU build of torch (a pinned wheel: an unpinned `torch` would pull a multi-GB
# CUDA build), then tpro with every extra. On a GPU machine, install torch the normal way first
# (`pip install torch`), then `pip install -e '.[all]'`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q "torch==${TPRO_TORCH_VERSION:-2.13.0}"
fi
python -m pip install -q -e ".[all,test]"
