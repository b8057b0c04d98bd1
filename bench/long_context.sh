#!/usr/bin/env bash
# Issue 16's figures for the embedded default on this CPU, in one go (run on a quiet machine; ~1.5 h):
#   bash bench/long_context.sh [bpc] [prefill] [niah] [multikey] [yarn]      (no argument: all five)
# 1. bpc: bits/char on short held-out Russian (first 300 UD Russian test sentences) with no RoPE scaling, YaRN x2, x4
# 2. prefill: chunked prefill time, tokens/s, KV MiB per 1k tokens, transient memory, 1k-16k tokens (fp32, bf16)
# 3. niah: tpro eval long, passkey at 1k-16k tokens x 5 depths, direct mode, native context (32k)
# 4. multikey: four codes, one asked (three distractors), 1k-4k tokens x 5 depths
# 5. yarn: passkey past the native context with --rope-scaling yarn:2 (32k, depth 0.5: a 32k prefill takes ~25 min
#    on 2 cores; YARN_LENGTHS / YARN_DEPTHS for more)
# Results under bench/results/long_context/ (OUT=... to change). Needs ../shared/data/ud/ru_test.txt for bpc.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/long_context}
TPRO=${TPRO:-.venv/bin/tpro}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
stages=${*:-bpc prefill niah multikey yarn}
common=(--dtype float32 --threads 2)
for stage in $stages; do
  case $stage in
    bpc)
      for rs in none yarn:2 yarn:4; do
        "$TPRO" model bpc ../shared/data/ud/ru_test.txt --limit 300 "${common[@]}" --rope-scaling "$rs" --json \
          > "$OUT/bpc_${rs/:/}.json"
      done ;;
    prefill)
      "$PY" bench/long_prefill.py --lengths 1024,2048,4096,8192,16384 --dtypes float32 --threads 2 \
        --out "$OUT/prefill_float32.json"
      "$PY" bench/long_prefill.py --lengths ${BF16_LENGTHS:-1024,2048,4096} --dtypes bfloat16 --threads 2 \
        --out "$OUT/prefill_bfloat16.json" ;;
    niah)
      "$TPRO" eval long "${common[@]}" --batch 1 --lengths 1k,2k,4k,8k,16k --no-progress -o "$OUT/niah_native" ;;
    multikey)
      "$TPRO" eval long "${common[@]}" --batch 1 --tasks multikey --lengths 1k,2k,4k --no-progress \
        -o "$OUT/niah_multikey" ;;
    yarn)
      "$TPRO" eval long "${common[@]}" --batch 1 --rope-scaling yarn:2 --lengths ${YARN_LENGTHS:-32k} \
        --depths ${YARN_DEPTHS:-0.5} --no-progress -o "$OUT/niah_yarn2" ;;
    *) echo "unknown stage $stage (bpc prefill niah multikey yarn)" >&2; exit 2 ;;
  esac
done
