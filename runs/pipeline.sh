#!/usr/bin/env bash
# The T-pro 2.0 recipe end to end, at toy scale on a CPU in minutes:
#   tokenizer adapt -> remap -> midtrain -> SFT -> reward model -> on-policy pairs -> DPO -> EAGLE head -> eval
# on a tiny random-init Qwen3 (tpro.models.tiny) with the small Russian sets in runs/data/. Nothing here is a
# quality run: it proves every stage's command works on the previous stage's output. Beside each step, "Real
# scale" gives T-pro 2.0's settings on Qwen3-32B (the paper's figures; "ours" marks settings the paper does not
# give) and the config that carries them.
#
#   bash runs/pipeline.sh [WORK_DIR]      # default runs-out/pipeline (git-ignored); THREADS=2 by default
#
# Rerunning continues: every training stage resumes from its newest checkpoint in its output directory, pair
# building and eval resume per prompt/item. tests/test_pipeline.py runs this script in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
W="${1:-runs-out/pipeline}"
THREADS="${THREADS:-2}"
D=runs/data
mkdir -p "$W"
step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

# 0. Base model. Real scale: Qwen/Qwen3-32B (hub id; every command below takes it as --model/--base).
step "base: tiny random-init Qwen3"
[ -f "$W/base/model.safetensors" ] || python -c "from tpro.models.tiny import make_tiny_model as m; m('$W/base', arch='qwen3', tie_word_embeddings=True)"

# 1. Cyrillic-dense tokenizer: swap low-value tokens for Cyrillic ones, ids of kept tokens unchanged.
#    Real scale: tpro tokenizer adapt --base Qwen/Qwen3-32B --swap 34000 --out runs-out/tok-qwen3-cyr
#    (T-pro 2.0 replaced ~34k of Qwen3's ~151k tokens; default corpora: wordfreq + hunspell word lists).
step "tokenizer adapt"
[ -f "$W/tok/tokenizer.json" ] || tpro tokenizer adapt --base "$W/base" --swap 32 --out "$W/tok" \
  --corpus "$D/corpus.txt" --keep-corpus "$D/corpus.txt" --trainer-words 20000 --quiet

# 2. Remap the model to the new vocabulary: swapped rows of embed_tokens/lm_head re-initialised (mean of the old
#    pieces), kept rows bit-identical.  Real scale: same command with --model Qwen/Qwen3-32B (on one large node).
step "remap model"
[ -f "$W/remapped/model.safetensors" ] || tpro tokenizer remap-model --model "$W/base" --tokenizer "$W/tok" --out "$W/remapped"

# 3. Midtraining, two phases: embeddings + lm_head only (re-align the new rows with the frozen body), then all
#    weights. Real scale: ~40B tokens of instruction-formatted text, about half Russian, reasoning-heavy, 32K
#    context, full fine-tuning under ZeRO-3: configs/train/midtrain-qwen3-32b.yaml (optimiser settings ours).
step "midtrain: embeddings + lm_head"
tpro train midtrain --config configs/train/midtrain.yaml --model "$W/remapped" --data "$D/instructions.jsonl" \
  --out "$W/midtrain-emb" --max-steps 6 --max-length 64 --gradient-accumulation-steps 1 --learning-rate 1e-2 \
  --warmup-steps 0 --save-steps 3 --logging-steps 1 --threads "$THREADS"
step "midtrain: all weights"
tpro train midtrain --config configs/train/midtrain.yaml --model "$W/midtrain-emb/final" \
  --data "$D/instructions.jsonl" --out "$W/midtrain" --train-only all --max-steps 6 --max-length 64 \
  --gradient-accumulation-steps 1 --learning-rate 3e-3 --warmup-steps 0 --save-steps 3 --logging-steps 1 \
  --threads "$THREADS"

