"""Recovery after the tokenizer swap: methods x CPU budgets, bits per character on held-out Russian (issue 14).

Every method starts from the same remapped checkpoint (``tpro tokenizer remap-model``, mean init) and runs
``tpro tokenizer recover`` (``tpro.tokenizer.recover``) under a wall-clock budget; each point is scored with
``tpro.models.bpc.bits_per_char`` on ``--eval`` (never trained on). Methods:

  mean           no training: the remapped model itself (the same at every budget)
  awedist        init:awedist only (token distillation of the input rows)
  rows-ce        init:mean,rows:ce (swapped rows only, next-token loss)
  rows-alm       init:mean,rows:alm (swapped rows only, likelihood matching against the base model)
  rows-alm-full  init:mean,rows:alm:0.7,full:0.3
  full-ce        init:mean,full:ce (every weight, next-token loss, low rate)
  control        the unswapped base trained like --control-stages (recovery vs adapting to the text)

Single-stage methods (the control too, when its stages are one) run once, at the largest budget, and the smaller
budgets are that run's snapshots (the ledger passing 15 and 30 minutes): with a constant rate, the same as shorter
runs. Multi-stage methods (rows-alm-full) run once per budget, since their stage split depends on the budget. Budget 0 is the start: the remapped
model (the base for the control). ``--contextual DIR`` (a ``--method contextual`` remap) adds init-only rows that
say which part of it helps: its lm_head rows alone, its input rows alone, and both. ``--sweep-lrs`` picks the rows
learning rate first, on ``--sweep-dev`` (not the evaluation text). Everything is resumable: results.json is
written after each point and each run resumes from its checkpoint.

    python bench/tokenizer_recover.py --remapped /work/notes/artifacts/remapped-default \\
        --train ../shared/data/ud/ru_dev.txt \\
        --train ../shared/data/ru-alpaca-seed/seed_tasks.jsonl:instruction,instances.input,instances.output \\
        --eval ../shared/data/ud/ru_test.txt --budgets 0,15,30,60 --out bench/results/tokenizer_recover \\
        --work /tmp/tpro-bench-recover --set threads=2
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import time
from pathlib import Path

METHODS = {
    "mean": "init:mean",
    "awedist": "init:awedist",
    "rows-ce": "init:mean,rows:ce",
    "rows-alm": "init:mean,rows:alm",
    "rows-alm-full": "init:mean,rows:alm:0.7,full:0.3",
    "full-ce": "init:mean,full:ce",
    "control": None,  # --control-stages
}


def multi_stage(stages: str) -> bool:
    """More than one stage takes time: the split depends on the budget, so each budget is its own run."""
    from tpro.tokenizer.recover import parse_stages

    return sum(s.share > 0 for s in parse_stages(stages)) > 1


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def bpc_of(model_dir: str, texts: list[str]) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tpro.models.bpc import bits_per_char

    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    # batch_tokens bounds the logits tensor (batch_tokens x 151936 floats): 1024 -> ~0.6 GB.
    bpc = bits_per_char(model, tok, texts, max_length=1024, batch_tokens=1024)
    n_tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
    del model
    gc.collect()
    chars = sum(map(len, texts))
    return {"dir": model_dir, "bpc": bpc, "tokens": n_tokens, "chars_per_token": chars / n_tokens,
            "wall_s": round(time.time() - t0, 1)}  # fmt: skip


def run_recover(out: Path, stages: str, minutes: float, args, extra: dict, snapshots=(), control=False) -> dict:
    """One ``tpro tokenizer recover`` run (resumed if it was cut; returned as recorded if it finished)."""
    from tpro.tokenizer.recover import RecoverConfig, recover

    if (out / "recover.json").is_file():
        return json.loads((out / "recover.json").read_text())
    cfg = RecoverConfig(model=args.remapped, base=args.base, train=args.train, out=str(out), stages=stages,
                        budget_minutes=minutes, control=control, snapshot_minutes=list(snapshots), **extra)  # fmt: skip
    log(f"recover {out.name}: {stages} for {minutes:g} min{' (control)' if control else ''}")
    summary = recover(cfg, show_progress=False)
    gc.collect()
    return summary


def hybrid(dest: Path, base_dir: str, donor_dir: str, ids: list[int], names: tuple[str, ...]) -> str:
    """``base_dir`` with the rows ``ids`` of the tensors ``names`` taken from ``donor_dir`` (init ablations)."""
    from safetensors.torch import load_file, save_file

    if (dest / "model.safetensors").is_file():
        return str(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base_dir, tmp)
    weights, donor = (
        load_file(str(Path(base_dir) / "model.safetensors")),
        load_file(str(Path(donor_dir) / "model.safetensors")),
    )
    for name in names:
        if name in weights and name in donor:  # a tied checkpoint has no lm_head.weight: nothing to swap
            weights[name][ids] = donor[name][ids]
    save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    tmp.rename(dest)
    return str(dest)


def plot(res: dict, path: Path, budgets: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, points in res["points"].items():
        xs = [b for b in budgets if str(b) in points]
        if xs and method in METHODS:
            ls = "--" if method == "control" else "-"
            ax.plot(xs, [points[str(b)]["bpc"] for b in xs], marker="o", ls=ls, label=method)
    if "base" in res:
        ax.axhline(res["base"]["bpc"], color="k", lw=1, label="base model (before the swap)")
    ax.axhline(2.95, color="grey", ls="--", lw=1, label="target 2.95")
    ax.set_xlabel("CPU minutes (2 cores)")
    ax.set_ylabel("bits per character, held-out Russian")
    ax.set_title("Recovering the remapped model")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(res: dict, budgets: list[float]) -> str:
    head = "| method | " + " | ".join(f"{b:g} min" for b in budgets) + " |"
    lines = [head, "|---" * (len(budgets) + 1) + "|"]
    for method, points in res["points"].items():
        cells = [f"{points[str(b)]['bpc']:.4f}" if str(b) in points else "" for b in budgets]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    if "base" in res:
        lines.append(f"| base model, before the swap | {res['base']['bpc']:.4f} |" + " |" * (len(budgets) - 1))
    return "\n".join(lines) + "\n"


def main():
    import yaml

    from tpro.io import write_json
    from tpro.tokenizer.recover import read_texts, resolve_base

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--remapped", required=True, help="mean-init checkpoint from `tpro tokenizer remap-model`")
    ap.add_argument("--base", default="", help="the model before the swap (default: recorded in --remapped)")
    ap.add_argument("--contextual", default="", help="a `--method contextual` remap of the same model: init ablations")
    ap.add_argument("--train", action="append", required=True, help="training text (as tpro tokenizer recover)")
    ap.add_argument("--eval", required=True, help="held-out text, one text per line")
    ap.add_argument("--eval-lines", type=int, default=0, help="score only the first N eval lines (0 = all)")
    ap.add_argument("--budgets", default="0,15,30,60", help="minutes, comma-separated")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    ap.add_argument("--control-stages", default="full:ce", help="what the control trains")
    ap.add_argument("--sweep-lrs", default="", help="rows learning rates to try first, e.g. 3e-4,1e-3,3e-3")
    ap.add_argument("--sweep-minutes", type=float, default=10.0)
    ap.add_argument("--sweep-stages", default="init:mean,rows:alm", help="what the sweep trains")
    ap.add_argument("--sweep-dev", default="", help="held-out text for the sweep (not --eval)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a RecoverConfig setting")
    ap.add_argument("--out", default="bench/results/tokenizer_recover", help="results.json, table.md, plot.png")
    ap.add_argument("--work", default="/tmp/tpro-bench-recover", help="run directories (GBs; not in git)")
    args = ap.parse_args()

    budgets = [float(b) for b in args.budgets.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        ap.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    extra = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "results.json"
    res = json.loads(res_path.read_text()) if res_path.is_file() else {}
    res.setdefault("points", {})
    res["settings"] = {**vars(args), "date": time.strftime("%Y-%m-%d")}
    texts = read_texts([args.eval], args.eval_lines, "--eval")
    shared = set(texts) & set(read_texts(args.train))
    if shared:
        ap.error(f"{len(shared)} eval lines are also training text, e.g. {next(iter(shared))[:60]!r}")
    swap = json.loads((Path(args.remapped) / "swap.json").read_text(encoding="utf-8"))
    from tpro.tokenizer.recover import RecoverConfig
    from tpro.train.common import model_path

    args.base = args.base or resolve_base(RecoverConfig(model=args.remapped, train=["-"], out="-"))

    def save():
        write_json(res_path, res, indent=1)
        (out / "table.md").write_text(table(res, budgets), encoding="utf-8")
        plot(res, out / "plot.png", budgets)

    def point(method: str, budget: float, fn) -> None:
        got = res["points"].setdefault(method, {})
        if str(budget) in got:
            return
        got[str(budget)] = fn()
        log(f"{method} @ {budget:g} min: {got[str(budget)]['bpc']:.4f} bits/char")
        save()

    if "base" not in res:
        res["base"] = bpc_of(model_path(args.base), texts)
        save()
    start = res["points"].get("mean", {}).get("0.0") or bpc_of(args.remapped, texts)
    res["points"].setdefault("mean", {})["0.0"] = start

    if args.sweep_lrs and "sweep" not in res:
        if not args.sweep_dev:
            ap.error("--sweep-lrs needs --sweep-dev (held-out text that is not --eval)")
        dev = read_texts([args.sweep_dev], 0, "--sweep-dev")
        sweep = {}
        for lr in [float(x) for x in args.sweep_lrs.split(",")]:
            s = run_recover(
                work / f"sweep-{lr:g}", args.sweep_stages, args.sweep_minutes, args, {**extra, "rows_lr": lr}
            )
            sweep[str(lr)] = bpc_of(s["final_dir"], dev)["bpc"]
            log(f"sweep rows_lr {lr:g}: {sweep[str(lr)]:.4f} bits/char on the dev text")
        res["sweep"] = {"dev": args.sweep_dev, "minutes": args.sweep_minutes, "bpc": sweep,
                        "rows_lr": float(min(sweep, key=sweep.get))}  # fmt: skip
        save()
    if "sweep" in res:
        extra = {**extra, "rows_lr": res["sweep"]["rows_lr"]}

    top = max(budgets)
    for method in methods:
        for b in budgets:
            if b == 0:  # the starting model: nothing trained in zero minutes
                point(method, b, lambda: res["base"] if method == "control" else start)
                continue
            if method == "mean":
                point(method, b, lambda: start)
                continue
            stages, ctl = (args.control_stages, True) if method == "control" else (METHODS[method], False)
            if multi_stage(stages):
                point(method, b, lambda: {**bpc_of(run_recover(work / f"{method}-{b:g}", stages, b, args, extra,
                                                               control=ctl)["final_dir"], texts), "run": f"{method}-{b:g}"})  # fmt: skip
            else:  # one run at the top budget; smaller budgets are its snapshots
                run_dir = work / f"{method}-{top:g}"
                s = run_recover(
                    run_dir, stages, top, args, extra, snapshots=[x for x in budgets if 0 < x < top], control=ctl
                )
                d = s["final_dir"] if b == top else s["snapshots"].get(f"{b:g}min", {}).get("dir", s["final_dir"])
                point(method, b, lambda: {**bpc_of(d, texts), "run": run_dir.name})

    if args.contextual:  # which part of the contextual init helps (no training)
        ids = [r["id"] for r in swap]
        res["init_ablation"] = res.get("init_ablation", {})
        for name, tensors in (("contextual (both)", ("model.embed_tokens.weight", "lm_head.weight")),
                              ("contextual lm_head rows only", ("lm_head.weight",)),
                              ("contextual input rows only", ("model.embed_tokens.weight",))):  # fmt: skip
            if name not in res["init_ablation"]:
                d = hybrid(work / name.replace(" ", "-").replace("(", "").replace(")", ""), args.remapped,
                           args.contextual, ids, tensors)  # fmt: skip
                res["init_ablation"][name] = bpc_of(d, texts)
                log(f"{name}: {res['init_ablation'][name]['bpc']:.4f}")
                save()
    save()
    log(f"done: {res_path}")


if __name__ == "__main__":
    main()
