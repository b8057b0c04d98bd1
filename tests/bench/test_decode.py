"""``tpro bench decode`` end to end on a tiny model: every method runs, ratios and files come out."""

import json
import sys
import types
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tpro.bench import decode as bench_decode
from tpro.bench.cli import app
from tpro.bench.decode import BenchConfig, Run, markdown, summarize


def test_summarize_ratios_and_acceptance():
    runs = [
        Run("generate-fp32", "ru-math", "a", 0.0, 100, 10.0),
        Run("generate-bf16", "ru-math", "a", 0.0, 100, 20.0),
        Run("vanilla", "ru-math", "a", 0.0, 100, 8.0),
        Run("eagle", "ru-math", "a", 0.0, 100, 4.0, steps=25, accepted=75, draft_s=1.0, verify_s=3.0),
    ]
    rows = {(r["domain"], r["method"]): r for r in summarize(runs)}
    e = rows[("ru-math", "eagle")]
    assert e["tokens_per_s"] == 25.0 and e["speedup_vs_generate"] == 2.5 and e["speedup_vs_vanilla"] == 2.0
    assert e["acceptance_length"] == 4.0 and e["draft_share"] == 0.25
    assert rows[("all", "eagle")]["tokens"] == 100
    assert "| 0.0 | ru-math | eagle | 25.00 | 2.50x | 2.00x | 4.00 |" in markdown(summarize(runs))


def test_cli_runs_every_method_and_writes_outputs(tiny_qwen2_dir, tiny_qwen2, tmp_path):
    from tpro.eagle.head import init_head, save_head

    torch.set_num_threads(1)
    save_head(init_head(tiny_qwen2.model), tmp_path / "head")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "\n".join(
            json.dumps({"id": f"{d}{i}", "domain": d, "prompt": q}, ensure_ascii=False)
            for i, (d, q) in enumerate([("chat", "Привет!"), ("math", "2+2=?"), ("math", "3*3=?")])
        )
    )
    # a config file (configs/bench/decode.yaml's shape) with flags over it, old spellings among them
    cfg = tmp_path / "decode.yaml"
    cfg.write_text(
        f"draft: {tmp_path / 'head'}\nprompts: {prompts}\nmax_new_tokens: 8\ntemperatures: [0.0, 0.8]\n"
        f"per_domain: 1\nout: {tmp_path / 'out'}\n"
    )
    r = CliRunner().invoke(
        app,
        [
            "decode",
            "--config",
            str(cfg),
            "--target",
            str(tiny_qwen2_dir),
            "--eagle-dtype",
            "float32",
            "--baseline-dtype",
            "float32",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "out" / "decode.json").read_text())
    methods = {(x["temperature"], x["method"]) for x in res["runs"]}
    # generate runs in both default generate dtypes; pld at T=0 only; compiled = the vanilla loop compiled
    assert methods == {
        (0.0, "generate-fp32"),
        (0.0, "generate-bf16"),
        (0.0, "pld"),
        (0.0, "vanilla"),
        (0.0, "compiled"),
        (0.0, "eagle"),
        (0.0, "eagle-compiled"),
        (0.8, "generate-fp32"),
        (0.8, "generate-bf16"),
        (0.8, "vanilla"),
        (0.8, "compiled"),
        (0.8, "eagle"),
        (0.8, "eagle-compiled"),
    }
    greedy = {x["method"]: x for x in res["runs"] if x["temperature"] == 0.0}
    for m in ("compiled", "eagle", "eagle-compiled"):  # fp32: the vanilla row's tokens
        assert greedy[m]["same_prefix"] == greedy[m]["tokens"], m
    assert any("eagle-compiled: verify ms by tree size" in n for n in res["notes"])
    assert {x["domain"] for x in res["runs"]} == {"chat", "math"}
    eagle = [x for x in res["summary"] if x["method"] == "eagle" and x["domain"] == "all"]
    assert all(x["acceptance_length"] >= 1.0 and x["speedup_vs_generate"] > 0 for x in eagle)
    assert (tmp_path / "out" / "decode.png").stat().st_size > 1000
    assert "| T | domain |" in (tmp_path / "out" / "decode.md").read_text()


def test_shipped_config_and_old_flags_resolve(tmp_path):
    """configs/bench/decode.yaml is the recorded recipe; docs/benchmarks.md's flags (and old spellings) go over it."""
    yaml = Path(__file__).parents[2] / "configs" / "bench" / "decode.yaml"
    args = ["decode", "--config", str(yaml), "--generate-dtype", "bfloat16", "--methods", "generate,vanilla,eagle"]
    r = CliRunner().invoke(app, [*args, "--reasoning", "-t", "0", "--print-config"])
    assert r.exit_code == 0, r.output
    (tmp_path / "back.yaml").write_text(r.output)
    cfg = BenchConfig.from_yaml(tmp_path / "back.yaml")
    assert cfg.max_new_tokens == 256 and cfg.draft == "default" and cfg.mode == "reasoning"
    assert cfg.temperatures == [0.0] and cfg.generate_dtypes == ["bfloat16"]
    assert cfg.methods == ["generate", "vanilla", "eagle"]


