"""``tpro tokenizer adapt|check|report|remap-model``: thin typer commands over ``tpro.tokenizer``.

Heavy imports (tokenizers, transformers, torch) happen inside the commands so ``tpro --help`` stays instant.
Bad input ends with a message on stderr and exit code 2; a failed ``check`` exits 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Cyrillic-dense tokenizer: adapt a byte-level BPE, check it, report density, remap a model.",
)


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    raise typer.Exit(2)


def _user_errors():
    from tpro.models.loading import ModelLoadError
    from tpro.tokenizer.bpe import TokenizerSpecError
    from tpro.tokenizer.corpus import CorpusError

    return (TokenizerSpecError, CorpusError, ModelLoadError, ValueError, FileNotFoundError)


@app.command()
def adapt(
    base: str = typer.Option(..., help="Base tokenizer: tokenizer.json, a directory holding one, or a hub id."),
    out: Path = typer.Option(
        ..., help="Output directory (tokenizer.json, tokenizer_config.json, swap.json, report.json)."
    ),
    swap: int = typer.Option(34000, help="How many tokens to replace (T-pro 2.0: 34000 of Qwen3's ~151k)."),
    corpus: list[str] | None = typer.Option(
        None,
        help="Cyrillic source, repeatable: wordfreq:LANG[:N], hunspell:LANG, FILE.txt, FILE.jsonl:FIELD, "
        "FILE.tsv (word<TAB>count), hf:NAME[:CONFIG]:SPLIT:FIELD; suffix @WEIGHT. Default: wordfreq ru/uk/bg/mk "
        "plus installed hunspell ru/uk/be/bg/sr/kk/mn.",
    ),
    keep_corpus: list[str] | None = typer.Option(
        None,
        help="Keep-mix source (same forms, plus `code` and `math`), repeatable. Default: wordfreq:en, code, "
        "math; the Cyrillic corpus is always part of the keep mix.",
    ),
    protect_ascii: bool = typer.Option(True, help="Never remove pure-ASCII tokens (keeps English/code/digits)."),
    trainer_words: int = typer.Option(4_000_000, help="Word occurrences fed to the Cyrillic BPE trainer."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    quiet: bool = typer.Option(False, help="No progress bars."),
):
    """Swap low-value tokens of a byte-level BPE for Cyrillic ones (ids of kept tokens unchanged)."""
    from tpro.tokenizer.adapt import AdaptConfig
    from tpro.tokenizer.adapt import adapt as run

    cfg = AdaptConfig(
        base=base,
        out=str(out),
        swap=swap,
        corpus=corpus or [],
        keep_corpus=keep_corpus or [],
        protect_ascii=protect_ascii,
        trainer_words=trainer_words,
    )
    try:
        report = run(cfg, show_progress=not quiet)
    except _user_errors() as e:
        _fail(str(e))
    if as_json:
        print(json.dumps(report, ensure_ascii=False, indent=1))
        return
    print(
        f"swapped {report['swapped']} tokens; reachable fraction {report['reachable_fraction']:.1%}; "
        f"{report['seconds']['total']:.0f} s -> {out}"
    )
    for name, d in report["density_on_corpus"].items():
        print(f"  tokens per chunk on {name}: {d['base']:.3f} -> {d['adapted']:.3f}")


@app.command()
def check(
    directory: str = typer.Argument(..., help="Adapted tokenizer directory (or tokenizer.json)."),
    base: str = typer.Option(..., help="The base tokenizer it was adapted from."),
    examples: int = typer.Option(300, help="Hypothesis examples for the round-trip property."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON."),
):
    """Round trip (hypothesis), reachability, kept ids, loading, chat template. Exit 1 if any check fails."""
    from tpro.tokenizer.check import run_checks

    try:
        checks = run_checks(directory, base, examples)
    except _user_errors() as e:
        _fail(str(e))
    if as_json:
        print(json.dumps([c.__dict__ for c in checks], ensure_ascii=False, indent=1))
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table("check", "result", "detail")
        for c in checks:
            t.add_row(c.name, "[green]ok[/]" if c.ok else "[red]FAIL[/]", c.detail)
        Console().print(t)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


def _labelled(specs: list[str]) -> dict[str, str]:
    out = {}
    for s in specs:
        label, sep, rest = s.partition("=")
        if sep and not Path(s).exists():
            out[label] = rest
        else:
            out[Path(s).name if Path(s).name != "tokenizer.json" else Path(s).parent.name] = s
    return out


@app.command()
def report(
    tokenizer: list[str] = typer.Option(
        ...,
        help="Tokenizer (dir, tokenizer.json, hub id), repeatable; LABEL=SPEC "
        "to name it. The first is the reference for the relative column.",
    ),
    text: list[str] = typer.Option(
        ...,
        help="Text file (one sentence or paragraph per line), repeatable; "
        "LABEL=FILE to name it (e.g. ru=ud/ru_test.txt).",
    ),
    out_dir: Path | None = typer.Option(None, help="Write density.md, density.json and density.png here."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of the markdown table."),
):
    """Tokens per word, share of words in 1 and <=2 tokens, chars per token; per text and tokenizer.

    A word is a maximal run of letters/marks/digits (regex [^\\W_]+); tokens per word counts every token of the
    line (spaces and punctuation included) over the words in it.
    """
    from tpro.tokenizer.density import bar_chart, density_table, load_tokenizer, to_json, to_markdown

    try:
        toks = {name: load_tokenizer(spec) for name, spec in _labelled(tokenizer).items()}
        texts = {}
        for name, f in _labelled(text).items():
            if not Path(f).is_file():
                raise FileNotFoundError(f"text file {f!r} does not exist")
            texts[name] = Path(f).read_text(encoding="utf-8").splitlines()
    except _user_errors() as e:
        _fail(str(e))
    rows = density_table(toks, texts)
    md = to_markdown(rows)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "density.md").write_text(md + "\n", encoding="utf-8")
        (out_dir / "density.json").write_text(to_json(rows), encoding="utf-8")
        bar_chart(rows, out_dir / "density.png")
    print(to_json(rows) if as_json else md)


@app.command("remap-model")
def remap_model(
    model: str = typer.Option("default", help="Base model: default (embedded), a checkpoint dir, .gguf or hub id."),
    tokenizer: str = typer.Option(..., help="The adapted tokenizer directory (from `tpro tokenizer adapt`)."),
    out: Path = typer.Option(..., help="Output checkpoint directory (safetensors + the adapted tokenizer)."),
    method: str = typer.Option(
        "mean",
        help="mean (mean of the old pieces) or contextual (lm_head rows fitted to "
        "the base model's log-probs of the pieces on --text; input rows by OMP).",
    ),
    text: list[str] | None = typer.Option(None, help="Cyrillic running text for --method contextual, repeatable."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Re-initialise the embedding and lm_head rows of swapped ids; kept rows stay bit-identical."""
    from tpro.tokenizer.remap import RemapConfig
    from tpro.tokenizer.remap import remap as run

    cfg = RemapConfig(model=model, tokenizer=tokenizer, out=str(out), method=method, text=text or [])
    try:
        stats = run(cfg, show_progress=not as_json)
    except _user_errors() as e:
        _fail(str(e))
    print(
        json.dumps(stats)
        if as_json
        else f"remapped {stats['swapped']} rows ({method}, fitted {stats['fitted']}, tied={stats['tied']}) -> {out}"
    )
