"""Decode benchmark: tokens/s per domain for ``model.generate`` (fp32 and bf16), ``model.generate`` with prompt
lookup (``pld``), our vanilla loop, EAGLE and the peer, llama.cpp on the target's GGUF, side by side in one process
(this CPU is shared, so only ratios measured together mean anything).

Each (temperature, prompt) runs every method back to back; per domain we report total generated tokens / total
wall time, the speedup of every method over ``model.generate`` and over our vanilla loop, EAGLE's mean acceptance
length (accepted draft tokens per verify step + 1) and its draft / verify time split. ``model.generate`` runs in
every dtype of ``generate_dtypes`` and "speedup vs generate" takes the fastest of them (which one wins on this CPU
depends on the load: bf16 on a quiet machine); prompt lookup and our vanilla loop run in ``dtype``, EAGLE's
target in ``eagle_dtype`` (default: ``dtype``, bf16, so "vs vanilla" compares decoding methods at one dtype).
``weights`` (repeatable) runs the vanilla and EAGLE rows once per weight format (``vanilla-int4``, ``eagle-int4``;
bf16 keeps the plain names); each is compared with the vanilla row of its own weights, the baselines
(``model.generate``, prompt lookup) stay on the checkpoint's weights. Every EAGLE request starts with an empty
suffix memory (``forget``), so no held-out prompt is drafted from an earlier row's answer to it.

The ``llama.cpp`` row runs llama.cpp's Python binding (built by ``bench/build_llama_cpp.sh``; skipped with a note
when absent) on the GGUF of the target (the embedded one for the embedded default), with the same thread count, on
the very token ids our rows get (our chat template rendering), the same budget, greedy or at the same temperature
with the seed. Every row is timed the same way: wall time of the whole request, prefill included (the engine rows'
and llama.cpp's prefill is also kept apart, ``prefill_s``, so decode-only speeds can be compared with
``llama-bench``'s tg figures). When that row is present every row also gets its ratio to it ("vs llama.cpp").
At T=0 each row's output is compared with the vanilla loop's: ``same_prefix`` counts the leading tokens they share
(llama.cpp's weights are the 4-bit GGUF, ours its dequantised copy in bf16, so only rough agreement is expected).
Knows nothing about training heads.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from tpro.config import ConfigError, like, opt
from tpro.eagle.options import target_model
from tpro.io import atomic_path, atomic_write, write_json
from tpro.options import DRAFT_HELP, DTYPES, MAX_TEMPERATURE, MODE_HELP, Mode, ModelOptions, SamplingOptions

PEER = "llama.cpp"
# generate runs once per dtype in generate_dtypes; compiled = the vanilla loop through torch.compile
# (tpro.engine.compiled), compiled once per weight format before any timing
# eagle-compiled = EAGLE with the target's verify compiled (tpro.eagle.target.CompiledTarget)
METHODS = ("generate", "pld", "vanilla", "compiled", "eagle", "eagle-compiled", PEER)
BUILD_PEER = "bash bench/build_llama_cpp.sh"


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
    suffix: bool = opt(True, "EAGLE rows also draft model-free from the text (the suffix drafter, the default)")
    # a list here: the vanilla and EAGLE rows run once per format, side by side (model.generate and prompt lookup
    # stay on the checkpoint's weights: they are the baselines)
    weights: list[str] = opt(
        ["bf16"],
        "Weight formats of the vanilla and EAGLE rows, repeatable: bf16 | int8 | int4 | w4a8 | w8a8 | auto (rows named "
        "vanilla-int4, eagle-int4, ...; bf16 rows keep the plain names)",
        choices=("bf16", "int8", "int4", "w4a8", "w8a8", "auto"),
    )
    seed: int = like(SamplingOptions, "seed", 0)
    # one thread count for every row, the peer's too: the ratios compare methods on the same cores
    threads: int = like(
        ModelOptions, "threads", help="CPU threads of every row, torch's and llama.cpp's (0 = torch's default)"
    )
    gguf: str | None = opt(
        None,
        f"GGUF the {PEER} row runs (default: the embedded GGUF for the embedded target, the target when it is a .gguf)",
    )
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
    prefill_s: float | None = None  # request start -> first token (engine rows and llama.cpp; None: not measured)
    same_prefix: int | None = None  # T=0: leading tokens equal to the vanilla row's output on this prompt


def row_name(method: str, weights: str) -> str:
    """``vanilla`` / ``eagle`` on the checkpoint's weights, ``vanilla-int4`` / ``eagle-int4`` on quantized ones."""
    return method if weights == "bf16" else f"{method}-{weights}"


