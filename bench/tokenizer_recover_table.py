"""Issue 14's recovery figures on one table and one plot, from the raw run records kept in bench/results.

    python bench/tokenizer_recover_table.py --out bench/results/zen5/tokenizer_recover_summary

Reads (all measured on the 2-core Zen 5 EPYC, bits/char on the 601 UD Russian test sentences):
- bench/results/tokenizer_recover_full/results.json: mean init and man pages + UD dev, every weight (full:ce);
  the base model before the swap; runs/control-15.recover.json: the unswapped base trained the same way;
- bench/results/zen5/tokenizer_recover_chat/: conversations + man pages + UD dev (bpc.json for the snapshots,
  recover-30min.json / recover-60min.json for the runs' own --eval), and its control, control-60min.json with
  control-bpc.json (snapshots), when present.
Writes table.md and plot.png (bits/char against minutes of this CPU; a dashed line per control).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RES = ROOT / "bench" / "results"
BUDGETS = [0.0, 15.0, 30.0, 45.0, 60.0]


def load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def by_suffix(bpc: dict, suffix: str) -> float | None:
    """The bits/char of the snapshot directory ending in ``suffix`` (bpc.json maps directories to figures)."""
    return next((v for k, v in bpc.items() if k.rstrip("/").endswith(suffix)), None)


def gather() -> tuple[dict[str, dict[float, float]], float]:
    full = load(RES / "tokenizer_recover_full" / "results.json")
    base = full["base"]["bpc"]
    rows: dict[str, dict[float, float]] = {}
    rows["mean init, no training"] = {b: full["points"]["mean"]["0.0"]["bpc"] for b in BUDGETS}
    rows["man pages + UD dev (tokenizer ranked by tokens saved)"] = {
        float(b): p["bpc"] for b, p in full["points"]["full-ce"].items()
    }
    control15 = load(RES / "tokenizer_recover_full" / "runs" / "control-15.recover.json")
    if control15:
        rows["control: base, man pages + UD dev"] = {0.0: base, 15.0: control15["eval"]["bpc"]}
    chat = RES / "zen5" / "tokenizer_recover_chat"
    bpc = load(chat / "bpc.json")
    conv = {0.0: by_suffix(bpc, "remapped"), 15.0: by_suffix(bpc, "15min"), 45.0: by_suffix(bpc, "45min")}
    conv[30.0] = load(chat / "recover-30min.json").get("eval", {}).get("bpc")
    conv[60.0] = load(chat / "recover-60min.json").get("eval", {}).get("bpc")
    rows["conversations + man pages + UD dev (merge-order tokenizer)"] = {
        b: v for b, v in conv.items() if v is not None
    }
    control = load(chat / "control-60min.json")
    if control:
        cbpc = load(chat / "control-bpc.json")
        points = {0.0: base, 60.0: control["eval"]["bpc"]}
        for b in (15.0, 30.0, 45.0):
            if (v := by_suffix(cbpc, f"{int(b)}min")) is not None:
                points[b] = v
        rows["control: base, conversations + man pages + UD dev"] = points
    return rows, base


def table(rows: dict[str, dict[float, float]], base: float) -> str:
    head = "| method (bits/char, 601 UD ru test sentences) | " + " | ".join(f"{b:g} min" for b in BUDGETS) + " |"
    lines = [head, "|---" * (len(BUDGETS) + 1) + "|"]
    for name, pts in rows.items():
        cells = [f"{pts[b]:.4f}" if b in pts else "" for b in BUDGETS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(f"| base model before the swap | {base:.4f} |" + " |" * (len(BUDGETS) - 1))
    return "\n".join(lines)


def plot(rows: dict[str, dict[float, float]], base: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6))
    for name, pts in rows.items():
        xs = sorted(pts)
        ax.plot(xs, [pts[x] for x in xs], marker="o", ls="--" if name.startswith("control") else "-", label=name)
    ax.axhline(base, color="grey", lw=0.8, ls=":", label="base model before the swap")
    ax.axhline(2.95, color="red", lw=0.8, ls=":", label="issue 14 target (2.95)")
    ax.set_xlabel("minutes of training on the 2-core CPU")
    ax.set_ylabel("bits per character, held-out UD Russian")
    ax.set_title("Recovery after the tokenizer swap (Qwen2.5-Coder-0.5B-Instruct)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)  # below: no line hidden
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=RES / "zen5" / "tokenizer_recover_summary")
    args = ap.parse_args()
    rows, base = gather()
    args.out.mkdir(parents=True, exist_ok=True)
    text = table(rows, base)
    (args.out / "table.md").write_text(text + "\n")
    plot(rows, base, args.out / "plot.png")
    print(text)


if __name__ == "__main__":
    main()
