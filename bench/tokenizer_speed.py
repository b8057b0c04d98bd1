"""Words per second in Russian: the base model vs the recovered swapped model, side by side (issue 14).

    python bench/tokenizer_speed.py --recovered runs-out/recovered-default/model --out bench/results/tokenizer_speed

Both models load the same way (``tpro.models.load_model``: same dtype, weights and threads) and answer the same
Russian prompts greedily through ``tpro.engine.Engine``, interleaved prompt by prompt (base, recovered, base, ...)
so machine noise hits both alike, each ``--repeats`` times. Per model: words, tokens, seconds, words/s, tokens/s,
tokens per word (over all answers), the share of repeated word trigrams (how much of the text is a loop: a loop of
short common words is cheap in any vocabulary and flatters words/s), and the answers themselves
(``answers.jsonl``) to read as Russian. The speed-up a user sees is words/s recovered / base: fewer tokens per word
at a similar cost per token. ``--prompts FILE`` (one per line; ``bench/ru_speed_prompts.txt`` has 20, the first 6
being the default) and ``--temperature T --seed S`` (prompt i samples with seed S + i in both models) widen it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

PROMPTS = [
    "Расскажи в нескольких предложениях, чем знаменит Санкт-Петербург.",
    "Объясни простыми словами, почему небо голубое.",
    "Напиши короткое письмо другу о том, как прошли выходные на даче.",
    "Какие книги Льва Толстого стоит прочитать в первую очередь и почему?",
    "Опиши, как приготовить борщ, по шагам.",
    "Дай три совета студенту, который готовится к экзамену по истории.",
]


def repeated_trigram_share(text: str) -> float:
    """Share of the word trigrams of ``text`` that already occurred earlier in it (0 = no repetition)."""
    words = text.lower().split()
    grams = list(zip(words, words[1:], words[2:]))
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="default", help="The model before the swap (a tpro model spec).")
    ap.add_argument("--recovered", required=True, help="The recovered model directory (OUT/model of recover).")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2, help="Passes over the prompts (the first warms caches too).")
    ap.add_argument("--prompts", help="A file of prompts, one per line (default: the 6 built in).")
    ap.add_argument("--temperature", type=float, default=0.0, help="0 = greedy.")
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0, help="With --temperature > 0: prompt i samples with seed + i.")
    ap.add_argument("--out", default="bench/results/tokenizer_speed")
    args = ap.parse_args()
    prompts = PROMPTS
    if args.prompts:
        prompts = [x.strip() for x in Path(args.prompts).read_text(encoding="utf-8").splitlines() if x.strip()]
        if not prompts:
            ap.error(f"--prompts {args.prompts}: no prompts in the file (one per line)")

    from tpro.engine import Engine, SamplingParams
    from tpro.engine.telemetry import count_words
    from tpro.models import load_model

    engines = {}
    for name, spec in (("base", args.base), ("recovered", args.recovered)):
        lm = load_model(spec, dtype=args.dtype, threads=args.threads, progress=False)
        engines[name] = Engine.from_loaded(lm)
    totals = {n: {"words": 0, "tokens": 0, "chars": 0, "seconds": 0.0, "repeated": []} for n in engines}
    answers = []
    for rep in range(args.repeats):
        for i, text in enumerate(prompts):
            params = SamplingParams(
                max_new_tokens=args.max_new_tokens,
                temperature=args.temperature,
                top_p=args.top_p,
                seed=args.seed + i if args.temperature > 0 else None,
            )
            for name, eng in engines.items():
                t0 = time.perf_counter()
                done = eng.complete(eng.prompt(text, "direct"), params)
                dt = time.perf_counter() - t0
                if rep == 0:
                    answers.append({"model": name, "prompt": text, "answer": done.text, "tokens": len(done.token_ids)})
                    totals[name]["repeated"].append(repeated_trigram_share(done.text))
                    continue  # the first pass warms up; the figures come from the others
                t = totals[name]
                t["words"] += count_words(done.text)
                t["tokens"] += len(done.token_ids)
                t["chars"] += len(done.text)
                t["seconds"] += dt
            print(f"pass {rep}: {text[:40]}...", flush=True)
    rows = {}
    for name, t in totals.items():
        repeated = t.pop("repeated")
        rows[name] = {
            **t,
            "repeated_trigram_share": round(sum(repeated) / max(1, len(repeated)), 4),  # mean over answers
            "seconds": round(t["seconds"], 2),
            "words_per_s": round(t["words"] / t["seconds"], 3),
            "tokens_per_s": round(t["tokens"] / t["seconds"], 3),
            "tokens_per_word": round(t["tokens"] / max(1, t["words"]), 3),
        }
    summary = {
        "args": vars(args),
        "prompts": len(prompts),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "models": rows,
        "words_per_s_ratio": round(rows["recovered"]["words_per_s"] / rows["base"]["words_per_s"], 3),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    (out / "answers.jsonl").write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in answers))
    print(json.dumps(summary, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