def vanilla_of(method: str, present) -> str:
    """The vanilla row a row is compared with: the same weights' for engine rows, else the bf16 one (or, when it
    did not run, the first vanilla row in ``present``)."""
    for kind in ("eagle-compiled", "vanilla", "eagle", "compiled"):  # longest first: eagle-compiled-int4
        if method.startswith(kind + "-"):
            return "vanilla-" + method[len(kind) + 1 :]
        if method == kind:
            break
    if "vanilla" in present:
        return "vanilla"
    return next((m for m in present if m.startswith("vanilla")), "vanilla")


def _short(dtype: str) -> str:
    return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(dtype, dtype)


def _eos(model, tok) -> set[int]:
    from tpro.engine.engine import eos_ids

    return eos_ids(model, tok)


def generate_ids(lm, ids: list[int], n: int, temperature: float, seed: int, pld: int = 0) -> tuple[list[int], float]:
    """``model.generate`` -> (new token ids up to EOS, seconds)."""
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
    return out[: next((i for i, t in enumerate(out) if t in eos), len(out))], dt


def run_generate(lm, ids: list[int], n: int, temperature: float, seed: int, pld: int = 0) -> tuple[int, float]:
    """``model.generate`` -> (new tokens up to EOS, seconds)."""
    out, dt = generate_ids(lm, ids, n, temperature, seed, pld)
    return len(out), dt


def engine_ids(engine, chat, n: int, temperature: float, seed: int, decoder=None) -> tuple[Run, list[int]]:
    """One request through our engine -> (its Run, the new token ids)."""
    from tpro.engine import SamplingParams

    done = engine.complete(chat, SamplingParams(max_new_tokens=n, temperature=temperature, seed=seed), decoder=decoder)
    t = done.telemetry
    run = Run("", "", "", temperature, t.generated_tokens, t.total_s, t.steps, t.draft_accepted, t.draft_s, t.verify_s)
    run.prefill_s = t.ttft_s  # prefill + sampling the first token, as the llama.cpp row times it
    return run, list(done.token_ids)


def run_engine(engine, chat, n: int, temperature: float, seed: int, decoder=None) -> Run:
    return engine_ids(engine, chat, n, temperature, seed, decoder)[0]


