#!/usr/bin/env bash
# The main job on the embedded default model: set everything up, then run it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
tpro generate "Сколько будет 17*23? Объясни." --max-new-tokens 128 "$@"
