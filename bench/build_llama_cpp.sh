#!/usr/bin/env bash
# bash bench/build_llama_cpp.sh [--force] [--no-amx]
#
# Builds llama.cpp's Python binding (llama-cpp-python) from its PyPI source distribution, which vendors llama.cpp,
# and installs it into the project's venv (.venv, or $PYTHON's environment), so `tpro bench decode --methods
# ...,llama.cpp` can time the peer on the same GGUF, prompts and threads as our rows. Not part of setup or CI: the
# bench skips its llama.cpp row with a note when the binding is absent.
#
# What it does, each step skipped when already done (idempotent; --force rebuilds):
#   1. the binding imports and runs on this CPU already -> say so and stop;
#   2. `pip download` the sdist (llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION) into build/llama-cpp-python/;
#   3. `pip wheel` it with the CMake flags below into build/llama-cpp-python/<flags hash>/ (~6-10 min on 2 idle
#      cores, ~25 min on loaded ones; run under nice);
#   4. `pip install` that wheel and print llama.cpp's system info (the SIMD features it was built with).
#
# Why these flags: GGML_NATIVE=ON (-march=native) died with SIGILL on one machine of this kind (verified-facts.md):
# a VM's CPUID can promise more than it lets a process run. So each x86 feature is switched on by hand, exactly
# when /proc/cpuinfo lists it (machines of this kind differ: one had AVX-512 + AMX, another an AVX2-only EPYC, where
# a build with AVX-512 on died with SIGILL in its first call), and the wheel is kept per feature set. No curl or
# openssl (nothing to download at run time); LLAVA_BUILD=OFF skips the multimodal library the bench never loads.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"  # the version docs/benchmarks.md's llama.cpp figures were taken with
WORK="$ROOT/build/llama-cpp-python"
FORCE=0
NO_AMX=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    --no-amx) NO_AMX=1 ;;
    *) echo "unknown argument $arg; usage: bash bench/build_llama_cpp.sh [--force] [--no-amx]" >&2; exit 2 ;;
  esac
done

# GGML option <- /proc/cpuinfo flag
FEATURES="SSE42:sse4_2 AVX:avx AVX2:avx2 AVX_VNNI:avx_vnni BMI2:bmi2 FMA:fma F16C:f16c AVX512:avx512f \
AVX512_VBMI:avx512vbmi AVX512_VNNI:avx512_vnni AVX512_BF16:avx512_bf16 AMX_TILE:amx_tile AMX_INT8:amx_int8 \
AMX_BF16:amx_bf16"
CPU_FLAGS=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
CMAKE_ARGS="-DGGML_NATIVE=OFF"
for f in $FEATURES; do
  if [[ $NO_AMX == 1 && "$f" == AMX* ]]; then
    CMAKE_ARGS+=" -DGGML_${f%%:*}=OFF"
  elif [[ "$CPU_FLAGS" == *" ${f#*:} "* ]]; then CMAKE_ARGS+=" -DGGML_${f%%:*}=ON"; else CMAKE_ARGS+=" -DGGML_${f%%:*}=OFF"; fi
done
export CMAKE_ARGS+=" -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAVA_BUILD=OFF"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"

if [[ ! -x "$PYTHON" ]]; then
  echo "no Python at $PYTHON: create the venv first (see README.md), or set PYTHON=/path/to/python" >&2
  exit 1
fi

# the binding runs here (a build for another CPU's features dies with SIGILL in this first native call)
info() {
  "$PYTHON" -c 'import llama_cpp; s = llama_cpp.llama_print_system_info().decode()
print("llama-cpp-python", llama_cpp.__version__, "at", llama_cpp.__file__); print(s)'
}

# ...and decodes: a VM that lists AMX in /proc/cpuinfo but refuses llama.cpp's AMX tile code (one machine of this
# kind, 2026-12-04: torch's oneDNN ran AMX, llama.cpp's AMX buffers died with SIGILL at the first token) passes
# the import and fails only here
smoke() {
  "$PYTHON" - <<'PY'
from llama_cpp import Llama
from tpro.models.default import ensure_gguf
Llama(model_path=str(ensure_gguf()), n_threads=2, n_ctx=256, verbose=False)("Привет", max_tokens=4)
PY
}

if [[ $FORCE == 0 ]] && info 2>/dev/null && smoke 2>/dev/null; then
  echo "llama.cpp binding already installed and working; nothing to do (--force rebuilds)"
  exit 0
fi

mkdir -p "$WORK"
SDIST="$WORK/llama_cpp_python-$VERSION.tar.gz"
if [[ ! -f "$SDIST" ]]; then
  echo "== downloading the llama-cpp-python $VERSION sdist into $WORK"
  "$PYTHON" -m pip download --no-binary :all: --no-deps "llama-cpp-python==$VERSION" -d "$WORK"
fi

WHEELS="$WORK/$(echo "$CMAKE_ARGS" | sha256sum | cut -c1-12)"  # one wheel per CPU feature set
WHEEL="$(ls "$WHEELS"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -1 || true)"
if [[ $FORCE == 1 || -z "$WHEEL" ]]; then
  rm -rf "$WHEELS"
  echo "== building the wheel into $WHEELS ($CMAKE_BUILD_PARALLEL_LEVEL jobs, nice 10; ~6-10 min on 2 idle cores)"
  echo "   CMAKE_ARGS=$CMAKE_ARGS"
  nice -n 10 "$PYTHON" -m pip wheel --no-deps --no-cache-dir -w "$WHEELS" "$SDIST"
  WHEEL="$(ls "$WHEELS"/llama_cpp_python-"$VERSION"-*.whl | head -1)"
fi

echo "== installing $WHEEL"
"$PYTHON" -m pip install --force-reinstall --no-deps "$WHEEL"
# its runtime dependencies (numpy, typing-extensions, diskcache, jinja2), without touching what is installed
"$PYTHON" -m pip install "$WHEEL"
info
rc=0
smoke || rc=$?
if [[ $rc != 0 ]]; then
  if [[ $NO_AMX == 0 && "$CMAKE_ARGS" == *"GGML_AMX_INT8=ON"* ]]; then
    echo "== the build died in a real decode (exit $rc; 132 = SIGILL): this CPU lists AMX but refuses llama.cpp's" \
      "AMX code; rebuilding with AMX off" >&2
    exec bash "${BASH_SOURCE[0]}" --force --no-amx
  fi
  echo "the llama.cpp binding fails a real decode (exit $rc)" >&2
  exit 1
fi
echo "== a real decode ran: the binding works on this CPU"