class LlamaCpp:
    """The peer: llama.cpp's Python binding on a GGUF, fed token ids (no tokenizer or chat template of its own).

    Sampling matches our rows: greedy at T=0, else temperature only (top-k, top-p, min-p, typical and repetition
    penalties all neutral) from llama.cpp's own seeded sampler, so T>0 texts differ from ours but their statistics
    do not. One Python call per token (the binding's ``generate``): under 1 ms a token beyond llama.cpp's own eval
    time (measured on a loaded 2-core machine). llama.cpp's threads spin at its barriers, so it suffers most from a
    busy CPU: there one thread decoded at 75-85 ms/token and two at 280-720 ms/token. Compare on a quiet machine.
    """

    def __init__(self, gguf: Path, threads: int, n_ctx: int):
        from llama_cpp import Llama, __version__

        self.gguf, self.threads, self.version = gguf, threads, __version__
        self.llm = Llama(model_path=str(gguf), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)

    def run(self, ids: list[int], n: int, temperature: float, seed: int, eos: set[int]) -> tuple[Run, list[int]]:
        """Generate up to ``n`` tokens after ``ids`` from an empty cache -> (Run with prefill_s, new ids up to EOS)."""
        llm = self.llm
        llm.reset()  # n_tokens = 0: no reuse of the previous prompt's cache, every row pays its prefill
        llm.set_seed(seed)
        steps = llm.generate(
            ids, temp=temperature, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0, repeat_penalty=1.0, reset=True
        )
        out: list[int] = []
        t0 = time.perf_counter()
        prefill = None
        for tok in steps:  # each token is sampled after llama.cpp evaluated the one before (the first: the prompt)
            prefill = prefill if prefill is not None else time.perf_counter() - t0
            if tok in eos:
                break
            out.append(tok)
            if len(out) >= n:
                break
        dt = time.perf_counter() - t0
        steps.close()
        return Run("", "", "", temperature, len(out), dt, prefill_s=prefill), out

    def tokenizes_like(self, text: str, ids: list[int]) -> bool:
        """Whether llama.cpp's own tokenizer gives ``ids`` for ``text`` (a GGUF of another model would not)."""
        return self.llm.tokenize(text.encode(), add_bos=False, special=True) == list(ids)


def peer_gguf(cfg: BenchConfig, lm) -> Path | None:
    """The GGUF the llama.cpp row runs: ``--gguf``, else the embedded one for the embedded target, else the target
    itself when it is a .gguf file; None when none is known (a hub id or a checkpoint folder)."""
    if cfg.gguf:
        p = Path(cfg.gguf).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"--gguf {cfg.gguf}: no such file. Fix: pass the path of the target's .gguf")
        return p
    if lm.kind == "default":
        from tpro.models.default import ensure_gguf

        return ensure_gguf()
    if lm.kind == "gguf":
        return Path(cfg.model).expanduser()
    return None


def binding_fails(probe: str = "import llama_cpp; llama_cpp.llama_print_system_info()") -> str | None:
    """Why llama.cpp's native code cannot run in a fresh interpreter (None: it runs). A binding built for another
    CPU's features (AVX-512 on an AVX2-only machine) dies with SIGILL in its first call: better a note than a crash."""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if done.returncode == 0:
        return None
    if done.returncode == -signal.SIGILL:
        return "SIGILL: it was built for another CPU's instruction set"
    return (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]


