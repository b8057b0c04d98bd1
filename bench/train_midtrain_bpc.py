"""Bits per character on held-out Russian text across the tokenizer swap and a CPU-sized midtraining run.

Phases (each result is saved to ``<out>/results.json`` as soon as it exists, so a killed run resumes at the next
phase): ``base`` = the embedded default before the swap; ``remapped`` = the same model right after
``tpro tokenizer remap-model`` (Cyrillic-dense tokenizer, new rows initialised); ``midtrained`` = the remapped
model after ``tpro train midtrain`` (embeddings + lm_head only, or LoRA) on Russian instruction text; optionally
``control`` = the *base* model midtrained the same way, which separates recovery from the swap from plain
adaptation to the training text. BPC is ``tpro.models.bpc.bits_per_char`` (tokenizer-independent).

    python bench/train_midtrain_bpc.py --remapped /work/notes/artifacts/remapped-default \\
        --train ../shared/data/ru-alpaca-seed/seed_tasks.jsonl --train ../shared/data/ud/ru_dev.txt \\
        --test ../shared/data/ud/ru_test.txt --steps 50 --out bench/results/train_midtrain_bpc
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from pathlib import Path


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def bpc_of(model_dir: str, texts: list[str], max_length: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tpro.models.bpc import bits_per_char

    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    # batch_tokens bounds the logits tensor (batch_tokens x 151936 floats): 1024 -> ~0.6 GB.
    bpc = bits_per_char(model, tok, texts, max_length=max_length, batch_tokens=1024)
    n_tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
    del model
    gc.collect()
    return {
        "model": model_dir,
        "bpc": bpc,
        "tokens": n_tokens,
        "chars": sum(map(len, texts)),
        "chars_per_token": sum(map(len, texts)) / n_tokens,
        "wall_s": round(time.time() - t0, 1),
    }


def training_rows(paths: list[str], sentences_per_doc: int = 8) -> list[dict]:
    """Instruction rows as they are (jsonl), running text grouped into short documents (txt)."""
    from tpro.train.chat import read_rows

    rows: list[dict] = []
    for p in paths:
        got = read_rows(p)
        if p.endswith(".txt"):
            lines = [r["text"] for r in got]
            got = [
                {"text": " ".join(lines[i : i + sentences_per_doc])} for i in range(0, len(lines), sentences_per_doc)
            ]
        rows.extend(got)
    return rows


def midtrain(model_dir: str, data: Path, out: Path, args) -> dict:
    from tpro.train import midtrain as mt

    argv = [
        "--model",
        model_dir,
        "--data",
        str(data),
        "--out",
        str(out),
        "--train_only",
        args.train_only,
        "--max_steps",
        str(args.steps),
        "--max_length",
        str(args.block),
        "--per_device_train_batch_size",
        "1",
        "--gradient_accumulation_steps",
        str(args.accum),
        "--learning_rate",
        str(args.lr),
        "--warmup_steps",
        str(max(1, args.steps // 10)),
        "--save_steps",
        str(max(5, args.steps // 4)),
        "--logging_steps",
        "5",
        "--threads",
        str(args.threads),
    ] + (["--bf16"] if args.bf16 else [])
    if args.train_only == "lora":
        argv[argv.index("--train_only") + 1] = "all"
        argv += ["--lora", "--lora_modules_to_save", "embed_tokens,lm_head"]
    s = mt.main(argv)
    return {
        k: s[k]
        for k in (
            "global_step",
            "tokens_seen",
            "wall_s",
            "first_loss",
            "last_loss",
            "trainable_params",
            "final_dir",
            "resumed_from",
        )
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="default", help="model before the swap (default: the embedded model)")
    ap.add_argument(
        "--remapped",
        required=True,
        help="checkpoint written by `tpro tokenizer remap-model` (made here "
        "from --tokenizer with the mean init when it does not exist)",
    )
    ap.add_argument(
        "--tokenizer",
        default="/work/notes/artifacts/tokenizer-qwen25-cyr",
        help="adapted tokenizer (`tpro tokenizer adapt`), used when --remapped must be made; waited for",
    )
    ap.add_argument("--train", action="append", required=True, help="training text (.jsonl rows or .txt lines)")
    ap.add_argument("--test", required=True, help="held-out text, one document per line")
    ap.add_argument("--out", default="bench/results/train_midtrain_bpc", help="results.json goes here")
    ap.add_argument(
        "--work", default="/tmp/tpro-bench-midtrain", help="training data and checkpoints (GBs; not in git)"
    )
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--accum", type=int, default=4)
    ap.add_argument("--block", type=int, default=256, help="tokens per packed training sequence")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--train-only", default="embeddings", choices=["embeddings", "lora"])
    ap.add_argument("--control", action="store_true", help="also midtrain the base model the same way")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=512, help="BPC scoring window")
    ap.add_argument("--lines", type=int, default=0, help="score only the first N test lines (0 = all)")
    ap.add_argument("--bf16", action="store_true", help="train with bf16 autocast (AMX on CPU); BPC stays fp32")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "results.json"
    res = json.loads(res_path.read_text()) if res_path.is_file() else {}

    def save():
        tmp = res_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, ensure_ascii=False, indent=1))
        os.replace(tmp, res_path)

    res["settings"] = {**vars(args), "date": time.strftime("%Y-%m-%d")}
    texts = [line.strip() for line in Path(args.test).read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = texts[: args.lines or None]
    from tpro.train.common import model_path

    base_dir = model_path(args.base)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = work / "midtrain_data.jsonl"
    if not data.is_file():
        rows = training_rows(args.train)
        data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    def remap() -> dict:
        if Path(args.remapped, "model.safetensors").is_file():
            return {"made_here": False, "dir": args.remapped}
        from tpro.tokenizer.remap import RemapConfig
        from tpro.tokenizer.remap import remap as do_remap

        while not Path(args.tokenizer, "report.json").is_file():  # adapt writes its directory atomically
            log(f"waiting for {args.tokenizer}")
            time.sleep(30)
        t0 = time.time()
        stats = do_remap(
            RemapConfig(model=args.base, tokenizer=args.tokenizer, out=args.remapped, method="mean"),
            show_progress=False,
        )
        return {
            "made_here": True,
            "dir": args.remapped,
            "tokenizer": args.tokenizer,
            "method": "mean",
            "swapped_rows": stats["swapped"],
            "wall_s": round(time.time() - t0, 1),
        }

    phases = [
        ("base", lambda: bpc_of(base_dir, texts, args.max_length)),
        ("remap", remap),
        ("remapped", lambda: bpc_of(args.remapped, texts, args.max_length)),
        ("midtrain_run", lambda: midtrain(args.remapped, data, work / "midtrained", args)),
        ("midtrained", lambda: bpc_of(str(work / "midtrained" / "final"), texts, args.max_length)),
    ]
    if args.control:
        phases += [
            ("control_run", lambda: midtrain(base_dir, data, work / "control", args)),
            ("control", lambda: bpc_of(str(work / "control" / "final"), texts, args.max_length)),
        ]
    for name, fn in phases:
        if name in res:
            log(f"{name}: done earlier: {res[name]}")
            continue
        log(f"{name}: running")
        res[name] = fn()
        save()
        log(f"{name}: {res[name]}")
    log("all phases done")


if __name__ == "__main__":
    main()
