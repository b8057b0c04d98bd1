"""The CLI end to end on a tiny model: adapt -> check -> report -> remap-model, YAML configs, clear errors."""

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from tpro.tokenizer.cli import app

from .conftest import SMALL_CORPUS, SMALL_KEEP

runner = CliRunner()
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "tokenizer"


def test_adapt_check_report_remap(tiny_qwen3_dir, tmp_path):
    out = tmp_path / "tok"
    args = [
        "adapt",
        "--base",
        str(tiny_qwen3_dir / "tokenizer.json"),
        "--out",
        str(out),
        "--swap",
        "24",
        "--trainer-words",
        "50000",
        "--quiet",
        "--json",
    ]
    for c in SMALL_CORPUS:
        args += ["--corpus", c]
    for c in SMALL_KEEP:
        args += ["--keep-corpus", c]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["swapped"] == 24
    assert {p.name for p in out.iterdir()} >= {"tokenizer.json", "tokenizer_config.json", "swap.json", "report.json"}
    # The chat template (with enable_thinking) travels with the tokenizer.
    r = runner.invoke(app, ["check", str(out), "--base", str(tiny_qwen3_dir), "--examples", "50", "--json"])
    assert r.exit_code == 0, r.output
    assert all(c["ok"] for c in json.loads(r.stdout))

    text = tmp_path / "ru.txt"
    # Frequent words, which a 24-token swap learns; not the tiny base's own training sentences ("Мама мыла раму"),
    # whose whole-word tokens are rare in the word lists and may be among the ones removed.
    text.write_text("Он не знает, как на это ответить.\nМы были в городе и на море.\n", encoding="utf-8")
    r = runner.invoke(
        app,
        [
            "report",
            "--tokenizer",
            f"base={tiny_qwen3_dir}",
            "--tokenizer",
            f"new={out}",
            "--text",
            f"ru={text}",
            "--out-dir",
            str(tmp_path / "rep"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    rows = {row["tokenizer"]: row for row in json.loads(r.stdout)}
    assert rows["new"]["tokens"] < rows["base"]["tokens"] and rows["new"]["words"] == rows["base"]["words"] == 14
    assert (tmp_path / "rep" / "density.png").is_file() and (tmp_path / "rep" / "density.md").is_file()

    r = runner.invoke(
        app,
        [
            "remap-model",
            "--model",
            str(tiny_qwen3_dir),
            "--tokenizer",
            str(out),
            "--out",
            str(tmp_path / "m"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["tied"] is True
    assert (tmp_path / "m" / "model.safetensors").is_file() and (tmp_path / "m" / "tokenizer.json").is_file()


def test_bad_inputs_exit_2(tiny_qwen2_dir, tmp_path):
    r = runner.invoke(app, ["adapt", "--base", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "does not exist" in r.stderr
    r = runner.invoke(
        app,
        [
            "adapt",
            "--base",
            str(tiny_qwen2_dir),
            "--out",
            str(tmp_path / "o"),
            "--corpus",
            str(tmp_path / "nope.txt"),
            "--quiet",
        ],
    )
    assert r.exit_code == 2 and "no such file" in r.stderr
    (tmp_path / "w.jsonl").write_text('{"text": "привет"}\n')
    r = runner.invoke(
        app,
        [
            "adapt",
            "--base",
            str(tiny_qwen2_dir),
            "--out",
            str(tmp_path / "o"),
            "--corpus",
            str(tmp_path / "w.jsonl"),
            "--quiet",
        ],
    )
    assert r.exit_code == 2 and "name the JSON field" in r.stderr
    r = runner.invoke(
        app,
        [
            "remap-model",
            "--model",
            str(tiny_qwen2_dir),
            "--tokenizer",
            str(tiny_qwen2_dir),
            "--out",
            str(tmp_path / "m"),
            "--method",
            "magic",
        ],
    )
    assert r.exit_code == 2 and "'magic' is not one of 'mean', 'contextual'" in r.stderr
    r = runner.invoke(app, ["report", "--tokenizer", str(tiny_qwen2_dir), "--text", str(tmp_path / "none.txt")])
    assert r.exit_code == 2
    assert not (tmp_path / "o").exists()


def test_adapt_and_check_from_config_files(tiny_qwen2_dir, adapted_tiny, tmp_path):
    """`--config FILE` sets every field (a positional one too); flags given on the command line win."""
    out = tmp_path / "tok"
    cfg = tmp_path / "adapt.yaml"
    settings = dict(
        base=str(tiny_qwen2_dir),
        out=str(out),
        swap=16,
        corpus=SMALL_CORPUS,
        keep_corpus=SMALL_KEEP,
        trainer_words=50000,
    )
    cfg.write_text(yaml.safe_dump(settings), encoding="utf-8")
    r = runner.invoke(app, ["adapt", "--config", str(cfg), "--swap", "12", "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["swapped"] == 12 and report["config"] == {**report["config"], **settings, "swap": 12}

    check = tmp_path / "check.yaml"
    check.write_text(yaml.safe_dump({"directory": str(adapted_tiny[0]), "base": str(tiny_qwen2_dir), "examples": 20}))
    r = runner.invoke(app, ["check", "--config", str(check), "--json"])
    assert r.exit_code == 0, r.output
    assert all(c["ok"] for c in json.loads(r.stdout))

    check.write_text("directory: x\nbase: y\nexampels: 3\n")
    r = runner.invoke(app, ["check", "--config", str(check)])
    assert r.exit_code == 2 and "unknown key 'exampels' (did you mean 'examples'?)" in r.stderr


def test_shipped_configs_read_and_name_their_command():
    """Each configs/tokenizer/*.yaml opens with the command that runs it, and that command accepts the file."""
    files = sorted(CONFIGS.glob("*.yaml"))
    assert files
    for f in files:
        first = f.read_text(encoding="utf-8").splitlines()[0]
        verb = first.split()[3]
        assert first == f"# tpro tokenizer {verb} --config configs/tokenizer/{f.name}"
        r = runner.invoke(app, [verb, "--config", str(f), "--print-config"])
        assert r.exit_code == 0, r.output
        assert yaml.safe_load(r.stdout).items() >= yaml.safe_load(f.read_text(encoding="utf-8")).items()


def test_default_corpus_missing_source_exits_2_unless_allowed(tiny_qwen2_dir, tmp_path, monkeypatch):
    from tpro.tokenizer import corpus

    monkeypatch.setattr(corpus, "HUNSPELL_DIR", tmp_path / "no-hunspell")  # a machine without the word lists
    out = tmp_path / "o"
    r = runner.invoke(app, ["adapt", "--base", str(tiny_qwen2_dir), "--out", str(out), "--swap", "8", "--quiet"])
    assert r.exit_code == 2
    for lang in ("ru", "uk", "be", "bg", "sr", "kk", "mn"):
        assert f"apt-get install hunspell-{lang}" in r.stderr
    assert "--allow-missing" in r.stderr and not out.exists()
    # --allow-missing goes on without them, says so, and records what is missing.
    args = ["adapt", "--base", str(tiny_qwen2_dir), "--out", str(out), "--swap", "8", "--trainer-words", "20000"]
    args += ["--corpus", "wordfreq:ru:2000", "--corpus", "hunspell:kk", "--keep-corpus", SMALL_KEEP[0]]
    r = runner.invoke(app, [*args, "--quiet"])
    assert r.exit_code == 2 and "hunspell-kk" in r.stderr and not out.exists()
    r = runner.invoke(app, [*args, "--allow-missing", "--lang-weights", "ru=2", "--profile", "even"])
    assert r.exit_code == 0, r.output
    assert "hunspell-kk" in r.stdout and "warning: --allow-missing" in r.output
    report = json.loads((out / "report.json").read_text())
    assert len(report["missing_sources"]) == 1 and "hunspell:kk" in report["missing_sources"][0]
    assert [s["spec"] for s in report["corpus_sources"]] == ["wordfreq:ru:2000", SMALL_KEEP[0]]
    assert report["language_weights"] == {"ru": 2.0} and report["corpus_sources"][0]["weight"] == 2.0


def _save(tok, directory):
    directory.mkdir()
    tok.save(str(directory / "tokenizer.json"))
    return directory


def test_bad_bases_exit_2_and_write_nothing(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    wordpiece = _save(Tokenizer(models.WordPiece({"[UNK]": 0, "мама": 1}, unk_token="[UNK]")), tmp_path / "wp")
    unigram = _save(Tokenizer(models.Unigram([("<unk>", 0.0), ("▁мама", -1.0)], unk_id=0)), tmp_path / "ug")
    sp = Tokenizer(models.BPE({"▁": 0, "м": 1, "а": 2, "▁м": 3}, [("▁", "м")]))  # SentencePiece-style pieces
    sp.pre_tokenizer, sp.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    metaspace = _save(sp, tmp_path / "sp")
    sp.pre_tokenizer, sp.decoder = pre_tokenizers.ByteLevel(), decoders.ByteLevel()  # says ByteLevel, pieces are not
    mislabelled = _save(sp, tmp_path / "sp-bl")
    out = tmp_path / "o"
    for base, says in [
        (wordpiece, "holds a WordPiece model, not a BPE one"),
        (unigram, "holds a Unigram model, not a BPE one"),
        (metaspace, "not a byte-level one"),
        (mislabelled, "not made of byte-level characters"),
    ]:
        r = runner.invoke(app, ["adapt", "--base", str(base), "--out", str(out), "--corpus", "math", "--quiet"])
        assert r.exit_code == 2 and says in r.stderr and "only byte-level BPE" in r.stderr, (base, r.output)
        assert not out.exists() and not list(tmp_path.glob("o.tmp*"))


def test_remap_with_another_models_vocabulary_exits_2(tiny_qwen2_dir, adapted_tiny, other_cyrillic_base, tmp_path):
    import shutil

    out = tmp_path / "m"
    base = ["remap-model", "--model", str(tiny_qwen2_dir), "--out", str(out)]
    r = runner.invoke(app, [*base, "--tokenizer", str(other_cyrillic_base)])  # a vocabulary of its own
    assert r.exit_code == 2 and "not adapted from this model's vocabulary" in r.stderr, r.output
    # Same size, but swap.json disagrees with the ids that differ from the model's tokenizer.
    tok = tmp_path / "tok"
    shutil.copytree(adapted_tiny[0], tok)
    swap = json.loads((tok / "swap.json").read_text())
    (tok / "swap.json").write_text(json.dumps(swap[1:]))
    r = runner.invoke(app, [*base, "--tokenizer", str(tok)])
    assert r.exit_code == 2 and "swap.json lists 39 swapped" in r.stderr, r.output
    assert not out.exists() and not list(tmp_path.glob("m.tmp*"))