def load_peer(cfg: BenchConfig, lm, n_ctx: int) -> tuple[LlamaCpp | None, str]:
    """-> (the llama.cpp peer, a line for the log) or (None, why its row is skipped)."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return None, f"{PEER} row skipped: the llama_cpp binding is not installed (build it: {BUILD_PEER})"
    if why := binding_fails():
        return (
            None,
            f"{PEER} row skipped: the llama_cpp binding does not run here ({why}); rebuild: {BUILD_PEER} --force",
        )
    gguf = peer_gguf(cfg, lm)
    if gguf is None:
        return None, f"{PEER} row skipped: no GGUF known for target {cfg.model!r} (pass --gguf PATH)"
    peer = LlamaCpp(gguf, cfg.threads or torch.get_num_threads(), n_ctx)
    return peer, f"{PEER} {peer.version} on {gguf.name}, {peer.threads} threads"


def _same_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def summarize(runs: list[Run]) -> list[dict]:
    """Per (temperature, domain, method) totals, speedups against generate, vanilla and llama.cpp of the same group
    (None where that row did not run), decode-only speed where every run timed its prefill, and the share of the
    generated tokens before the first divergence from the vanilla row (T=0)."""
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
            if r.prefill_s is not None:
                g["timed_prefills"] += 1
                g["prefill_s"] += r.prefill_s
                g["first_tokens"] += min(r.tokens, 1)  # the token prefill produced
            if r.same_prefix is not None:
                g["compared_tokens"] += r.tokens
                g["same_prefix"] += r.same_prefix
    rows = []
    for (temp, dom, method), g in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1] == "all", kv[0][1], kv[0][2])
    ):
        tps = g["tokens"] / max(g["seconds"], 1e-9)
        # "generate" = model.generate at its fastest dtype in this group (one row per generate_dtypes entry: which
        # one wins on this CPU depends on the load, see the Foundation section)
        gens = [v for (t2, d2, m2), v in groups.items() if (t2, d2) == (temp, dom) and m2.startswith("generate-")]
        present = [m2 for (t2, d2, m2) in groups if (t2, d2) == (temp, dom)]
        ref = {
            "generate": max(gens, key=lambda v: v["tokens"] / max(v["seconds"], 1e-9), default=None),
            "vanilla": groups.get((temp, dom, vanilla_of(method, present))),
            "llama_cpp": groups.get((temp, dom, PEER)),
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
        if g["timed_prefills"] == g["prompts"]:
            after = g["seconds"] - g["prefill_s"]
            row["prefill_s"] = round(g["prefill_s"], 2)
            row["decode_tokens_per_s"] = round((g["tokens"] - g["first_tokens"]) / after, 2) if after > 0 else None
        if g["compared_tokens"]:
            row["same_prefix_share"] = round(g["same_prefix"] / g["compared_tokens"], 3)
        rows.append(row)
    return rows


def markdown(rows: list[dict], notes: list[str] = ()) -> str:
    """The summary as a markdown table (a "vs llama.cpp" column when that row ran), then ``notes`` as a list."""
    peer = any(r.get("speedup_vs_llama_cpp") is not None for r in rows)
    cols = ["T", "domain", "method", "tokens/s", "vs generate", "vs vanilla", *(["vs llama.cpp"] if peer else [])]
    cols += ["accept len", "draft share", "ms/step"]
    fmt = lambda v, f="{:.2f}": "" if v is None else f.format(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [str(r["temperature"]), r["domain"], r["method"], f"{r['tokens_per_s']:.2f}"]
        cells += [
            fmt(r[f"speedup_vs_{m}"], "{:.2f}x") for m in ("generate", "vanilla", *(["llama_cpp"] if peer else []))
        ]
        cells += [fmt(r.get("acceptance_length")), fmt(r.get("draft_share")), fmt(r.get("ms_per_step"), "{:.0f}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + "".join(f"\n- {n}" for n in notes) + ("\n" if notes else "")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sel = [r for r in rows if r["domain"] != "all"]
    groups = sorted({(r["temperature"], r["domain"]) for r in sel})
    methods = sorted({r["method"] for r in sel})
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups)) + 2.5, 4))  # + room for the legend at the right
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
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")  # outside: bars stay visible
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def run_bench(cfg: BenchConfig, log=print, on_result=None) -> dict:
    """Run every method on every picked prompt. After each run ``on_result(result)`` is called and, with
    ``cfg.out``, decode.json rewritten (partial results survive a kill); decode.md and decode.png at the end."""
    from tpro.eagle import resolve_draft
    from tpro.eagle.data import PROMPTS_DIR, read_prompts
    from tpro.eagle.target import CompiledTarget
    from tpro.engine import Engine
    from tpro.models import build_prompt

    rows = read_prompts(cfg.prompts or PROMPTS_DIR / "heldout.jsonl")
    by_dom: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_dom[r.get("domain", "all")].append(r)
    picked = [r for d in sorted(by_dom) for r in (by_dom[d][: cfg.per_domain] if cfg.per_domain else by_dom[d])]
    loaded: dict[tuple[str, str], object] = {}
    # every model option given (in any dtype and weight format)
    shared = {f.name: getattr(cfg, f.name) for f in fields(ModelOptions) if f.name != "weights"}

    def model_in(dtype, weights="bf16"):  # one copy of the target per (dtype, format), shared by its rows
        if (dtype, weights) not in loaded:
            opts = ModelOptions(**{**shared, "dtype": dtype, "weights": weights})
            loaded[dtype, weights] = opts.load_model(progress=False)
        return loaded[dtype, weights]

    base = model_in(cfg.dtype)
    # (row suffix format, engine) per weight format; "auto" is named by what it resolved to
    engines = []
    for w in dict.fromkeys(cfg.weights):
        lm = model_in(cfg.dtype, w)
        engines.append((lm.info.get("weights", w), Engine.from_loaded(lm)))
    compiled_engines = []
    if "compiled" in cfg.methods:
        from tpro.engine.compiled import CompiledDecoder, cache_length

        for w in dict.fromkeys(cfg.weights):
            lm = model_in(cfg.dtype, w)
            compiled_engines.append((lm.info.get("weights", w), Engine.from_loaded(lm, decoder=CompiledDecoder())))
    eagle_engines, decoders, peer = [], [], None
    notes: list[str] = []
    gen_models = {_short(d): model_in(d) for d in cfg.generate_dtypes} if "generate" in cfg.methods else {}
    kinds = [m for m in ("eagle", "eagle-compiled") if m in cfg.methods] if cfg.draft != "none" else []
    for kind in kinds:
        for w in dict.fromkeys(cfg.weights):
            elm = model_in(cfg.eagle_dtype or cfg.dtype, w)
            # compiled: the verify graphs compile here, while calibrating (before any timing)
            decoder, line = resolve_draft(
                cfg.draft,
                elm,
                target=CompiledTarget() if kind == "eagle-compiled" else None,
                depth=cfg.depth,
                top_k=cfg.top_k,
                total_tokens=cfg.total_tokens,
                suffix=cfg.suffix,
            )
            log(f"{kind} {elm.info.get('weights', w)}: {line}")
            if decoder is not None:
                decoders.append(decoder)
                eagle_engines.append((kind, elm.info.get("weights", w), Engine.from_loaded(elm, decoder=decoder)))
    chats = [build_prompt(base.tokenizer, r["prompt"], cfg.mode) for r in picked]
    eos = _eos(base.model, base.tokenizer)
    if PEER in cfg.methods and chats:
        peer, line = load_peer(cfg, base, n_ctx=max(len(c.input_ids) for c in chats) + cfg.max_new_tokens + 8)
        log(line)
        if peer is None:
            notes.append(line)
        else:
            if not peer.tokenizes_like(chats[0].text, chats[0].input_ids):
                notes.append(f"{PEER}: the GGUF tokenizes the first prompt differently, so it may not be the target")
                log(notes[-1])
            peer.run(chats[0].input_ids, 2, 0.0, cfg.seed, eos)  # warm-up: page the GGUF in before any timing
    for w, eng in compiled_engines:  # compile before any timing: one graph per cache length (prompt + budget
        # rounded up to a power of two), each prompt's; the note after the run lists every length compiled
        dec = eng.decoder
        lim = eng.context_length
        dec.warm_up(
            eng.model, sorted({cache_length(len(c.input_ids), cfg.max_new_tokens, dec.smallest, lim) for c in chats})
        )
        log(f"compiled-{w}: torch.compile took {eng.decoder.compile_s} s (cache length: seconds)")
    for (kind, w, eng), dec in zip(eagle_engines, decoders):  # the compiled verify: every prompt's cache length
        if dec.target.name == "compiled":
            for n in sorted({len(c.input_ids) for c in chats}):
                dec.target.warm_up(eng.model, n, cfg.max_new_tokens)
            log(f"{row_name(kind, w)}: verify graphs (cache length, bucket): s {dec.target.compile_s}")
    runs: list[Run] = []

    def result(runs):
        threads = f", {PEER} {peer.version} {peer.threads} threads" if peer else ""
        return {
            "config": asdict(cfg),
            "eagle": asdict(decoders[0].cfg) if decoders else None,
            "llama_cpp": {"version": peer.version, "gguf": str(peer.gguf), "threads": peer.threads} if peer else None,
            "machine": f"{torch.get_num_threads()} torch threads, torch {torch.__version__}{threads}",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "notes": notes,
            "summary": summarize(runs),
            "runs": [asdict(r) for r in runs],
        }

    for temp in cfg.temperatures:
        for r, chat in zip(picked, chats):
            dom, pid = r.get("domain", "all"), r.get("id", "")
            outs: dict[str, list[int]] = {}  # this prompt's outputs, for same_prefix against vanilla (T=0)

            def add(method, run: Run, ids: list[int]):
                run.method, run.domain, run.prompt_id = method, dom, pid
                runs.append(run)
                outs[method] = ids
                if temp == 0:  # a vanilla row may come after the rows compared with it: fill theirs then
                    for prev in runs[len(runs) - len(outs) :]:
                        ref = vanilla_of(prev.method, outs)
                        if prev.method != ref and ref in outs:
                            prev.same_prefix = _same_prefix(outs[prev.method], outs[ref])
                agree = f", {run.same_prefix} first tokens as vanilla's" if run.same_prefix is not None else ""
                log(
                    f"T={temp} {dom} {pid} {method}: {run.tokens} tok in {run.seconds:.1f}s = "
                    f"{run.tokens / max(run.seconds, 1e-9):.2f} tok/s{agree}"
                )
                if on_result or cfg.out:
                    res = result(runs)
                    if cfg.out:
                        write_json(Path(cfg.out) / "decode.json", res)
                    if on_result:
                        on_result(res)

            for name, glm in gen_models.items():
                ids, dt = generate_ids(glm, chat.input_ids, cfg.max_new_tokens, temp, cfg.seed)
                add(f"generate-{name}", Run("", "", "", temp, len(ids), dt), ids)
            if "pld" in cfg.methods and temp == 0:  # prompt lookup: greedy rows only
                ids, dt = generate_ids(base, chat.input_ids, cfg.max_new_tokens, temp, cfg.seed, pld=cfg.prompt_lookup)
                add("pld", Run("", "", "", temp, len(ids), dt), ids)
            if "vanilla" in cfg.methods:
                for w, eng in engines:
                    add(row_name("vanilla", w), *engine_ids(eng, chat, cfg.max_new_tokens, temp, cfg.seed))
            for w, eng in compiled_engines:
                add(row_name("compiled", w), *engine_ids(eng, chat, cfg.max_new_tokens, temp, cfg.seed))
            for (kind, w, eng), dec in zip(eagle_engines, decoders):
                # each request starts with an empty suffix memory: held-out prompts must not be drafted from an
                # earlier row's (or an earlier temperature's) answer to the same prompt
                dec.forget()
                add(row_name(kind, w), *engine_ids(eng, chat, cfg.max_new_tokens, temp, cfg.seed))
            if peer is not None:
                add(PEER, *peer.run(chat.input_ids, cfg.max_new_tokens, temp, cfg.seed, eos))
    for w, eng in compiled_engines:
        notes.append(f"compiled-{w}: first (compiling) step per cache length, s: {eng.decoder.compile_s}")
    for (kind, w, _eng), dec in zip(eagle_engines, decoders):
        if dec.target.name == "compiled":
            notes.append(f"{row_name(kind, w)}: first verify per (cache length, bucket), s: {dec.target.compile_s}")
            notes.append(f"{row_name(kind, w)}: verify ms by tree size, measured: {dec.cfg.verify_ms}")
    res = result(runs)
    if cfg.out:
        write_outputs(res, Path(cfg.out))
    return res


def write_outputs(result: dict, out: Path) -> None:
    """decode.json, decode.md and decode.png in ``out``, each written atomically."""
    write_json(Path(out) / "decode.json", result)
    atomic_write(Path(out) / "decode.md", markdown(result["summary"], result.get("notes", [])))
    plot(result["summary"], Path(out) / "decode.png")
