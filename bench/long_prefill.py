"""Long prompts on the CPU: chunked prefill time, speed and memory of the embedded model (issue 16).

    python bench/long_prefill.py                                  # 1k..16k tokens, fp32 and bf16
    python bench/long_prefill.py --lengths 256,512 --dtypes float32   # a smoke run
    python bench/long_prefill.py --lengths 4096 --chunks 128,256,512,1024,0   # chunk sizes (0: one forward)

For each dtype, prompt length and chunk size: one prefill of a Russian text cut to that many tokens into a fresh
``DynamicCache`` through ``tpro.engine.decoder.prefill`` (the engine's own path, last-position logits only), timed
wall-clock after one short warm-up prefill per dtype; the KV cache's bytes from its tensors (``nbytes``), checked
against ``kv_bytes_per_token`` x tokens; and the peak growth of the process's RSS during the prefill (psutil
sampled every 2 ms, after glibc's ``malloc_trim``; without psutil, ``ru_maxrss``, which only sees new
process-wide peaks). RSS growth minus the
KV cache is the prefill's transient working memory (activations, attention scores), what the chunk bounds.
Prints a markdown table; writes JSON (``--out``). Run on a quiet machine: prefill is compute-bound, so a busy
CPU shows up directly in tokens/s.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import platform
import resource
import threading
import time
from pathlib import Path

import torch
from transformers import DynamicCache

from tpro.engine.decoder import PREFILL_CHUNK, kv_bytes_per_token, prefill

SENTENCES = [
    "Москва стоит на реке Москве, и летом по набережным гуляют тысячи людей.",
    "В библиотеке университета хранятся старые рукописи, карты и письма учёных.",
    "Чтобы решить задачу, сначала запишем условие и обозначим неизвестное через x.",
    "Осенью в лесу пахнет грибами, а под ногами шуршат жёлтые листья.",
    "Поезд из Казани прибыл с опозданием на двадцать минут из-за снегопада.",
    "Программа читает файл построчно, считает слова и печатает самые частые.",
]
MiB = 2**20


def russian_ids(tokenizer, n: int) -> list[int]:
    """At least ``n`` token ids of Russian text: the sentences above, numbered and repeated."""
    parts, ids, k = [], [], 0
    while len(ids) < n:
        step = [f"{k + i + 1}. {SENTENCES[(k + i) % len(SENTENCES)]}" for i in range(64)]
        parts.extend(step)
        k += 64
        ids = tokenizer(" ".join(parts), add_special_tokens=False).input_ids
    return ids[:n]


class PeakRSS:
    """Peak resident memory growth over a ``with`` block, MiB."""

    def __init__(self):
        try:
            import psutil

            self.proc = psutil.Process()
        except ImportError:
            self.proc = None
        self.method = "psutil, sampled every 2 ms" if self.proc else "ru_maxrss (new process peaks only)"

    def rss(self) -> int:
        if self.proc is not None:
            return self.proc.memory_info().rss
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux

    def __enter__(self):
        self.base = self.peak = self.rss()
        self.stop = threading.Event()
        if self.proc is not None:
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while not self.stop.wait(0.002):
            self.peak = max(self.peak, self.rss())

    def __exit__(self, *exc):
        self.stop.set()
        if self.proc is not None:
            self.thread.join()
        self.peak = max(self.peak, self.rss())
        self.growth_mib = (self.peak - self.base) / MiB


@torch.inference_mode()
def run_prefill(model, ids: torch.Tensor, chunk: int) -> tuple[DynamicCache, float, int]:
    """One prefill of ids [1, S] -> (the cache, wall seconds, chunks)."""
    cache = DynamicCache(config=model.config)
    gen = prefill(model, ids, cache, chunk)
    chunks = 1
    t0 = time.perf_counter()
    while True:
        try:
            next(gen)
            chunks += 1
        except StopIteration:
            break
    return cache, time.perf_counter() - t0, chunks


def cache_bytes(cache: DynamicCache) -> int:
    return sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)


def release_freed() -> None:
    """Hand freed heap memory back to the OS, so the next row's RSS growth starts from what is live (glibc keeps
    an earlier row's freed cache and activations otherwise, and the growth reads too low, even negative)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def measure(model, ids: list[int], chunk: int, rss: PeakRSS) -> dict:
    n = len(ids)
    x = torch.tensor([ids])
    release_freed()
    with rss:
        cache, wall, chunks = run_prefill(model, x, chunk or n)
        kv = cache_bytes(cache)
    expect = kv_bytes_per_token(model) * n
    del cache
    return {
        "tokens": n,
        "chunk": chunk or n,
        "chunks": chunks,
        "prefill_s": round(wall, 3),
        "prefill_tokens_per_s": round(n / wall, 1),
        "kv_mib": round(kv / MiB, 2),
        "kv_mib_per_1k_tokens": round(kv / n * 1000 / MiB, 3),
        "kv_matches_config": kv == expect,
        "peak_rss_growth_mib": round(rss.growth_mib, 1),
        "working_mib": round(rss.growth_mib - kv / MiB, 1),  # RSS growth beyond the KV cache
    }


def machine(threads: int) -> dict:
    import transformers

    from tpro.models.loading import cpu_has_native_bf16

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "native_bf16": cpu_has_native_bf16(),
        "threads": threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--lengths", default="1024,2048,4096,8192,16384", help="prompt lengths in tokens, comma-separated")
    ap.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated: float32, bfloat16")
    ap.add_argument("--chunks", default=str(PREFILL_CHUNK), help="prompt tokens per forward, comma-separated; 0: all")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="bench/results/long_prefill.json")
    ap.add_argument("--json", action="store_true", help="also print the JSON result")
    args = ap.parse_args()
    from tpro.models import load_model

    lengths = [int(x) for x in args.lengths.split(",")]
    chunks = [int(x) for x in args.chunks.split(",")]
    rss = PeakRSS()
    result = {**machine(args.threads), "model": args.model, "rss_method": rss.method, "rows": []}
    print(f"{result['cpu']}, {args.threads} threads, torch {result['torch']}, RSS by {rss.method}\n")
    print(
        "| dtype | tokens | chunk | prefill s | tokens/s | KV MiB | KV MiB/1k tokens | peak RSS + MiB | beyond KV MiB |\n"
        "|---|---|---|---|---|---|---|---|---|",
        flush=True,
    )
    for dtype in args.dtypes.split(","):
        lm = load_model(args.model, dtype=dtype, weights="bf16", threads=args.threads, progress=False)
        context = int(getattr(lm.model.config, "max_position_embeddings", 32768))
        ids = russian_ids(lm.tokenizer, max(lengths))
        run_prefill(lm.model, torch.tensor([ids[:64]]), PREFILL_CHUNK)  # warm-up: one-off allocations, kernels
        for n in lengths:
            if n > context:
                print(f"| {dtype} | {n} | skipped: over the model's context of {context} |")
                continue
            for chunk in chunks:
                row = {"dtype": dtype, **measure(lm.model, ids[:n], chunk, rss)}
                result["rows"].append(row)
                print(
                    f"| {dtype} | {n} | {row['chunk']} | {row['prefill_s']:.2f} | {row['prefill_tokens_per_s']:.0f} "
                    f"| {row['kv_mib']:.1f} | {row['kv_mib_per_1k_tokens']:.2f} | {row['peak_rss_growth_mib']:.0f} "
                    f"| {row['working_mib']:.0f} |",
                    flush=True,
                )
                assert row["kv_matches_config"], f"KV cache bytes differ from kv_bytes_per_token x tokens: {row}"
        del lm
        release_freed()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False))
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