def test_cli_bad_input_exits_2(tmp_path):
    r = CliRunner().invoke(app, ["decode", "--prompts", str(tmp_path / "missing.jsonl")])
    assert r.exit_code == 2 and "missing.jsonl" in r.output
    r = CliRunner().invoke(app, ["decode", "-t", "9"])
    assert r.exit_code == 2
    r = CliRunner().invoke(app, ["decode", "--generate-dtype", "float8"])  # refused before any model loads
    assert r.exit_code == 2 and "float8" in r.output
    r = CliRunner().invoke(app, ["decode", "--methods", "generate,fast"])
    assert r.exit_code == 2 and "fast" in r.output


# --- the llama.cpp row ---------------------------------------------------------------------------------------------


def test_summarize_vs_llama_cpp_decode_speed_and_agreement():
    runs = [
        Run("vanilla", "ru-chat", "a", 0.0, 100, 10.0, prefill_s=1.0),
        Run("llama.cpp", "ru-chat", "a", 0.0, 100, 5.0, prefill_s=0.5, same_prefix=40),
        Run("eagle", "ru-chat", "a", 0.0, 100, 4.0, steps=25, accepted=75, draft_s=1.0, verify_s=3.0, same_prefix=100),
    ]
    rows = {r["method"]: r for r in summarize(runs) if r["domain"] == "ru-chat"}
    assert rows["eagle"]["speedup_vs_llama_cpp"] == 1.25 and rows["vanilla"]["speedup_vs_llama_cpp"] == 0.5
    assert rows["llama.cpp"]["speedup_vs_llama_cpp"] == 1.0
    # decode-only: the first token comes from prefill, so (100 - 1) tokens in (5.0 - 0.5) s
    assert rows["llama.cpp"]["decode_tokens_per_s"] == 22.0 and rows["llama.cpp"]["prefill_s"] == 0.5
    assert "decode_tokens_per_s" not in rows["eagle"]  # its prefill was not timed
    assert rows["llama.cpp"]["same_prefix_share"] == 0.4 and rows["eagle"]["same_prefix_share"] == 1.0
    md = markdown(summarize(runs), ["a note"])
    assert "| vs vanilla | vs llama.cpp | accept len |" in md
    assert "| 0.0 | ru-chat | eagle | 25.00 |  | 2.50x | 1.25x | 4.00 |" in md and md.endswith("\n- a note\n")
    # no llama.cpp row: no such column
    assert "llama.cpp" not in markdown(summarize(runs[:1]))


def test_llama_cpp_is_a_method():
    assert BenchConfig(methods=["vanilla,llama.cpp"]).methods == ["vanilla", "llama.cpp"]
    assert "llama.cpp" in BenchConfig().methods  # the default runs every row, the peer included when built


def _bench(tmp_path, target, *flags):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "\n".join(
            json.dumps({"id": f"{d}{i}", "domain": d, "prompt": q}, ensure_ascii=False)
            for i, (d, q) in enumerate([("chat", "Привет!"), ("math", "2+2=?")])
        )
    )
    args = ["decode", "--target", str(target), "--prompts", str(prompts), "-n", "6", "--per-domain", "1"]
    args += ["--baseline-dtype", "float32", "--threads", "1", "--out", str(tmp_path / "out"), *flags]
    return CliRunner().invoke(app, args)


