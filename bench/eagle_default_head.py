"""Make the EAGLE head for the embedded default model, end to end, with the recorded recipe (one command).

    python bench/eagle_default_head.py --work runs/eagle [--steps 1600] [--no-generate] [--install]

1. teacher-forced features over the reference answers of the shipped train prompts (ru-alpaca outputs, GSM8K
   solutions): ``tpro eagle build-data --source reference --mode direct``;
2. self-distillation: the target answers every train prompt, alternating direct and reasoning mode, greedy, 256
   new tokens, batch 16 in bf16 (``tpro eagle build-data``); skipped with --no-generate;
3. ``tpro eagle train --config configs/eagle/train-default-head.yaml`` on both (the recipe: seed 0, FR-Spec
   vocabulary of 16384, AdamW, cosine, training-time test over draft depths 1..--unroll; windows of 384 tokens);
   the flags below override its values;
4. --install copies the head (bf16) to ``src/tpro/eagle/heads/qwen2.5-coder-0.5b/`` where
   ``tpro.eagle.default_head_dir()`` finds it.
Every stage is resumable: rerun the same command after a kill. Progress goes to stderr. On the 2-core CPU this
took ~30 min for step 2 and ~30 min for step 3 (1600 steps) (docs/benchmarks.md, EAGLE section); on a GPU, minutes.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from tpro.eagle import DEFAULT_HEAD, HEADS_DIR
from tpro.eagle.data import DataConfig, build_data
from tpro.eagle.train import TrainConfig, train

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "eagle" / "train-default-head.yaml"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="runs/eagle")
    # None = the recipe's value (configs/eagle/train-default-head.yaml)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--unroll", type=int)
    ap.add_argument("--hot-vocab", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-generate", action="store_true", help="skip self-distillation (~35 min on a 2-core CPU)")
    ap.add_argument("--install", action="store_true")
    a = ap.parse_args()
    work = Path(a.work)
    data = [build_data(DataConfig(out=str(work / "data-ref"), source="reference", mode="direct", threads=a.threads))]
    if not a.no_generate:
        data.append(build_data(DataConfig(out=str(work / "data-gen"), mode="alternate", threads=a.threads)))
    given = {
        k: getattr(a, k) for k in ("steps", "batch_size", "unroll", "hot_vocab", "lr") if getattr(a, k) is not None
    }
    cfg = TrainConfig.from_yaml(RECIPE, data=[str(d) for d in data], out=str(work / "head"), threads=a.threads, **given)
    head = train(cfg, progress=True)
    if a.install:
        dest = HEADS_DIR / DEFAULT_HEAD
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("head.safetensors", "head_config.json"):
            shutil.copy2(head / name, dest / name)
        print(f"installed into {dest}")


if __name__ == "__main__":
    main()