# 4. SFT in both modes (rows with a <think> trace train reasoning, the rest direct), loss on assistant turns, run
#    through `accelerate launch` exactly as on a cluster (here one CPU process).
#    Real scale: 468k general instructions (8 completions each, the best kept by the reward model) plus a
#    reasoning set with traces: accelerate launch --config_file configs/accelerate/zero3.yaml -m tpro.train.sft
#    --config configs/train/sft-qwen3-32b.yaml
step "SFT (accelerate launch, 1 CPU process)"
accelerate launch --cpu --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
  -m tpro.train.sft --config configs/train/sft.yaml --model "$W/midtrain/final" --data "$D/instructions.jsonl" \
  --out "$W/sft" --lora false --max-steps 8 --gradient-accumulation-steps 1 --per-device-train-batch-size 4 \
  --learning-rate 3e-3 --eval-fraction 0 --save-steps 4 --logging-steps 1 --threads "$THREADS"

# 5. Reward model: Bradley-Terry on chosen/rejected pairs, accuracy on held-out pairs in summary.json.
#    Real scale: Qwen3-32B reward model: configs/train/rm-qwen3-32b.yaml under ZeRO-3.
step "reward model"
tpro train rm --config configs/train/rm.yaml --model "$W/sft/final" --data "$D/preferences.jsonl" --out "$W/rm" \
  --lora false --max-steps 8 --gradient-accumulation-steps 1 --per-device-train-batch-size 4 --learning-rate 3e-3 \
  --eval-fraction 0.25 --save-steps 4 --logging-steps 1 --threads "$THREADS"

# 6. On-policy pairs: K seeded samples per prompt from the SFT policy through the engine, scored by the reward
#    model, best vs worst (sample j of prompt i seeded with seed + 1000*i + j). Real scale: --k 16 with the
#    Qwen3-32B reward model (configs/train/pairs.yaml documents it).
step "build on-policy pairs"
tpro train build-pairs --config configs/train/pairs.yaml --model "$W/sft/final" --prompts "$D/prompts.jsonl" \
  --reward-model "$W/rm/final" --out "$W/pairs.jsonl" --k 4 --temperature 1.0 --max-new-tokens 16 --threads "$THREADS"

# 7. DPO on the on-policy pairs plus playground votes (the same JSONL preference format; runs/data/preferences.jsonl
#    stands in for `tpro playground export`). Real scale: beta 0.5, LR 1e-7, full fine-tuning with a frozen
#    reference: configs/train/dpo-qwen3-32b.yaml under ZeRO-3.
step "DPO"
cat "$W/pairs.jsonl" "$D/preferences.jsonl" > "$W/dpo-data.jsonl"
tpro train dpo --config configs/train/dpo.yaml --model "$W/sft/final" --data "$W/dpo-data.jsonl" --out "$W/dpo" \
  --lora false --max-steps 6 --gradient-accumulation-steps 1 --per-device-train-batch-size 4 --learning-rate 1e-3 \
  --save-steps 3 --logging-steps 1 --threads "$THREADS"

# 8. EAGLE draft head for the final model: self-distilled features, then a few training steps.
#    Real scale: T-pro 2.0 ships an EAGLE head for T-pro-it-2.0 served by SGLang (`tpro eagle export`).
step "EAGLE head"
tpro eagle build-data --target "$W/dpo/final" --prompts "$D/prompts.jsonl" --out "$W/eagle-data" --limit 4 \
  --max-new-tokens 16 --max-length 128 --dtype float32 --threads "$THREADS"
tpro eagle train --target "$W/dpo/final" --data "$W/eagle-data" --out "$W/eagle" --steps 4 --batch-size 2 \
  --max-length 128 --hot-vocab 0 --warmup 0 --mixed-precision no --threads "$THREADS" --no-progress

# 9. Evaluation in both modes with the EAGLE head as the decoder (lossless: same answers, faster at scale).
#    Real scale: tpro eval run --bench t-math --model t-tech/T-pro-it-2.0 --mode both (the full 325 items).
step "eval"
tpro eval run --path "$D/prompts.jsonl" --question-field prompt --answer-field answer --id-field id \
  --model "$W/dpo/final" --draft "$W/eagle" --mode both --limit 2 --max-tokens-direct 16 --max-tokens-reasoning 24 \
  --threads "$THREADS" --out "$W/eval" --no-progress

step "done: $W"
