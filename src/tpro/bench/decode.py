"""Decode benchmark: tokens/s per domain for ``model.generate`` (fp32 and bf16), ``model.generate`` with prompt
lookup (``pld``), our vanilla loop and EAGLE, side by side in one process (this CPU is shared, so only ratios
measured together mean anything).

Each (temperature, prompt) runs every method back to back; per domain we report total generated tokens / total
wall time, the speedup of every method over ``model.generate`` and over our vanilla loop, EAGLE's mean acceptance
length (accepted draft tokens per verify step + 1) and its draft / verify time split. ``model.generate`` runs in
every dtype of ``generate_dtypes`` and "speedup vs generate" takes the fastest of them (which one wins on this CPU
depends on the load: bf16 on a quiet machine); prompt lookup and our vanilla loop run in ``dtype``, EAGLE's
target in ``eagle_dtype`` (default: ``dtype``, bf16, so "vs vanilla" compares decoding methods at one dtype).
Knows nothing about training heads.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from tpro.config import ConfigError, like, opt
from tpro.eagle.options import target_model
from tpro.io import atomic_path, atomic_write, write_json
from tpro.options import DRAFT_HELP, DTYPES, MAX_TEMPERATURE, MODE_HELP, Mode, ModelOptions, SamplingOptions

METHODS = ("generate", "pld", "vanilla", "eagle")  # generate runs once per dtype in generate_dtypes


@dataclass(kw_only=True)
class BenchConfig(ModelOptions):
    """``tpro bench decode``: the target, the draft, the prompts and which rows to run."""

    model: str = target_model("Target model")
    draft: str = opt("none", DRAFT_HELP + "; none runs the baselines only", short="-d")
    prompts: str | None = opt(
        None, "JSONL with 'prompt' and 'domain' per row (default: the shipped held-out Russian prompts)"
    )
    # the benchmark's recipe (docs/benchmarks.md): 256 new tokens, not the shared 512, so a 2-core run takes minutes
    max_new_tokens: int = like(SamplingOptions, "max_new_tokens", 256)
    temperatures: list[float] = opt(
        [0.0],
        "Sampling temperature, repeatable: every value runs in this one process (0 = greedy)",
        short="-t",
        min=0.0,
        max=MAX_TEMPERATURE,
        aliases=("--temperature",),
    )
    mode: Mode = opt("direct", MODE_HELP, flags={"--reasoning": "reasoning"})
    per_domain: int = opt(2, "Prompts per domain (0 = all)", min=0)
    # bf16 on every machine: the recorded runs compare decoding methods at bf16 (docs/benchmarks.md)
    dtype: str = opt(
        "bfloat16",
        "dtype of the prompt-lookup row, the vanilla loop and (unless --eagle-dtype) the target EAGLE verifies with",
        choices=DTYPES,
        aliases=("--baseline-dtype",),
    )
    eagle_dtype: str | None = opt(None, "dtype of the target EAGLE verifies with (default: --dtype)", choices=DTYPES)
    generate_dtypes: list[str] = opt(
        ["float32", "bfloat16"],
        "model.generate runs in each (repeatable); speedups use the fastest",
        choices=DTYPES,
        aliases=("--generate-dtype",),
    )
    prompt_lookup: int = opt(10, "prompt_lookup_num_tokens of the pld row", min=1)
    methods: list[str] = opt(list(METHODS), f"Rows to run (repeatable or comma-separated): {', '.join(METHODS)}")
    depth: int | None = opt(None, "EAGLE tree depth (default: by the target's dtype)", min=1)
    top_k: int | None = opt(None, "EAGLE children per node (default: by the target's dtype)", min=1)
    total_tokens: int | None = opt(None, "EAGLE nodes verified per step (default: by the target's dtype)", min=1)
    seed: int = like(SamplingOptions, "seed", 0)
    out: str | None = opt(None, "Write decode.json (after every run), decode.md and decode.png here", short="-o")

    def __post_init__(self):
        super().__post_init__()
        self.methods = [m.strip() for x in self.methods for m in x.split(",") if m.strip()]
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ConfigError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")


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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def run_bench(cfg: BenchConfig, log=print, on_result=None) -> dict:
    """Run every method on every picked prompt. After each run ``on_result(result)`` is called and, with
    ``cfg.out``, decode.json rewritten (partial results survive a kill); decode.md and decode.png at the end."""
    from tpro.eagle import resolve_draft
    from tpro.eagle.data import PROMPTS_DIR, read_prompts
    from tpro.engine import Engine
    from tpro.models import build_prompt

    rows = read_prompts(cfg.prompts or PROMPTS_DIR / "heldout.jsonl")
    by_dom: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_dom[r.get("domain", "all")].append(r)
    picked = [r for d in sorted(by_dom) for r in (by_dom[d][: cfg.per_domain] if cfg.per_domain else by_dom[d])]
    loaded: dict[str, object] = {}

    def model_in(dtype):  # one copy of the target per dtype, shared by every row that runs in it
        if dtype not in loaded:
            loaded[dtype] = ModelOptions(model=cfg.model, dtype=dtype, threads=cfg.threads).load_model(progress=False)
        return loaded[dtype]

    base = model_in(cfg.dtype)
    base_engine = Engine.from_loaded(base)
    eagle_engine = decoder = None
    gen_models = {_short(d): model_in(d) for d in cfg.generate_dtypes} if "generate" in cfg.methods else {}
    if cfg.draft != "none" and "eagle" in cfg.methods:
        elm = model_in(cfg.eagle_dtype or cfg.dtype)
        decoder, line = resolve_draft(cfg.draft, elm, depth=cfg.depth, top_k=cfg.top_k, total_tokens=cfg.total_tokens)
        log(line)
        if decoder is not None:
            eagle_engine = Engine.from_loaded(elm, decoder=decoder)
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
            chat = build_prompt(base.tokenizer, r["prompt"], cfg.mode)
            dom, pid = r.get("domain", "all"), r.get("id", "")

            def add(method, run: Run):
                run.method, run.domain, run.prompt_id = method, dom, pid
                runs.append(run)
                log(
                    f"T={temp} {dom} {pid} {method}: {run.tokens} tok in {run.seconds:.1f}s = {run.tokens / max(run.seconds, 1e-9):.2f} tok/s"
                )
                if on_result or cfg.out:
                    res = result(runs)
                    if cfg.out:
                        write_json(Path(cfg.out) / "decode.json", res)
                    if on_result:
                        on_result(res)

            for name, glm in gen_models.items():
                k, dt = run_generate(glm, chat.input_ids, cfg.max_new_tokens, temp, cfg.seed)
                add(f"generate-{name}", Run("", "", "", temp, k, dt))
            if "pld" in cfg.methods and temp == 0:  # prompt lookup: greedy rows only
                k, dt = run_generate(base, chat.input_ids, cfg.max_new_tokens, temp, cfg.seed, pld=cfg.prompt_lookup)
                add("pld", Run("", "", "", temp, k, dt))
            if "vanilla" in cfg.methods:
                add("vanilla", run_engine(base_engine, chat, cfg.max_new_tokens, temp, cfg.seed))
            if eagle_engine is not None:
                add("eagle", run_engine(eagle_engine, chat, cfg.max_new_tokens, temp, cfg.seed))
    res = result(runs)
    if cfg.out:
        write_outputs(res, Path(cfg.out))
    return res


def write_outputs(result: dict, out: Path) -> None:
    """decode.json, decode.md and decode.png in ``out``, each written atomically."""
    write_json(Path(out) / "decode.json", result)
    atomic_write(Path(out) / "decode.md", markdown(result["summary"]))
    plot(result["summary"], Path(out) / "decode.png")
