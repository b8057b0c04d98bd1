#!/usr/bin/env bash
# The main job on the embedded default model: set everything up, then open the side-by-side playground.
# `tpro playground` starts a local `tpro serve` (127.0.0.1, random API key) on the embedded model with its EAGLE
# head when one is shipped, waits for it, and serves the page at http://127.0.0.1:8501: left pane EAGLE, right
# pane plain decoding. Extra arguments go to `tpro playground` (e.g. --no-browser, --port 8600, --left-url URL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
exec tpro playground "$@"
