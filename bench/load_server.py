"""Load figure for ``tpro serve``: C concurrent clients stream chat requests to servers on 127.0.0.1 started with
different ``--max-batch`` (by default the one-at-a-time server, 1, and the batched default), one after another in
the same run; report each server's aggregate tokens/s (and its ratio to the first), p50/p95 time to first token and
latency, overload answers (429/503 + Retry-After, counted apart from errors), errors, batch sizes and KV memory.

    python bench/load_server.py                                  # embedded default: 20 clients x 128 tokens, greedy
    python bench/load_server.py --clients 4 --max-new-tokens 16  # a quick check
    python bench/load_server.py --dtype bfloat16 --batches 1,8,16
    python bench/load_server.py --url http://127.0.0.1:8000 --api-key KEY ...   # measure an already running server

Each client sends requests (greedy, ``stream: true``) until --requests are done (default: one per client); after an
overload answer it waits Retry-After (at most --retries times), as a well-behaved client would. "ttft" is the served
attempt's send -> first streamed chunk (queueing in the server included: what a user waits), "latency" its send ->
last byte, "end to end" includes the overload waits. While a run goes, /metrics is read every --sample-s seconds
for the KV cache in use and the sequences in the batch. Without --url the script starts ``tpro serve`` for each
value of --batches (random API key, the given --max-queue) and stops it afterwards. Progress goes to stderr; the
summary is printed and written as JSON to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tpro.playground.presets import load_presets  # noqa: E402  (after the path line: runnable from a checkout)
from tpro.serve.config import ServeConfig  # noqa: E402

OVERLOAD = (429, 503)


def prompts() -> list[str]:
    return [p["prompt"] for items in load_presets().values() for p in items]


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))], 2)


def metric_values(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("tpro_") and " " in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


async def one_attempt(ac: httpx.AsyncClient, body: dict) -> tuple[int, dict]:
    """Stream one request -> (status, record with ttft_s, latency_s, tokens or the error)."""
    t0 = time.perf_counter()
    rec: dict = {}
    async with ac.stream("POST", "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            await r.aread()
            rec["retry_after"] = float(r.headers.get("Retry-After", "1"))
            rec["error"] = r.text[:300]
            return r.status_code, rec
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            rec.setdefault("ttft_s", time.perf_counter() - t0)
            data = line[len("data: ") :]
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                rec["error"] = chunk["error"]["message"][:300]
            elif chunk.get("usage") and chunk.get("choices"):
                rec["tokens"] = chunk["usage"]["completion_tokens"]
                rec["server_ttft_s"] = chunk["telemetry"]["ttft_s"]
                rec["server_queue_s"] = chunk["telemetry"].get("queue_s", 0.0)
        rec["latency_s"] = time.perf_counter() - t0
    return (200 if "error" not in rec else 500), rec


async def client(cid: int, ac: httpx.AsyncClient, model: str, args, todo: asyncio.Queue, log: list) -> None:
    texts = prompts()
    while True:
        try:
            i = todo.get_nowait()
        except asyncio.QueueEmpty:
            return
        body = {
            "model": model,
            "messages": [{"role": "user", "content": texts[i % len(texts)]}],
            "max_tokens": args.max_new_tokens,
            "temperature": 0,
            "stream": True,
        }
        t_first = time.perf_counter()
        rec = {"request": i, "client": cid, "overloads": 0, "status": None, "error": None}
        resets = 0
        for _attempt in range(args.retries + 1):
            try:
                status, got = await one_attempt(ac, body)
            except httpx.HTTPError as e:
                # A pooled connection closed under a new request (keep-alive race) is retried twice, as the
                # OpenAI SDK does with connection errors; counted, and an error after that.
                if isinstance(e, httpx.TransportError) and not isinstance(e, httpx.TimeoutException) and resets < 2:
                    resets += 1
                    rec["connection_retries"] = resets
                    continue
                rec.update(status=None, error=f"{type(e).__name__}: {e}")
                break
            rec["status"] = status
            if status in OVERLOAD:
                rec["overloads"] += 1
                await asyncio.sleep(min(got["retry_after"], 30.0))
                continue
            rec.update(got)
            if status == 200:
                rec["end_to_end_s"] = time.perf_counter() - t_first
            break
        log.append(rec)
        done = len(log)
        if done % 5 == 0 or done == args.requests:
            print(f"[{time.strftime('%H:%M:%S')}] {done}/{args.requests} requests done", file=sys.stderr, flush=True)


async def sample_metrics(ac: httpx.AsyncClient, every_s: float, samples: list) -> None:
    while True:
        try:
            m = metric_values((await ac.get("/metrics")).text)
            samples.append((m.get("tpro_kv_cache_bytes", 0.0), m.get("tpro_active_sequences", 0.0)))
        except httpx.HTTPError:
            pass
        await asyncio.sleep(every_s)


async def run(url: str, key: str | None, args) -> dict:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    limits = httpx.Limits(max_connections=args.clients + 5)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=args.timeout, limits=limits) as ac:
        model = (await ac.get("/v1/models")).json()["data"][0]["id"]
        todo: asyncio.Queue = asyncio.Queue()
        for i in range(args.requests):
            todo.put_nowait(i)
        log: list[dict] = []
        samples: list[tuple[float, float]] = []
        sampler = asyncio.create_task(sample_metrics(ac, args.sample_s, samples))
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(
                asyncio.gather(*[client(c, ac, model, args, todo, log) for c in range(args.clients)]), args.deadline
            )
        finally:
            sampler.cancel()
        wall = time.perf_counter() - t0
        metrics = metric_values((await ac.get("/metrics")).text)
    served = [r for r in log if r["status"] == 200]
    tokens = sum(r.get("tokens", 0) for r in served)
    statuses: dict[str, int] = {}
    for r in log:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    steps = metrics.get("tpro_batch_size_count", 0.0)
    return {
        "model": model,
        "served": len(served),
        "success_rate": round(len(served) / args.requests, 3),
        "overload_answers": sum(r["overloads"] for r in log),
        "requests_overloaded_at_least_once": sum(1 for r in log if r["overloads"]),
        "connection_retries": sum(r.get("connection_retries", 0) for r in log),
        "errors": [r for r in log if r["status"] != 200],
        "error_count": sum(1 for r in log if r["status"] != 200),
        "final_status_counts": statuses,
        "ttft_p50_s": percentile([r["ttft_s"] for r in served], 0.5),
        "ttft_p95_s": percentile([r["ttft_s"] for r in served], 0.95),
        "latency_p50_s": percentile([r["latency_s"] for r in served], 0.5),
        "latency_p95_s": percentile([r["latency_s"] for r in served], 0.95),
        "end_to_end_p50_s": percentile([r["end_to_end_s"] for r in served], 0.5),
        "end_to_end_p95_s": percentile([r["end_to_end_s"] for r in served], 0.95),
        "server_queue_p50_s": percentile([r["server_queue_s"] for r in served], 0.5),
        "wall_s": round(wall, 1),
        "generated_tokens": tokens,
        "throughput_tokens_per_s": round(tokens / wall, 2),
        "batch_size_mean": round(metrics.get("tpro_batch_size_sum", 0.0) / steps, 2) if steps else None,
        "batch_size_peak": max((a for _, a in samples), default=None),
        "kv_cache_peak_mib": round(max((kv for kv, _ in samples), default=0.0) / 2**20, 2),
        "kv_cache_bytes_per_token": metrics.get("tpro_kv_cache_bytes_per_token"),
        "kv_cache_mib_per_sequence": round(
            metrics.get("tpro_kv_cache_bytes_per_token", 0.0)
            * (metrics.get("tpro_prompt_tokens_total", 0.0) + metrics.get("tpro_generated_tokens_total", 0.0))
            / max(1.0, metrics.get('tpro_requests_total{outcome="ok"}', 1.0))
            / 2**20,
            2,
        ),
        "kv_cache_budget_mib": round(metrics.get("tpro_kv_cache_budget_bytes", 0.0) / 2**20, 1),
        "server_requests": {k: v for k, v in metrics.items() if k.startswith("tpro_requests_total")},
    }


def start_server(args, max_batch: int) -> tuple[subprocess.Popen, str, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key = secrets.token_urlsafe(12)
    model = args.model
    if model == "tiny":  # the random-init tiny Qwen2 the tests use: measures the server, not a model
        import tempfile

        from tpro.models.tiny import make_tiny_model

        model = str(make_tiny_model(Path(tempfile.mkdtemp(prefix="tpro-tiny-")) / "tiny-qwen2"))
    cmd = [sys.executable, "-m", "tpro.cli", "serve", "--model", model, "--port", str(port)]
    cmd += ["--dtype", args.dtype, "--weights", args.weights]
    cmd += ["--max-batch", str(max_batch), "--max-queue", str(args.max_queue)]
    cmd += ["--timeout", str(args.server_timeout), "--log-level", "warning"]
    if args.kv_memory_gb is not None:
        cmd += ["--kv-memory-gb", str(args.kv_memory_gb)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = dict(os.environ, TPRO_API_KEY=key, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(3000):
        if proc.poll() is not None:
            raise SystemExit(f"tpro serve exited with {proc.returncode}: {' '.join(cmd)}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url, key
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("tpro serve did not come up")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="An already running server, measured alone (default: start one per --batches).")
    ap.add_argument("--api-key", default=os.environ.get("TPRO_API_KEY"))
    ap.add_argument(
        "--model",
        default="default",
        help="Model spec for the servers this script starts ('tiny': a random tiny Qwen2).",
    )
    ap.add_argument("--dtype", default="auto", help="--dtype of the servers (auto: bf16 where the CPU has it).")
    ap.add_argument(
        "--weights",
        default="auto",
        help="--weights of the servers (auto: the server's default; bf16: the checkpoint's own, unquantized).",
    )
    ap.add_argument(
        "--batches",
        default=f"1,{ServeConfig().max_batch}",
        help="--max-batch of each server, in order; ratios are to the first (default: 1 and the server's default).",
    )
    ap.add_argument("--max-queue", type=int, default=8, help="--max-queue of the servers this script starts.")
    ap.add_argument("--kv-memory-gb", type=float, help="--kv-memory-gb of the servers (default: the server's).")
    ap.add_argument("--server-timeout", type=float, default=300.0, help="--timeout of the servers (s).")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, help="Requests in all (default: one per client).")
    ap.add_argument("--max-new-tokens", "--max-tokens", type=int, default=128, dest="max_new_tokens")
    ap.add_argument("--retries", type=int, default=200, help="Retries of one request after overload answers.")
    ap.add_argument("--timeout", type=float, default=900.0, help="Client timeout per attempt (s).")
    ap.add_argument("--deadline", type=float, default=7200.0, help="Abort one server's run after this many seconds.")
    ap.add_argument("--sample-s", type=float, default=1.0, help="Seconds between /metrics samples.")
    ap.add_argument("--out", default="bench/results/load_server.json")
    args = ap.parse_args()
    args.requests = args.requests or args.clients
    runs: dict[str, dict] = {}
    if args.url:
        runs["given server"] = asyncio.run(run(args.url, args.api_key, args))
    else:
        for mb in (int(b) for b in args.batches.split(",")):
            print(f"[{time.strftime('%H:%M:%S')}] starting tpro serve --max-batch {mb}", file=sys.stderr, flush=True)
            proc, url, key = start_server(args, mb)
            try:
                runs[f"max_batch={mb}"] = asyncio.run(run(url, key, args))
            finally:
                stop_server(proc)
    first = next(iter(runs.values()))
    for r in runs.values():
        base = first["throughput_tokens_per_s"]
        r["throughput_vs_first"] = round(r["throughput_tokens_per_s"] / base, 2) if base else None
    result = {
        "command": " ".join(["python", "bench/load_server.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "clients": args.clients,
        "requests": args.requests,
        "max_new_tokens": args.max_new_tokens,
        "dtype": args.dtype,
        "weights": args.weights,
        "threads": args.threads,
        "runs": runs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    os.replace(tmp, out)
    keys = [
        "served",
        "error_count",
        "overload_answers",
        "throughput_tokens_per_s",
        "throughput_vs_first",
        "ttft_p50_s",
        "ttft_p95_s",
        "latency_p50_s",
        "latency_p95_s",
        "end_to_end_p50_s",
        "end_to_end_p95_s",
        "batch_size_mean",
        "batch_size_peak",
        "kv_cache_peak_mib",
        "kv_cache_mib_per_sequence",
        "kv_cache_budget_mib",
    ]
    print(f"| run | {' | '.join(keys)} |")
    print(f"|---|{'---|' * len(keys)}")
    for name, r in runs.items():
        print(f"| {name} | {' | '.join(str(r.get(k)) for k in keys)} |")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
