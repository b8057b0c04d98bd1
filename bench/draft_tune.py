"""Measure what the hybrid drafter's policy (``tpro.eagle.policy``) is built on, and compare it with the EAGLE tree
alone, in one process (this CPU is shared: only ratios measured together mean anything).

    python bench/draft_tune.py compare --draft default [-n 128] [--per-domain 1] [--replay-out answers.jsonl]
    python bench/draft_tune.py simulate answers.jsonl [--suffix-tokens 16]
    python bench/draft_tune.py curve [--dtype bfloat16] [--weights int4] [--sizes 1,4,8,16,32,64]

compare: plain greedy (our vanilla loop), EAGLE with ``suffix=False`` (the tree alone) and the hybrid default,
same prompts (held-out, both domains), per domain tokens/s, speedup over vanilla, acceptance length, ms per step,
and whether each output equals the vanilla one; ``--replay-out`` saves the vanilla answers for ``simulate``.
simulate: replays greedy answers (JSONL rows with ``prompt_ids`` and ``out``) through a ``SuffixCache`` as
suffix-only greedy decoding would (the cache keeps the earlier answers, as a server's decoder does): the chance
that the first drafted token is right by match length (``policy.FIRST``), the chance of each further token given
the previous one was right (``policy.NEXT``), the acceptance length, and the speedup the bf16 cost curve predicts.
curve: the target forward's cost over N tree tokens after a 300-token prefix, a ``policy.VERIFY_MS`` row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict

import torch


def held_out(per_domain: int) -> list[dict]:
    from tpro.eagle.data import PROMPTS_DIR, read_prompts

    by_dom = defaultdict(list)
    for r in read_prompts(PROMPTS_DIR / "heldout.jsonl"):
        by_dom[r.get("domain", "all")].append(r)
    return [r for d in sorted(by_dom) for r in by_dom[d][:per_domain]]


def compare(a) -> None:
    from tpro.eagle import load_decoder
    from tpro.engine import Engine, SamplingParams
    from tpro.engine.decoder import VanillaDecoder
    from tpro.options import ModelOptions

    lm = ModelOptions(model="default", dtype=a.dtype, weights=a.weights, threads=a.threads).load_model(progress=False)
    rows = held_out(a.per_domain)
    decoders = {
        "vanilla": VanillaDecoder(),
        "eagle-tree": load_decoder(a.draft, lm, suffix=False),
        "hybrid": load_decoder(a.draft, lm),
    }
    # per-step records for the cost-model column: what each step would cost on the quiet machine the policy's
    # tables were measured on (the verify curve at the step's tree size + the head's levels when it ran), a figure
    # the load of a shared machine does not move
    logs = {name: record(dec) for name, dec in decoders.items()}
    eng = Engine.from_loaded(lm)
    p = SamplingParams(max_new_tokens=a.max_new_tokens, temperature=a.temperature)
    eng.complete(eng.prompt(rows[0]["prompt"]), SamplingParams(max_new_tokens=4), decoder=decoders["vanilla"])
    stats = defaultdict(lambda: defaultdict(float))
    replay = []
    for r in rows:
        chat = eng.prompt(r["prompt"])
        ref = None
        for name, dec in decoders.items():
            logs[name].clear()
            done = eng.complete(chat, p, decoder=dec)
            t = done.telemetry
            ref = done.token_ids if name == "vanilla" else ref
            for dom in (r["domain"], "all"):
                s = stats[(dom, name)]
                s["tokens"] += t.generated_tokens
                s["seconds"] += t.total_s
                s["steps"] += t.steps
                s["accepted"] += t.draft_accepted
                s["spent"] += t.draft_s + t.verify_s
                s["same"] += done.token_ids == ref
                s["prompts"] += 1
                s["model_ms"] += modelled_ms(logs[name], dec)
            print(
                f"{r['id']} {name}: {t.generated_tokens} tok {t.tokens_per_s:.2f} tok/s acc {t.acceptance_length:.2f}",
                flush=True,
            )
        replay.append({"id": r["id"], "domain": r["domain"], "prompt_ids": chat.input_ids, "out": ref})
    print(
        "\n| domain | method | tokens/s | vs vanilla | accept len | ms/step | = vanilla | cost model vs vanilla |"
        "\n|---|---|---|---|---|---|---|---|"
    )
    for (dom, name), s in sorted(stats.items(), key=lambda kv: (kv[0][0] == "all", kv[0])):
        tps, van = s["tokens"] / s["seconds"], stats[(dom, "vanilla")]
        modelled = (s["tokens"] / s["model_ms"]) / (van["tokens"] / van["model_ms"])
        print(
            f"| {dom} | {name} | {tps:.2f} | {tps / (van['tokens'] / van['seconds']):.2f}x "
            f"| {(s['accepted'] + s['steps']) / s['steps']:.2f} | {1000 * s['spent'] / s['steps']:.0f} "
            f"| {int(s['same'])}/{int(s['prompts'])} | {modelled:.2f}x |"
        )
    if a.replay_out:
        with open(a.replay_out, "w") as f:
            f.writelines(json.dumps(x) + "\n" for x in replay)


def record(dec) -> list:
    """Wrap ``dec`` (in this process only) so that its steps, and a None for each head run of an EAGLE decoder,
    are appended to the returned list."""
    from tpro.eagle.decoder import EagleDecoder

    log: list = []
    decode = dec.decode

    def recording(*args, **kw):
        for step in decode(*args, **kw):
            log.append(step)
            yield step

    dec.decode = recording
    if isinstance(dec, EagleDecoder):
        draft = dec.draft

        def counting(*args, **kw):
            log.append(None)
            return draft(*args, **kw)

        dec.draft = counting
    return log


def modelled_ms(log: list, dec) -> float:
    """A request's decode time by the policy's tables, prefill excluded: the verify curve at each step's tree size
    (bf16's for the vanilla loop) plus depth x level_ms per head run."""
    from tpro.eagle import policy
    from tpro.eagle.decoder import EagleDecoder

    steps = [s for s in log if s is not None and s.tokens][1:]  # token-less steps: prefill progress, not verifies
    eagle = isinstance(dec, EagleDecoder)
    curve = dec.cfg.verify_ms if eagle else policy.VERIFY_MS["bf16"]
    heads = sum(s is None for s in log) * (dec.cfg.depth * dec.cfg.level_ms if eagle else 0.0)
    return float(policy.cost_ms(curve, torch.tensor([1 + s.proposed for s in steps])).sum()) + heads


def simulate(a) -> None:
    from tpro.eagle import policy
    from tpro.eagle.suffix import SuffixCache

    cache = SuffixCache(max_answers=a.answers)
    first = defaultdict(lambda: [0, 0])  # match length -> [first token right, drafts]
    nxt = defaultdict(lambda: [0, 0])  # match length -> [next token right, drafted after a right one]
    steps = tokens = cost = 0.0
    curve = policy.VERIFY_MS["bf16"]
    for line in open(a.replay):
        row = json.loads(line)
        out = row["out"]
        live = cache.begin(row["prompt_ids"])
        cache.extend(out[:1])
        i = 0  # out[: i + 1] is committed
        while i + 1 < len(out):
            d = cache.draft(a.suffix_tokens)
            node, acc = -1, 0
            while True:  # greedy acceptance along the trie
                kids = [j for j, p in enumerate(d.parents) if p == node]
                if not kids:
                    break
                m = min(d.match_len, len(policy.FIRST) - 1)
                if acc > 0:
                    nxt[m][1] += 1
                hit = next((j for j in kids if i + 1 + acc < len(out) and d.tokens[j] == out[i + 1 + acc]), None)
                if acc == 0:
                    first[m][1] += 1
                    first[m][0] += hit is not None
                elif hit is not None:
                    nxt[m][0] += 1
                if hit is None:
                    break
                node, acc = hit, acc + 1
            new = out[i + 1 : i + 2 + acc]
            cache.extend(new)
            i += len(new)
            steps, tokens = steps + 1, tokens + len(new)
            cost += float(policy.cost_ms(curve, torch.tensor([1 + len(d.tokens)]))[0])
        cache.end(live)
    print("| match length | drafts | first token right | further tokens drafted | each right |\n|---|---|---|---|---|")
    for m in sorted(first):
        (right, n), (r2, n2) = first[m], nxt[m]
        print(f"| {m} | {n} | {right / n:.2f} | {n2} | {r2 / max(n2, 1):.2f} |")
    base = tokens * float(policy.cost_ms(curve, torch.tensor([1]))[0])
    print(f"acceptance length {tokens / steps:.2f}; suffix-only speedup predicted by the bf16 curve {base / cost:.2f}x")


@torch.inference_mode()
def curve(a) -> None:
    from transformers import DynamicCache

    from tpro.eagle import tree
    from tpro.options import ModelOptions

    lm = ModelOptions(model="default", dtype=a.dtype, weights=a.weights, threads=a.threads).load_model(progress=False)
    m = lm.model
    prefix = torch.randint(1000, 20000, (1, 300))
    out = []
    for n in map(int, a.sizes.split(",")):
        parents = torch.tensor([-1] + [max(0, (i - 1) // 4) for i in range(1, n)])
        mask = tree.tree_attention_mask(tree.ancestors(parents), 300, m.dtype)
        pos, ids = (300 + tree.depths(parents))[None], torch.randint(1000, 20000, (1, n))
        times = []
        for _ in range(a.reps):
            cache = DynamicCache(config=m.config)
            m.get_decoder()(input_ids=prefix, cache=cache, use_cache=True)
            t0 = time.perf_counter()
            h = m.get_decoder()(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
            m.get_output_embeddings()(h.last_hidden_state)
            times.append(time.perf_counter() - t0)
        out.append((n, round(1000 * statistics.median(times), 1)))
        print(n, out[-1][1], flush=True)
    print(f'"{lm.info.get("weights")}": {tuple(out)},')


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--draft", default="default")
    c.add_argument("-n", "--max-new-tokens", type=int, default=128)
    c.add_argument("--per-domain", type=int, default=1)
    c.add_argument("-t", "--temperature", type=float, default=0.0)
    c.add_argument("--replay-out")
    s = sub.add_parser("simulate")
    s.add_argument("replay")
    s.add_argument("--suffix-tokens", type=int, default=16)
    s.add_argument("--answers", type=int, default=32)
    k = sub.add_parser("curve")
    k.add_argument("--sizes", default="1,4,8,16,32,64")
    k.add_argument("--reps", type=int, default=3)
    for p in (c, k):
        p.add_argument("--dtype", default="bfloat16")
        p.add_argument("--weights", default="bf16")
        p.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    {"compare": compare, "simulate": simulate, "curve": curve}[a.cmd](a)


if __name__ == "__main__":
    main()
