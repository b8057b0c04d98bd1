"""Decode benchmark: tokens/s per domain for ``model.generate`` (fp32 and bf16), ``model.generate``
with prompt lookup (``pld``), our vanilla loop and EAGLE, side by side in one process (this CPU is shared, so only ratios measured together mean anything).

Each (temperature, prompt) runs every method back to back; per domain we report total generated tokens / total
wall time, the speedup of every method over ``model.generate`` and over our vanilla loop, EAGLE's mean acceptance
length (accepted draft tokens per verify step + 1) and its draft / verify time split. ``model.generate`` runs in
every dtype of ``generate_dtypes`` and "speedup vs generate" takes the fastest of them (which one wins on this CPU
depends on the load: bf16 on a quiet machine); prompt lookup and our vanilla loop run in ``baseline_dtype``, EAGLE's
target in ``eagle_dtype`` (both bf16 by default, so "vs vanilla" compares decoding methods at one dtype).
Knows nothing about training heads.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

METHODS = ("generate", "pld", "vanilla", "eagle")  # generate runs once per dtype in generate_dtypes


@dataclass
class BenchConfig:
    target: str = "default"
    draft: str | None = None  # head dir or "default"; None = no EAGLE rows
    prompts: str = ""  # JSONL with "prompt" and "domain" ("" = the shipped held-out prompts)
    max_new_tokens: int = 256
    temperatures: list[float] = field(default_factory=lambda: [0.0])
    reasoning: bool = False
    per_domain: int = 2  # prompts per domain (0 = all)
    baseline_dtype: str = "bfloat16"  # pld and the vanilla loop
    eagle_dtype: str = "bfloat16"
    generate_dtypes: list[str] = field(default_factory=lambda: ["float32", "bfloat16"])
    prompt_lookup: int = 10  # prompt_lookup_num_tokens for the pld row
    methods: list[str] = field(default_factory=lambda: list(METHODS))  # which rows to run (a loaded CPU needs fewer)
    depth: int | None = None  # EAGLE tree knobs (None = EagleConfig.for_model defaults)
    top_k: int | None = None
    total_tokens: int | None = None
    seed: int = 0
    threads: int = 0


@dataclass
class Run:
    method: str
    domain: str
    prompt_id: str
    temperature: float
    tokens: int
    seconds: float
    steps: int = 0
    accepted: int = 0
    draft_s: float = 0.0
    verify_s: float = 0.0


def _short(dtype: str) -> str:
    return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(dtype, dtype)


def _eos(model, tok) -> set[int]:
    from tpro.engine.engine import eos_ids

    return eos_ids(model, tok)


def run_generate(lm, ids: list[int], n: int, temperature: float, seed: int, pld: int = 0) -> tuple[int, float]:
    """``model.generate`` -> (new tokens up to EOS, seconds)."""
    model = lm.model
    x = torch.tensor([ids], device=model.device)
    kw = dict(
        do_sample=temperature > 0, max_new_tokens=n, pad_token_id=lm.tokenizer.pad_token_id or lm.tokenizer.eos_token_id
    )
    if temperature > 0:
        kw.update(temperature=temperature, top_p=1.0, top_k=0)
    if pld:
        kw["prompt_lookup_num_tokens"] = pld
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), **kw)[0, len(ids) :].tolist()
    dt = time.perf_counter() - t0
    eos = _eos(model, lm.tokenizer)
    k = next((i for i, t in enumerate(out) if t in eos), len(out))
    return k, dt


def run_engine(engine, chat, n: int, temperature: float, seed: int, decoder=None) -> Run:
    from tpro.engine import SamplingParams

    done = engine.complete(chat, SamplingParams(max_new_tokens=n, temperature=temperature, seed=seed), decoder=decoder)
    t = done.telemetry
    return Run("", "", "", temperature, t.generated_tokens, t.total_s, t.steps, t.draft_accepted, t.draft_s, t.verify_s)


def summarize(runs: list[Run]) -> list[dict]:
    """Per (temperature, domain, method) totals, and speedups against generate and vanilla of the same group."""
    groups: dict[tuple, dict] = defaultdict(lambda: defaultdict(float))
    for r in runs:
        for dom in (r.domain, "all"):
            g = groups[(r.temperature, dom, r.method)]
            g["tokens"] += r.tokens
            g["seconds"] += r.seconds
            g["steps"] += r.steps
            g["accepted"] += r.accepted
            g["draft_s"] += r.draft_s
            g["verify_s"] += r.verify_s
            g["prompts"] += 1
    rows = []
    for (temp, dom, method), g in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1] == "all", kv[0][1], kv[0][2])
    ):
        tps = g["tokens"] / max(g["seconds"], 1e-9)
        # "generate" = model.generate at its fastest dtype in this group (one row per generate_dtypes entry: which
        # one wins on this CPU depends on the load, see the Foundation section)
        gens = [v for (t2, d2, m2), v in groups.items() if (t2, d2) == (temp, dom) and m2.startswith("generate-")]
        ref = {
            "generate": max(gens, key=lambda v: v["tokens"] / max(v["seconds"], 1e-9), default=None),
            "vanilla": groups.get((temp, dom, "vanilla")),
        }
        row = {
            "temperature": temp,
            "domain": dom,
            "method": method,
            "prompts": int(g["prompts"]),
            "tokens": int(g["tokens"]),
            "seconds": round(g["seconds"], 2),
            "tokens_per_s": round(tps, 2),
        }
        for m, r in ref.items():
            row[f"speedup_vs_{m}"] = round(tps / (r["tokens"] / r["seconds"]), 3) if r and r["seconds"] else None
        if g["steps"]:
            row["acceptance_length"] = round((g["accepted"] + g["steps"]) / g["steps"], 3)
            spent = g["draft_s"] + g["verify_s"]
            row["draft_share"] = round(g["draft_s"] / spent, 3) if spent else None
            row["ms_per_step"] = round(1000 * spent / g["steps"], 1)
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    head = "| T | domain | method | tokens/s | vs generate | vs vanilla | accept len | draft share | ms/step |\n|---|---|---|---|---|---|---|---|---|\n"
    fmt = lambda v, f="{:.2f}": "" if v is None else f.format(v)  # noqa: E731
    return head + "".join(
        f"| {r['temperature']} | {r['domain']} | {r['method']} | {r['tokens_per_s']:.2f} | {fmt(r['speedup_vs_generate'], '{:.2f}x')} "
        f"| {fmt(r['speedup_vs_vanilla'], '{:.2f}x')} | {fmt(r.get('acceptance_length'))} | {fmt(r.get('draft_share'))} "
        f"| {fmt(r.get('ms_per_step'), '{:.0f}')} |\n"
        for r in rows
    )


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sel = [r for r in rows if r["domain"] != "all"]
    groups = sorted({(r["temperature"], r["domain"]) for r in sel})
    methods = sorted({r["method"] for r in sel})
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups)), 4))
    w = 0.8 / max(1, len(methods))
    for j, m in enumerate(methods):
        ys = [
            next((r["tokens_per_s"] for r in sel if (r["temperature"], r["domain"], r["method"]) == (*g, m)), 0)
            for g in groups
        ]
        ax.bar([i + j * w for i in range(len(groups))], ys, w, label=m)
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(groups))], [f"{d}\nT={t}" for t, d in groups])
    ax.set_ylabel("tokens/s")
    ax.set_title("decode speed per domain (batch 1)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_bench(cfg: BenchConfig, log=print, on_result=None) -> dict:
    """Run every method on every picked prompt; ``on_result(result)`` after each run (partial results survive a kill)."""
    from tpro.eagle import load_decoder
    from tpro.eagle.data import PROMPTS_DIR, read_prompts
    from tpro.engine import Engine
    from tpro.models import build_prompt, load_model

    unknown = set(cfg.methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    from tpro.models.loading import DTYPES

    for d in [cfg.baseline_dtype, cfg.eagle_dtype, *cfg.generate_dtypes]:  # before loading anything
        if d not in DTYPES:
            raise ValueError(f"unknown dtype {d!r}; choose one of {', '.join(DTYPES)}")
    rows = read_prompts(cfg.prompts or PROMPTS_DIR / "heldout.jsonl")
    by_dom: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_dom[r.get("domain", "all")].append(r)
    picked = [r for d in sorted(by_dom) for r in (by_dom[d][: cfg.per_domain] if cfg.per_domain else by_dom[d])]
    loaded: dict[str, object] = {}

    def model_in(dtype):  # one copy of the target per dtype, shared by every row that runs in it
        if dtype not in loaded:
            loaded[dtype] = load_model(cfg.target, dtype=dtype, threads=cfg.threads or None, progress=False)
        return loaded[dtype]

    base = model_in(cfg.baseline_dtype)
    base_engine = Engine.from_loaded(base)
    eagle_engine = decoder = None
    gen_models = {_short(d): model_in(d) for d in cfg.generate_dtypes} if "generate" in cfg.methods else {}
    if cfg.draft:
        elm = model_in(cfg.eagle_dtype)
        decoder = load_decoder(cfg.draft, elm, depth=cfg.depth, top_k=cfg.top_k, total_tokens=cfg.total_tokens)
        eagle_engine = Engine.from_loaded(elm, decoder=decoder)
    mode = "reasoning" if cfg.reasoning else "direct"
    runs: list[Run] = []

    def result(runs):
        return {
            "config": asdict(cfg),
            "eagle": asdict(decoder.cfg) if decoder else None,
            "machine": f"{torch.get_num_threads()} torch threads, torch {torch.__version__}",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "summary": summarize(runs),
            "runs": [asdict(r) for r in runs],
        }

    for temp in cfg.temperatures:
        for r in picked:
            chat = build_prompt(base.tokenizer, r["prompt"], mode)
            dom, pid = r.get("domain", "all"), r.get("id", "")

            def add(method, run: Run):
                run.method, run.domain, run.prompt_id = method, dom, pid
                runs.append(run)
                log(
                    f"T={temp} {dom} {pid} {method}: {run.tokens} tok in {run.seconds:.1f}s = {run.tokens / max(run.seconds, 1e-9):.2f} tok/s"
                )
                if on_result:
                    on_result(result(runs))

            for name, glm in gen_models.items():
                k, dt = run_generate(glm, chat.input_ids, cfg.max_new_tokens, temp, cfg.seed)
                add(f"generate-{name}", Run("", "", "", temp, k, dt))
            if "pld" in cfg.methods and temp == 0:  # prompt lookup: greedy rows only
                k, dt = run_generate(base, chat.input_ids, cfg.max_new_tokens, temp, cfg.seed, pld=cfg.prompt_lookup)
                add("pld", Run("", "", "", temp, k, dt))
            if "vanilla" in cfg.methods:
                add("vanilla", run_engine(base_engine, chat, cfg.max_new_tokens, temp, cfg.seed))
            if eagle_engine is not None and "eagle" in cfg.methods:
                add("eagle", run_engine(eagle_engine, chat, cfg.max_new_tokens, temp, cfg.seed))
    return result(runs)


def write_outputs(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "decode.json.tmp"
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    tmp.replace(out / "decode.json")
    (out / "decode.md").write_text(markdown(result["summary"]))
    plot(result["summary"], out / "decode.png")
