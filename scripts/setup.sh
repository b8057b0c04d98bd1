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

# The word lists of `tpro tokenizer adapt`'s default Cyrillic corpus (src/tpro/tokenizer/corpus.py,
# DEFAULT_CYRILLIC): Debian's hunspell dictionaries. The default is one fixed list so every machine builds the same
# tokenizer; adapt refuses to run without them unless given --allow-missing. Quiet when they are already there.
HUNSPELL_PACKAGES=(hunspell-ru hunspell-uk hunspell-be hunspell-bg hunspell-kk hunspell-sr hunspell-mn)
missing=()
for p in "${HUNSPELL_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
    [ -t 0 ] || sudo=(sudo -n)  # no terminal to ask for a password: fail at once instead of waiting
  fi
  apt_install() {
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  }
  installed=0
  if command -v apt-get >/dev/null && { [ ${#sudo[@]} -eq 0 ] || command -v sudo >/dev/null; }; then
    # A fresh machine may have no package lists yet: then update them once and try again.
    if apt_install "${missing[@]}" 2>/dev/null ||
       { "${sudo[@]}" apt-get update -qq >/dev/null && apt_install "${missing[@]}"; }; then
      installed=1
    fi
  fi
  if [ $installed -eq 1 ]; then
    echo "installed ${missing[*]} (word lists of the default tokenizer corpus)"
  else
    echo "warning: could not install ${missing[*]}, Debian's hunspell word lists (on Debian/Ubuntu:" \
      "sudo apt-get install ${missing[*]}). \`tpro tokenizer adapt\` refuses its default corpus without them" \
      "unless given --allow-missing, which builds a different tokenizer; everything else works without them." >&2
  fi
fi
