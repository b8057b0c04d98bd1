#!/usr/bin/env bash
# Set everything up, then lint (ruff) and run the whole test suite (tiny models, the embedded default, the browser
# tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then
  # The playground's browser tests drive Debian's chromium through Playwright (its own browser download
  # does not work offline).
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
    echo "warning: could not install chromium; browser tests will be skipped" >&2
fi
. .venv/bin/activate
# House rules first (pyproject.toml [tool.ruff]): lint, and formatting as ruff formats it.
ruff check .
ruff format --check .
python -m pytest -q -p no:cacheprovider --timeout 900 --durations=25 "$@"
