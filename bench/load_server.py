"""Load figure for ``tpro serve``: C concurrent clients send a fixed number of chat requests to a server on
127.0.0.1; report the success rate, p50/p95 latency and errors, with overload answers (429/503 + Retry-After)
counted apart from errors.

    python bench/load_server.py --model default --clients 20 --requests 60 --max-tokens 24
    python bench/load_server.py --url http://127.0.0.1:8000 --api-key KEY ...   # an already running server

Each request is retried after an overload answer (honouring Retry-After, at most --retries times), as a
well-behaved client would; "latency" is the served attempt's (send -> last byte), "end to end" includes the
waits. Without --url the script starts ``tpro serve`` itself (random API key, --max-queue as given) and stops
it at the end. Progress goes to stderr; the summary is printed and written as JSON to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tpro.playground.presets import load_presets  # noqa: E402  (after the path line: runnable from a checkout)

OVERLOAD = (429, 503)


def prompts() -> list[str]:
    return [p["prompt"] for items in load_presets().values() for p in items]


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


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
            "max_tokens": args.max_tokens,
            "temperature": 0,
        }
        t_first = time.perf_counter()
        rec = {"request": i, "client": cid, "overloads": 0, "status": None, "error": None}
        for _attempt in range(args.retries + 1):
            t0 = time.perf_counter()
            try:
                r = await ac.post("/v1/chat/completions", json=body)
            except httpx.HTTPError as e:
                rec.update(status=None, error=f"{type(e).__name__}: {e}")
                break
            rec["status"] = r.status_code
            if r.status_code in OVERLOAD:
                rec["overloads"] += 1
                await asyncio.sleep(min(float(r.headers.get("Retry-After", "1")), 30.0))
                continue
            if r.status_code == 200:
                rec["latency_s"] = time.perf_counter() - t0
                rec["end_to_end_s"] = time.perf_counter() - t_first
                rec["tokens"] = r.json()["usage"]["completion_tokens"]
            else:
                rec["error"] = r.text[:200]
            break
        log.append(rec)
        done = len(log)
        if done % 5 == 0 or done == args.requests:
            print(f"[{time.strftime('%H:%M:%S')}] {done}/{args.requests} requests done", file=sys.stderr, flush=True)


async def run(url: str, key: str | None, args) -> dict:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    limits = httpx.Limits(max_connections=args.clients + 5)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=args.timeout, limits=limits) as ac:
        model = (await ac.get("/v1/models")).json()["data"][0]["id"]
        todo: asyncio.Queue = asyncio.Queue()
        for i in range(args.requests):
            todo.put_nowait(i)
        log: list[dict] = []
        t0 = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(*[client(c, ac, model, args, todo, log) for c in range(args.clients)]), args.deadline
        )
        wall = time.perf_counter() - t0
        metrics = (await ac.get("/metrics")).text
    served = [r for r in log if r["status"] == 200]
    lat = [r["latency_s"] for r in served]
    e2e = [r["end_to_end_s"] for r in served]
    statuses: dict[str, int] = {}
    for r in log:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    return {
        "model": model,
        "clients": args.clients,
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "served": len(served),
        "success_rate": len(served) / args.requests,
        "overload_answers": sum(r["overloads"] for r in log),
        "requests_overloaded_at_least_once": sum(1 for r in log if r["overloads"]),
        "errors": [r for r in log if r["status"] != 200],
        "server_5xx_other_than_overload": sum(
            1 for r in log if r["status"] and r["status"] >= 500 and r["status"] not in OVERLOAD
        ),
        "final_status_counts": statuses,
        "latency_p50_s": round(statistics.median(lat), 2) if lat else None,
        "latency_p95_s": round(percentile(lat, 0.95), 2),
        "end_to_end_p50_s": round(statistics.median(e2e), 2) if e2e else None,
        "end_to_end_p95_s": round(percentile(e2e, 0.95), 2),
        "wall_s": round(wall, 1),
        "generated_tokens": sum(r.get("tokens", 0) for r in served),
        "throughput_tokens_per_s": round(sum(r.get("tokens", 0) for r in served) / wall, 2),
        "server_metrics": {
            line.split()[0]: float(line.split()[1])
            for line in metrics.splitlines()
            if line.startswith("tpro_requests_total")
        },
    }


def start_server(args) -> tuple[subprocess.Popen, str, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key = secrets.token_urlsafe(12)
    model = args.model
    if model == "tiny":  # the random-init tiny Qwen2 the tests use: measures the server, not a model
        import tempfile

        from tpro.models.tiny import make_tiny_model

        model = str(make_tiny_model(Path(tempfile.mkdtemp(prefix="tpro-tiny-")) / "tiny-qwen2"))
    cmd = [
        sys.executable,
        "-m",
        "tpro.cli",
        "serve",
        "--model",
        model,
        "--port",
        str(port),
        "--max-queue",
        str(args.max_queue),
        "--timeout",
        str(args.server_timeout),
        "--log-level",
        "warning",
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, env=dict(os.environ, TPRO_API_KEY=key))
    url = f"http://127.0.0.1:{port}"
    for _ in range(3000):
        if proc.poll() is not None:
            raise SystemExit(f"tpro serve exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url, key
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("tpro serve did not come up")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="An already running server (default: start one on --model).")
    ap.add_argument("--api-key", default=os.environ.get("TPRO_API_KEY"))
    ap.add_argument(
        "--model",
        default="default",
        help="Model spec for the server this script starts ('tiny': a random-init tiny Qwen2).",
    )
    ap.add_argument("--max-queue", type=int, default=8, help="--max-queue of the server this script starts.")
    ap.add_argument("--server-timeout", type=float, default=300.0, help="--timeout of the server this script starts.")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--retries", type=int, default=200, help="Retries of one request after overload answers.")
    ap.add_argument("--timeout", type=float, default=300.0, help="Client timeout per attempt (s).")
    ap.add_argument("--deadline", type=float, default=3600.0, help="Abort the whole run after this many seconds.")
    ap.add_argument("--out", default="bench/results/load_server.json")
    args = ap.parse_args()
    proc = None
    if args.url:
        url, key = args.url, args.api_key
    else:
        proc, url, key = start_server(args)
    try:
        result = asyncio.run(run(url, key, args))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    result["command"] = " ".join(["python", "bench/load_server.py", *sys.argv[1:]])
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    os.replace(tmp, out)
    print(json.dumps({k: v for k, v in result.items() if k != "errors"}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
