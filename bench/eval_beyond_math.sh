#!/usr/bin/env bash
# Issue 15's figures for the embedded default on this CPU, in one go (~1.5 h on 2 cores):
#   RU_ARENA=/path/to/ru_llm_arena bash bench/eval_beyond_math.sh [arena] [mc] [report]   (no argument: all three)
# 1. arena: 30 ru_llm_arena questions (data/arena-hard-v0.1/question.jsonl of github.com/VikhrModels/ru_llm_arena,
#    Apache-2.0, commit 501ab65d), the embedded default in direct and reasoning modes through `tpro serve` against
#    the published gpt-3.5-turbo-0125 answers (data/arena-hard-v0.1/model_answer/), judged by the same embedded
#    model through the same server; killed once mid-judging and resumed (KILL_AFTER judgments, default 7).
# 2. mc: the 20-question Russian multiple-choice set of the tests (tests/assets/ru_mc20.jsonl), options scored by
#    log-likelihood (local engine, fp32) and by a generated letter in both modes (through the server).
# 3. report: `tpro eval report` over the three runs: one table across benchmarks.
# Results under bench/results/eval_beyond_math/ (OUT=... to change); run directories under $RUNS.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/eval_beyond_math}
RUNS=${RUNS:-/tmp/tpro-eval-beyond-math}
TPRO=${TPRO:-.venv/bin/tpro}
PORT=${PORT:-8011}
URL=http://127.0.0.1:$PORT/v1
mkdir -p "$OUT" "$RUNS"
stages=${*:-arena mc report}

"$TPRO" serve --port "$PORT" --threads 2 > "$RUNS/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until curl -sf "$URL/models" > /dev/null; do sleep 2; done

arena=(eval arena --questions "${RU_ARENA:?set RU_ARENA to a ru_llm_arena checkout}/data/arena-hard-v0.1/question.jsonl"
  --limit 30 --answers "$RU_ARENA/data/arena-hard-v0.1/model_answer/gpt-3.5-turbo-0125.jsonl"
  --baseline gpt-3.5-turbo-0125 --endpoint "$URL" --name qwen2.5-coder-0.5b --mode both
  --max-new-tokens 512 --max-new-tokens-direct 256
  --judge-endpoint "$URL" --judge-name qwen2.5-coder-0.5b-judge --judge-max-new-tokens 256 --judge-concurrency 8
  --rounds 200 --seed 0 --no-progress --out "$RUNS/arena")

for stage in $stages; do
  case $stage in
    arena)
      # the kill: stop the run after KILL_AFTER judgments have been written, then start it again to finish
      "$TPRO" "${arena[@]}" > "$RUNS/arena-part1.log" 2>&1 &
      run=$!
      judged="$RUNS/arena/judgments/qwen2.5-coder-0.5b-judge"
      until [ "$(cat "$judged"/*.jsonl 2>/dev/null | wc -l)" -ge "${KILL_AFTER:-7}" ]; do sleep 10; done
      kill $run; wait $run || true
      "$TPRO" "${arena[@]}" > "$RUNS/arena-part2.log" 2>&1
      cp "$RUNS/arena/leaderboard".{md,json,png} "$OUT/" ;;
    mc)
      "$TPRO" eval run --bench choice-jsonl --path tests/assets/ru_mc20.jsonl --scoring loglik --dtype float32 \
        --threads 1 --out "$RUNS/mc-loglik" --no-progress > "$RUNS/mc-loglik.log" 2>&1
      "$TPRO" eval run --bench choice-jsonl --path tests/assets/ru_mc20.jsonl --endpoint "$URL" --mode both \
        --max-new-tokens-direct 128 --max-new-tokens 512 --concurrency 8 --out "$RUNS/mc-generate" --no-progress \
        > "$RUNS/mc-generate.log" 2>&1 ;;
    report)
      "$TPRO" eval report "$RUNS/mc-generate" "$RUNS/mc-loglik" "$RUNS/arena" --out "$OUT" --recheck --json \
        > "$OUT/report.json" ;;
    *) echo "unknown stage $stage (arena, mc, report)" >&2; exit 2 ;;
  esac
done
