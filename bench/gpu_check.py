"""GPU check: does the same code run on CUDA? The engine, continuous batching, EAGLE decoding, EAGLE data and
training, the SFT and DPO recipes and the OpenAI-compatible server, through the commands a user runs, on tiny
random-init Qwen2/Qwen3 checkpoints built here (no model weights travel to a lent GPU machine, and SGLang/vLLM are
not installed there, so this checks tpro's own paths, not an engine's).

    python bench/gpu_check.py --out DIR                 # on a CUDA machine
    python bench/gpu_check.py --device cpu --out DIR    # the same checks on a CPU, as a dry run

Writes DIR/gpu_check.json (per check: ok, seconds, what was compared or the error) and DIR/*.log (the CLI runs'
output); exits 1 if a check failed. Greedy comparisons run in fp32, where equal inputs must give equal tokens."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.train.data import pair_rows, sft_rows, write_jsonl  # noqa: E402
from tpro.eagle.decoder import EagleConfig, EagleDecoder  # noqa: E402
from tpro.eagle.head import init_head  # noqa: E402
from tpro.engine import Engine, SamplingParams  # noqa: E402
from tpro.engine.batch import BatchEngine  # noqa: E402
from tpro.models import load_model  # noqa: E402
from tpro.models.tiny import make_tiny_model  # noqa: E402

PROMPTS = [
    "Сколько будет 17*23?",
    "What is the capital of Russia?",
    "Мама мыла раму.",
    "Привет! Как дела? Расскажи, пожалуйста, о себе подробно. " * 6,  # longer than a 32-token prefill chunk
]


def tpro(out: Path, name: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m tpro ARGS``, its output kept in OUT/NAME.log; raises on a non-zero exit."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "tpro", *args], capture_output=True, text=True, env=env, timeout=timeout)
    (out / f"{name}.log").write_text(f"$ tpro {' '.join(args)}\n{r.stdout}\n{r.stderr}")
    if r.returncode:
        raise RuntimeError(
            f"tpro {args[0]} {args[1] if len(args) > 1 else ''} exited {r.returncode}: {r.stderr[-800:]}"
        )
    return r


def engine(model_dir: Path, device: str, dtype: str = "float32") -> Engine:
    lm = load_model(str(model_dir), dtype=dtype, device=device, progress=False)
    with torch.no_grad():  # sharpened attention: a wrong position or a seen padding column changes the argmax
        for layer in lm.model.model.layers:
            layer.self_attn.q_proj.weight.mul_(6.0)
            layer.self_attn.k_proj.weight.mul_(6.0)
    eng = Engine.from_loaded(lm)
    eng.eos = set()  # random weights may emit EOS: every request runs to its budget
    return eng


def check_engine_greedy(ctx) -> str:
    """Engine.complete (KV cache, chunked prefill) against a full recompute per token, on the device."""
    eng, n = ctx["eng2"], 24
    got = eng.complete(PROMPTS[3], SamplingParams(max_new_tokens=n))
    ids = torch.tensor([got.prompt.input_ids], device=eng.model.device)
    ref = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(eng.model(input_ids=ids).logits[0, -1].argmax())
            ref.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]], device=ids.device)], dim=1)
    assert str(eng.model.device).startswith(ctx["device"]), eng.model.device
    assert got.token_ids == ref, (got.token_ids, ref)
    return f"{n} greedy tokens equal a full recompute per token on {eng.model.device}"


def check_batch_equals_alone(ctx) -> str:
    eng = ctx["eng2"]
    params = [SamplingParams(max_new_tokens=n) for n in (12, 45, 40, 30)]
    alone = [eng.complete(p, sp).token_ids for p, sp in zip(PROMPTS, params)]
    be = BatchEngine(eng, max_batch=8, chunk_tokens=32)
    together = be.complete_many(PROMPTS, params)
    assert [d.token_ids for d in together] == alone
    seeded = SamplingParams(max_new_tokens=24, temperature=1.0, top_p=0.9, top_k=50, seed=11)
    solo = be.complete_many([PROMPTS[1]], seeded)[0].token_ids
    crowd = be.complete_many([PROMPTS[1], PROMPTS[0], PROMPTS[3]], [seeded, params[1], params[2]])
    assert crowd[0].token_ids == solo
    return "4 requests with budgets 12-45 decoded together equal each alone; a seeded sample is the same in a crowd"


def check_eagle_greedy(ctx) -> str:
    said = []
    for arch in ("qwen2", "qwen3"):
        eng = ctx[f"eng{arch[-1]}"]
        head = init_head(eng.model, seed=1)
        for cfg in (EagleConfig(depth=3, top_k=4, total_tokens=10, prefill_chunk=16), EagleConfig()):
            for prompt in PROMPTS[:2]:
                p = SamplingParams(max_new_tokens=40)
                ref, got = eng.complete(prompt, p), eng.complete(prompt, p, decoder=EagleDecoder(head, cfg))
                assert got.token_ids == ref.token_ids, (arch, cfg)
        said.append(arch)
    return f"EAGLE tree decoding (random heads, two tree shapes) token-identical to greedy for {', '.join(said)}"


def check_bf16_batch(ctx) -> str:
    eng = engine(ctx["qwen2"], ctx["device"], dtype="bfloat16")
    be = BatchEngine(eng, max_batch=32)
    prompts = [f"{PROMPTS[i % 4]} ({i})" for i in range(32)]
    t = time.perf_counter()
    done = be.complete_many(prompts, SamplingParams(max_new_tokens=64))
    dt = time.perf_counter() - t
    assert all(len(d.token_ids) == 64 for d in done) and max(d.telemetry.batch_size for d in done) > 16
    return f"bf16: 32 requests x 64 tokens decoded together ({32 * 64 / dt:.0f} tokens/s, tiny model)"


def check_eagle_cli(ctx) -> str:
    out, model = ctx["out"], str(ctx["qwen2"])
    data, head = out / "eagle-data", out / "eagle-head"
    tpro(out, "eagle_build_data", "eagle", "build-data", "-m", model, "-o", str(data), "--limit", "12",
         "--batch-size", "6", "-n", "40", "--dtype", "float32", "--device", ctx["device"])  # fmt: skip
    tpro(out, "eagle_train", "eagle", "train", "-m", model, "-d", str(data), "-o", str(head), "--steps", "24",
         "--batch-size", "4", "--lr", "3e-3", "--warmup", "2", "--hot-vocab", "256", "--mixed-precision", "bf16",
         "--device", ctx["device"], "--no-progress")  # fmt: skip
    rows = [json.loads(s) for s in (head / "train_log.jsonl").read_text().splitlines()]
    first, last = sum(r["loss"] for r in rows[:3]), sum(r["loss"] for r in rows[-3:])
    assert len(rows) == 24 and last < first, (first, last)
    ctx["head"] = head
    return f"build-data then 24 training steps in bf16 mixed precision; loss of the first 3 / last 3 steps {first / 3:.3f} -> {last / 3:.3f}"


def check_train_cli(ctx) -> str:
    out, model = ctx["out"], str(ctx["qwen2"])
    sft = write_jsonl(out / "sft.jsonl", sft_rows())
    pairs = write_jsonl(out / "pairs.jsonl", pair_rows())
    said = []
    for stage, data, extra in (("sft", sft, ["--learning-rate", "3e-3"]), ("dpo", pairs, ["--learning-rate", "1e-3"])):
        tpro(out, f"train_{stage}", "train", stage, "--model", model, "--data", str(data), "--out", str(out / stage),
             "--max-steps", "12", "--per-device-train-batch-size", "4", "--logging-steps", "1", "--save-steps",
             "1000", "--bf16", *extra)  # fmt: skip
        s = json.loads((out / stage / "summary.json").read_text())
        assert s["global_step"] == 12 and s["last_loss"] < s["first_loss"], s
        said.append(f"{stage} loss {s['first_loss']:.3f} -> {s['last_loss']:.3f}")
    return "12 bf16 steps each (transformers' Trainer takes the GPU when torch sees one): " + "; ".join(said)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_server(ctx) -> str:
    import httpx

    if "head" not in ctx:  # --only server
        check_eagle_cli(ctx)
    out, model, port = ctx["out"], str(ctx["qwen2"]), free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    args = ["serve", "-m", model, "--dtype", "float32", "--weights", "bf16", "--device", ctx["device"], "--port", str(port),
            "--max-batch", "8", "--draft", str(ctx["head"])]  # fmt: skip
    log = open(out / "serve.log", "w")
    srv = subprocess.Popen([sys.executable, "-m", "tpro", *args], stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise RuntimeError("the server did not come up in 120 s (serve.log)")

        name = httpx.get(f"{base}/v1/models", timeout=10).json()["data"][0]["id"]

        def ask(i: int, speculative: bool = False) -> str:
            body = {"model": name, "messages": [{"role": "user", "content": f"{PROMPTS[i % 4]} #{i}"}],
                    "max_tokens": 32, "temperature": 0, "speculative": speculative}  # fmt: skip
            r = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=120)
            assert r.status_code == 200, r.text
            return r.json()["choices"][0]["message"]["content"]

        with ThreadPoolExecutor(8) as pool:
            batched = list(pool.map(ask, range(8)))
        one = [ask(i) for i in range(2)]
        spec = [ask(i, speculative=True) for i in range(2)]
        assert batched[:2] == one == spec, (batched[:2], one, spec)
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        long_dir = out / "long"
        tpro(out, "eval_long", "eval", "long", "--endpoint", f"{base}/v1", "--tokenizer", model, "--lengths", "1k",
             "--depths", "3", "--no-progress", "-o", str(long_dir))  # fmt: skip
        assert any(long_dir.iterdir())
        peak = [line for line in metrics.splitlines() if "batch" in line and not line.startswith("#")][:2]
        return (f"8 concurrent requests served; greedy in a batch = alone = speculative (EAGLE head); "
                f"tpro eval long --endpoint ran at 1k; metrics: {peak}")  # fmt: skip
    finally:
        srv.terminate()
        srv.wait(timeout=30)
        log.close()


CHECKS = [check_engine_greedy, check_batch_equals_alone, check_eagle_greedy, check_bf16_batch, check_eagle_cli,
          check_train_cli, check_server]  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="/tmp/tpro-gpu-check")
    ap.add_argument("--only", default="", help="comma-separated check names (without check_)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    ctx = {"device": args.device, "out": out}
    ctx["qwen2"] = make_tiny_model(out / "tiny-qwen2", arch="qwen2")
    ctx["qwen3"] = make_tiny_model(out / "tiny-qwen3", arch="qwen3", tie_word_embeddings=True)
    ctx["eng2"], ctx["eng3"] = engine(ctx["qwen2"], args.device), engine(ctx["qwen3"], args.device)
    results = []
    for fn in CHECKS:
        name = fn.__name__.removeprefix("check_")
        if args.only and name not in args.only.split(","):
            continue
        t = time.perf_counter()
        try:
            res = {"check": name, "ok": True, "what": fn(ctx)}
        except Exception as e:  # noqa: BLE001 -- every check runs and reports, whatever broke before it
            res = {"check": name, "ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}
        res["seconds"] = round(time.perf_counter() - t, 1)
        results.append(res)
        print(("PASS " if res["ok"] else "FAIL ") + name, res.get("what") or res["error"], flush=True)
    (out / "gpu_check.json").write_text(json.dumps({"env": env, "device": args.device, "checks": results}, indent=1))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