def test_llama_cpp_row_skipped_with_a_note_without_the_binding(tiny_qwen2_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp raises ImportError
    r = _bench(tmp_path, tiny_qwen2_dir, "--methods", "vanilla,llama.cpp")
    assert r.exit_code == 0, r.output
    assert "llama.cpp row skipped: the llama_cpp binding is not installed" in r.output
    assert "bench/build_llama_cpp.sh" in r.output
    res = json.loads((tmp_path / "out" / "decode.json").read_text())
    assert {x["method"] for x in res["runs"]} == {"vanilla"} and res["llama_cpp"] is None
    assert "binding is not installed" in res["notes"][0]
    assert "- llama.cpp row skipped" in (tmp_path / "out" / "decode.md").read_text()


def _fake_llama_cpp(lm, calls: list) -> types.ModuleType:
    """A stand-in for the binding: greedy decoding of ``lm`` (fp32) on the ids it is given, recording every call."""

    class Llama:
        def __init__(self, model_path, n_ctx, n_threads, n_threads_batch, verbose):
            calls.append(dict(init=model_path, n_ctx=n_ctx, threads=n_threads, threads_batch=n_threads_batch))
            self.cached, self.seed = 0, None

        def reset(self):
            self.cached = 0

        def set_seed(self, seed):
            self.seed = seed

        def tokenize(self, text, add_bos, special):
            return lm.tokenizer(text.decode(), add_special_tokens=False)["input_ids"]

        def generate(self, tokens, **kw):
            calls.append(dict(cached=self.cached, prompt=list(tokens), seed=self.seed, **kw))
            ids = list(tokens)
            while True:
                with torch.inference_mode():
                    tok = int(lm.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
                ids.append(tok)
                self.cached = len(ids)
                yield tok

    mod = types.ModuleType("llama_cpp")
    mod.Llama, mod.__version__ = Llama, "0.0-fake"
    return mod


def _use_fake(monkeypatch, fake: types.ModuleType):
    monkeypatch.setitem(sys.modules, "llama_cpp", fake)
    monkeypatch.setattr(bench_decode, "binding_fails", lambda: None)  # its probe runs in a fresh interpreter


def test_binding_probe_reports_a_crash_instead_of_dying():
    import signal

    assert bench_decode.binding_fails("pass") is None
    assert "SIGILL" in bench_decode.binding_fails(f"import os; os.kill(os.getpid(), {int(signal.SIGILL)})")
    assert bench_decode.binding_fails("raise SystemExit('no libllama.so')") == "no libllama.so"


def test_llama_cpp_row_skipped_when_the_binding_does_not_run(tiny_qwen2, tiny_qwen2_dir, tmp_path, monkeypatch):
    _use_fake(monkeypatch, _fake_llama_cpp(tiny_qwen2, []))
    monkeypatch.setattr(bench_decode, "binding_fails", lambda: "SIGILL: it was built for another CPU's instruction set")
    r = _bench(tmp_path, tiny_qwen2_dir, "--methods", "vanilla,llama.cpp", "--gguf", __file__)
    assert r.exit_code == 0, r.output
    assert "binding does not run here (SIGILL" in r.output and "build_llama_cpp.sh --force" in r.output
    assert {x["method"] for x in json.loads((tmp_path / "out" / "decode.json").read_text())["runs"]} == {"vanilla"}


def test_llama_cpp_row_without_a_gguf_is_skipped_and_a_wrong_one_refused(
    tiny_qwen2, tiny_qwen2_dir, tmp_path, monkeypatch
):
    _use_fake(monkeypatch, _fake_llama_cpp(tiny_qwen2, []))
    r = _bench(tmp_path, tiny_qwen2_dir, "--methods", "vanilla,llama.cpp")
    assert r.exit_code == 0, r.output
    assert "llama.cpp row skipped: no GGUF known for target" in r.output and "--gguf PATH" in r.output
    r = _bench(tmp_path, tiny_qwen2_dir, "--methods", "vanilla,llama.cpp", "--gguf", str(tmp_path / "none.gguf"))
    assert r.exit_code == 2 and "none.gguf" in r.output


def test_llama_cpp_row_gets_our_ids_budget_sampling_and_threads(tiny_qwen2, tiny_qwen2_dir, tmp_path, monkeypatch):
    from tpro.models import build_prompt

    calls: list[dict] = []
    _use_fake(monkeypatch, _fake_llama_cpp(tiny_qwen2, calls))
    gguf = tmp_path / "target.gguf"
    gguf.write_bytes(b"GGUF")  # the fake never reads it
    r = _bench(tmp_path, tiny_qwen2_dir, "--methods", "vanilla,llama.cpp", "--gguf", str(gguf), "-t", "0", "-t", "0.8")
    assert r.exit_code == 0, r.output
    assert calls[0] == dict(init=str(gguf), n_ctx=calls[0]["n_ctx"], threads=1, threads_batch=1)
    gens = calls[2:]  # calls[1]: the warm-up
    ids = [build_prompt(tiny_qwen2.tokenizer, q, "direct").input_ids for q in ("Привет!", "2+2=?")]
    assert [c["prompt"] for c in gens] == ids + ids  # our token ids, per prompt, at each temperature
    assert all(c["cached"] == 0 for c in gens)  # every request starts from an empty cache: prefill is timed
    assert [c["temp"] for c in gens] == [0.0, 0.0, 0.8, 0.8] and all(c["seed"] == 0 for c in gens)
    assert all((c["top_k"], c["top_p"], c["min_p"], c["repeat_penalty"]) == (0, 1.0, 0.0, 1.0) for c in gens)
    assert calls[0]["n_ctx"] >= max(map(len, ids)) + 6
    res = json.loads((tmp_path / "out" / "decode.json").read_text())
    peer = [x for x in res["runs"] if x["method"] == "llama.cpp"]
    assert len(peer) == 4 and all(x["prefill_s"] is not None and 1 <= x["tokens"] <= 6 for x in peer)
    # the fake decodes the same fp32 weights greedily, so at T=0 it agrees with our vanilla loop token for token
    assert all(x["same_prefix"] == x["tokens"] for x in peer if x["temperature"] == 0)
    assert all(x["same_prefix"] is None for x in res["runs"] if x["temperature"] > 0)
    rows = [x for x in res["summary"] if x["domain"] == "all"]
    assert all(x["speedup_vs_llama_cpp"] > 0 for x in rows) and res["llama_cpp"]["threads"] == 1
    assert "| vs llama.cpp |" in (tmp_path / "out" / "decode.md").read_text()


@pytest.mark.slow
@pytest.mark.embedded
def test_real_llama_cpp_on_the_embedded_gguf(embedded):
    """The built binding (bench/build_llama_cpp.sh; CI does not build it) on the embedded GGUF with our ids."""
    pytest.importorskip("llama_cpp", reason="llama.cpp's binding is not built (bash bench/build_llama_cpp.sh)")
    from tpro.bench.decode import LlamaCpp, _eos
    from tpro.models import build_prompt
    from tpro.models.default import ensure_gguf

    peer = LlamaCpp(ensure_gguf(), threads=2, n_ctx=256)
    chat = build_prompt(embedded.tokenizer, "Напиши на Python функцию факториала.", "direct")
    assert peer.tokenizes_like(chat.text, chat.input_ids)  # the GGUF's vocabulary is the target's
    eos = _eos(embedded.model, embedded.tokenizer)
    run, ids = peer.run(chat.input_ids, 8, 0.0, 0, eos)
    assert run.tokens == len(ids) == 8 and 0 < run.prefill_s < run.seconds
    assert peer.run(chat.input_ids, 8, 0.0, 0, eos)[1] == ids  # greedy and from an empty cache: the same again
    assert not set(ids) & eos


def test_summarize_compares_each_weight_format_with_its_own_vanilla():
    runs = [
        Run("vanilla", "chat", "a", 0.0, 100, 10.0),
        Run("vanilla-int4", "chat", "a", 0.0, 100, 5.0),
        Run("eagle-int4", "chat", "a", 0.0, 100, 2.5, steps=40, accepted=60),
        Run("eagle", "chat", "a", 0.0, 100, 5.0, steps=40, accepted=60),
        Run("pld", "chat", "a", 0.0, 100, 4.0),
    ]
    rows = {r["method"]: r for r in summarize(runs) if r["domain"] == "chat"}
    assert rows["eagle-int4"]["speedup_vs_vanilla"] == 2.0  # against vanilla-int4, not the bf16 row
    assert rows["eagle"]["speedup_vs_vanilla"] == 2.0
    assert rows["vanilla-int4"]["speedup_vs_vanilla"] == 1.0
    assert rows["pld"]["speedup_vs_vanilla"] == 2.5  # baselines: against the checkpoint's weights
    assert bench_decode.vanilla_of("pld", ["vanilla-int8"]) == "vanilla-int8"  # no bf16 row: the first vanilla
    assert bench_decode.vanilla_of("eagle-compiled-int4", []) == "vanilla-int4"
    assert bench_decode.vanilla_of("eagle-compiled", ["vanilla"]) == "vanilla"
    assert bench_decode.vanilla_of("compiled-w8a8", []) == "vanilla-w8a8"


def test_cli_runs_each_weight_format_and_eagle_matches_its_own_greedy(tiny_qwen2_dir, tiny_qwen2, tmp_path):
    """--weights bf16 --weights int8: vanilla and EAGLE rows per format; at T=0 (fp32 activations) the EAGLE row's
    output equals the same weights' vanilla output, which same_prefix records."""
    from tpro.eagle.head import init_head, save_head

    torch.set_num_threads(1)
    save_head(init_head(tiny_qwen2.model), tmp_path / "head")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "c0", "domain": "chat", "prompt": "Привет, как дела?"}, ensure_ascii=False))
    args = ["decode", "-m", str(tiny_qwen2_dir), "-d", str(tmp_path / "head"), "--prompts", str(prompts)]
    args += ["--dtype", "float32", "-n", "12", "--methods", "vanilla,eagle", "--weights", "bf16", "--weights", "int8"]
    args += ["-o", str(tmp_path / "out"), "--json"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "out" / "decode.json").read_text())
    runs = {x["method"]: x for x in res["runs"]}
    assert set(runs) == {"vanilla", "vanilla-int8", "eagle", "eagle-int8"}
    assert runs["eagle-int8"]["same_prefix"] == runs["eagle-int8"]["tokens"] == runs["vanilla-int8"]["tokens"]
    assert runs["eagle"]["same_prefix"] == runs["eagle"]["tokens"]
