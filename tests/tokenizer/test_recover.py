"""tpro tokenizer recover on tiny models: stage parsing, ALM alignment and loss, awedist, the rows mask (other rows
bit-identical), untying, budget stop, kill and resume (same weights as an uninterrupted run), clear errors, the CLI."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from tpro.config import ConfigError
from tpro.tokenizer import recover as rec
from tpro.tokenizer.cli import app
from tpro.tokenizer.recover import RecoverConfig, recover

TRAIN = """Он не знает, как на это ответить, и что сказать за столом.
Мы были в городе и на море, как и в прошлом году.
Сегодня в городе прошла большая конференция о развитии науки и образования.
Учёные обсуждали новые методы обучения детей и что из этого выйдет.
Правительство утвердило программу поддержки молодых специалистов из регионов.
Я не могу сказать, что это так, но и не могу спорить с ним.
В каждом доме есть окно, за которым живёт своя история.
Мама мыла раму, а папа читал газету в большой комнате.
"""
EVAL = "Он пришёл домой поздно и не стал ужинать.\nКак на это смотрят в других странах, никто не знает.\n"


@pytest.fixture(scope="module")
def remapped(tiny_qwen2_dir, tiny_qwen3_dir, adapted_tiny, tmp_path_factory):
    """{arch: (remapped dir, base dir)}: mean-init remaps of the untied Qwen2 and the tied Qwen3 tiny models."""
    from tpro.tokenizer.remap import RemapConfig, remap

    root = tmp_path_factory.mktemp("remapped")
    out = {}
    for arch, base in (("qwen2", tiny_qwen2_dir), ("qwen3", tiny_qwen3_dir)):
        remap(RemapConfig(model=str(base), tokenizer=str(adapted_tiny[0]), out=str(root / arch)), show_progress=False)
        out[arch] = (root / arch, base)
    return out


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    d = tmp_path_factory.mktemp("text")
    (d / "train.txt").write_text(TRAIN, encoding="utf-8")
    (d / "eval.txt").write_text(EVAL, encoding="utf-8")
    return d / "train.txt", d / "eval.txt"


def _cfg(model, texts, out, **kw) -> RecoverConfig:
    values = dict(
        model=str(model),
        train=[str(texts[0])],
        out=str(out),
        block=32,
        batch=2,
        budget_minutes=10.0,
        save_steps=2,
        warmup_steps=0,
        stages="init:mean,rows:ce",
        max_steps=4,
    )
    return RecoverConfig(**{**values, **kw})


def _weights(d: Path) -> dict:
    return load_file(str(d / "model.safetensors"))


# --- stages, budget, text ---------------------------------------------------------------------------------------


def test_parse_stages_shares_and_ends():
    plan = rec.parse_stages("init:awedist,rows:alm:0.7,full:0.3")
    assert [(s.name, s.variant, s.share) for s in plan] == [
        ("init", "awedist", 0.1),
        ("rows", "alm", 0.7),
        ("full", "ce", 0.3),
    ]
    assert rec.stage_ends(plan, 1100.0) == pytest.approx([100.0, 800.0, 1100.0])
    assert rec.stage_ends(rec.parse_stages("init:mean"), 0.0) == [float("inf")]
    assert [s.share for s in rec.parse_stages("init:mean,rows:alm+ce,full")] == [0.0, 1.0, 1.0]
    for bad, msg in [
        ("rows,init", "in that order"),
        ("rows:magic", "ce | alm | alm\\+ce"),
        ("warp", "unknown stage"),
        ("rows:-1", ">= 0"),
        ("rows,rows", "at most once"),
        ("", "at most once"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            rec.parse_stages(bad)


def test_budget_zero_only_for_init(remapped, texts, tmp_path):
    with pytest.raises(ConfigError, match="leaves no time to train"):
        _cfg(remapped["qwen2"][0], texts, tmp_path / "o", budget_minutes=0.0)
    assert _cfg(remapped["qwen2"][0], texts, tmp_path / "o", budget_minutes=0.0, stages="init:awedist")
    r = CliRunner().invoke(
        app, ["recover", "-m", str(remapped["qwen2"][0]), "--train", str(texts[0]), "--out", str(tmp_path / "o"),
              "--budget-minutes", "0"],
    )  # fmt: skip
    assert r.exit_code == 2 and "leaves no time to train" in r.stderr
    assert not (tmp_path / "o").exists()


def test_read_texts_formats(tmp_path):
    (tmp_path / "a.txt").write_text("один\n\nдва\n", encoding="utf-8")
    rows = [
        {"instruction": "Ответь.", "instances": [{"output": "Да."}, {"output": "Нет."}], "text": "т"},
        {"instruction": "Только вопрос."},
    ]
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    assert rec.read_texts([str(tmp_path / "a.txt")]) == ["один", "два"]
    got = rec.read_texts([f"{tmp_path / 's.jsonl'}:instruction,instances.output"])
    assert got == ["Ответь.\nДа.\nНет.", "Только вопрос."]
    assert rec.read_texts([str(tmp_path / "s.jsonl")]) == ["т"]
    assert rec.read_texts([str(tmp_path / "a.txt"), str(tmp_path / "a.txt")], limit=3) == ["один", "два", "один"]
    with pytest.raises(ConfigError, match="no such file"):
        rec.read_texts([str(tmp_path / "missing.txt")])
    with pytest.raises(ConfigError, match="no text found"):
        rec.read_texts([f"{tmp_path / 's.jsonl'}:nope"])


# --- ALM: alignment and loss -----------------------------------------------------------------------------------


def test_alm_chunks_hand_example():
    # student tokens of 3, 2, 4 bytes (ends 3, 5, 9); teacher tokens of 1, 3, 1, 4 bytes (ends 1, 4, 5, 9)
    lens_s, lens_t = [3, 2, 4], [1, 3, 1, 4]
    bounds = rec.shared_boundaries(lens_s, lens_t)
    assert bounds == [5, 9]  # 3 is a student end only, 1 a teacher end only
    assert rec.chunk_index(lens_s, bounds) == [0, 0, 1]
    assert rec.chunk_index(lens_t, bounds) == [0, 0, 0, 1]
    assert rec.chunk_index([3, 2, 4], [5]) == [0, 0, -1]  # past the last boundary: no chunk
    lp = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, 0.0, 0.0]])
    chunks = torch.tensor([[0, 0, 1], [0, -1, -1]])
    got = rec.chunk_logprobs(lp, chunks, 2)
    assert torch.equal(got, torch.tensor([[-3.0, -0.5], [-3.0, 0.0]]))  # per-chunk sums; padding ignored
    assert got[0].sum() == lp[0].sum()


def test_alm_chunks_cover_the_same_bytes(remapped, adapted_tiny):
    """On real tokenizations, the student's and the teacher's tokens of each chunk decode to the same bytes."""
    from transformers import AutoTokenizer

    from tpro.tokenizer.bpe import token_bytes

    new_tok = AutoTokenizer.from_pretrained(remapped["qwen2"][0])
    base_tok = AutoTokenizer.from_pretrained(remapped["qwen2"][1])
    swapped = {r["id"] for r in json.loads((adapted_tiny[0] / "swap.json").read_text())}
    docs = rec.make_docs(TRAIN.splitlines(), new_tok, 48, teacher_tok=base_tok)
    assert len(docs) > 1 and all(len(d.ids) <= 47 for d in docs)
    assert any(i in swapped for d in docs for i in d.ids)  # the new tokens are in the text
    n_multi = 0
    for d in docs:
        s_tok, t_tok = new_tok.convert_ids_to_tokens(d.ids), base_tok.convert_ids_to_tokens(d.teacher_ids)
        assert b"".join(map(token_bytes, s_tok)) == b"".join(map(token_bytes, t_tok))
        assert max(d.chunks) == max(d.teacher_chunks) == d.n_chunks - 1
        for k in range(d.n_chunks):
            s = b"".join(token_bytes(t) for t, c in zip(s_tok, d.chunks) if c == k)
            t = b"".join(token_bytes(t) for t, c in zip(t_tok, d.teacher_chunks) if c == k)
            assert s == t and s
            n_multi += sum(c == k for c in d.teacher_chunks) > 1
    assert n_multi > 0  # some chunks are one new token against several old pieces


def test_alm_loss_zero_gradient_when_student_is_teacher(tiny_qwen2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_qwen2_dir)
    teacher = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir).eval()
    student = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir).eval()
    docs = rec.make_docs(TRAIN.splitlines()[:4], tok, 32, teacher_tok=tok)
    assert all(d.n_chunks == len(d.ids) for d in docs)  # one tokenizer: every token is its own chunk
    cfg = RecoverConfig(model="x", train=["x"], out="x")
    ctx = (tok.convert_tokens_to_ids("<|endoftext|>"),) * 2
    loss, ce = rec.batch_loss(student, teacher, docs, ctx, "alm", cfg, "cpu")
    loss.backward()
    assert abs(loss.item()) < 1e-9 and ce.item() > 1.0
    assert max(p.grad.abs().max() for p in student.parameters() if p.grad is not None) < 1e-7
    # not vacuous: a different student gets a loss and a gradient
    student.zero_grad()
    with torch.no_grad():
        student.lm_head.weight.mul_(1.5)
    loss, _ = rec.batch_loss(student, teacher, docs, ctx, "alm", cfg, "cpu")
    loss.backward()
    assert loss.item() > 1e-4
    assert max(p.grad.abs().max() for p in student.parameters() if p.grad is not None) > 1e-4


def test_alm_loss_is_binary_kl():
    t = torch.log(torch.tensor([[0.9, 0.2]]))
    s = torch.log(torch.tensor([[0.6, 0.2]]))
    kl = 0.9 * torch.log(torch.tensor(0.9 / 0.6)) + 0.1 * torch.log(torch.tensor(0.1 / 0.4))
    got = rec.alm_loss(s, t, torch.tensor([[1.0, 0.0]]))  # the second chunk is masked out
    assert float(got) == pytest.approx(float(kl), rel=1e-5)


# --- init:awedist ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layers", [0, 1])
def test_awedist_lowers_its_hidden_state_mse(remapped, adapted_tiny, layers):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, base_dir = remapped["qwen2"]
    cfg = RecoverConfig(model=str(model_dir), train=["x"], out="x", awedist_layers=layers, awedist_epochs=20,
                        awedist_lr=1e-2, awedist_contexts=4)  # fmt: skip
    body = rec.load_body(str(base_dir), cfg)
    assert body.config.num_hidden_layers == (layers or 2)
    base_tok, new_tok = AutoTokenizer.from_pretrained(base_dir), AutoTokenizer.from_pretrained(model_dir)
    swapped = {r["id"] for r in json.loads((adapted_tiny[0] / "swap.json").read_text())}
    ctx = base_tok.convert_tokens_to_ids("<|endoftext|>")
    order, contexts = rec.awedist_contexts(TRAIN.splitlines(), base_tok, new_tok, swapped, cfg, ctx)
    assert len(order) >= 5 and all(i in swapped for i in order) and all(len(contexts[i]) <= 4 for i in order)
    ids = order[:8]
    ctxs = [rec.Context(c.teacher, c.student, c.slot, c.shift, r) for r, i in enumerate(ids) for c in contexts[i]]
    for c in ctxs:
        assert len(c.student) == len(c.teacher) - c.shift and c.teacher[: c.slot] == c.student[: c.slot]
        assert c.teacher[c.slot + c.shift + 1 :] == c.student[c.slot + 1 :]
    targets = rec.awedist_targets(body, ctxs, 4)
    student = AutoModelForCausalLM.from_pretrained(model_dir)
    mean_rows = student.get_input_embeddings().weight[ids].detach()
    base_emb = body.get_input_embeddings().weight
    rows, before, after, steps = rec.fit_rows(body, base_emb, mean_rows, ctxs, targets, cfg)
    mse_mean = rec.awedist_mse(body, base_emb, mean_rows, ctxs, targets, batch=100)
    mse_fit = rec.awedist_mse(body, base_emb, rows, ctxs, targets, batch=3)
    assert before == pytest.approx(mse_mean, rel=1e-4) and after == pytest.approx(mse_fit, rel=1e-4)
    assert steps > 0 and mse_fit < 0.8 * mse_mean
    assert rows.shape == mean_rows.shape and not torch.equal(rows, mean_rows)


def test_awedist_stage_changes_only_input_rows_of_seen_tokens(remapped, texts, tmp_path):
    model_dir, _ = remapped["qwen2"]
    s = recover(_cfg(model_dir, texts, tmp_path / "o", stages="init:awedist", budget_minutes=0.0), show_progress=False)
    st = s["stages"][0]
    assert st["stopped"] == "done" and st["fitted"] == st["tokens_with_contexts"] > 0 and len(st["losses"]) >= 1
    before, after = _weights(model_dir), _weights(tmp_path / "o" / "model")
    changed = (before["model.embed_tokens.weight"] != after["model.embed_tokens.weight"]).any(1).nonzero()
    swapped = {r["id"] for r in json.loads((model_dir / "swap.json").read_text())}
    assert len(changed) == st["fitted"] and set(changed.flatten().tolist()) <= swapped
    for name in before:
        if name != "model.embed_tokens.weight":
            assert torch.equal(before[name], after[name]), name


# --- rows and full stages --------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_rows_stage_trains_only_swapped_rows(remapped, texts, tmp_path, arch):
    model_dir, _ = remapped[arch]
    s = recover(_cfg(model_dir, texts, tmp_path / "o", rows_lr=1e-2), show_progress=False)
    out = tmp_path / "o" / "model"
    before, after = _weights(model_dir), _weights(out)
    tied = arch == "qwen3"
    assert "lm_head.weight" in after
    head_before = before["model.embed_tokens.weight"] if tied else before["lm_head.weight"]
    swapped = [r["id"] for r in json.loads((model_dir / "swap.json").read_text())]
    seen = {i for d in rec.make_docs(TRAIN.splitlines(), _tok(model_dir), 32) for i in d.ids}
    rows = sorted(i for i in swapped if i in seen)
    assert s["trainable_rows"] == len(rows) > 0 and s["stages"][1]["steps"] == 4
    keep = torch.ones(head_before.shape[0], dtype=torch.bool)
    keep[rows] = False
    for name, b in (
        ("model.embed_tokens.weight", before["model.embed_tokens.weight"]),
        ("lm_head.weight", head_before),
    ):
        assert torch.equal(after[name][keep], b[keep]), name  # every other row bit-identical
        moved = (after[name][rows] != b[rows]).any(1).float().mean()
        # every output row moves (the softmax reaches it at every step); an input row only where its token is
        # followed by another one in a batch
        assert moved == 1.0 if name == "lm_head.weight" else moved > 0.8, name
    for name in before:  # the body is frozen
        if name not in ("model.embed_tokens.weight", "lm_head.weight"):
            assert torch.equal(before[name], after[name]), name
    config = json.loads((out / "config.json").read_text())
    assert config["tie_word_embeddings"] is False and s["untied"] == tied
    assert json.loads((out / "tpro_recover.json").read_text())["untied"] == tied
    if tied:  # untied: the two matrices went their own ways
        assert not torch.equal(after["model.embed_tokens.weight"][rows], after["lm_head.weight"][rows])
    assert (tmp_path / "o" / "recover.json").is_file() and (out / "swap.json").is_file()


def test_sharded_path_hooks_keep_other_rows_bit_identical(tiny_qwen2_dir):
    """DeepSpeed/FSDP path: whole matrices in AdamW, other rows' gradients zeroed by hooks before it steps."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = torch.tensor([5, 17, 40])
    params, handles = rec.mask_rows(model, rows, hooks=True)
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    ids = torch.tensor([[1, 5, 17, 40, 9, 3, 5, 2]])
    for _ in range(3):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    after = model.state_dict()
    keep = torch.ones(before["lm_head.weight"].shape[0], dtype=torch.bool)
    keep[rows] = False
    for name in before:
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            assert (
                torch.equal(before[name][keep], after[name][keep]) and (before[name][rows] != after[name][rows]).all()
            )
        else:
            assert torch.equal(before[name], after[name]), name
    for h in handles:
        h.remove()


def _tok(d):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(d)


def test_full_stage_trains_the_body_and_lowers_the_loss(remapped, texts, tmp_path):
    model_dir, _ = remapped["qwen2"]
    s = recover(
        _cfg(model_dir, texts, tmp_path / "o", stages="rows:ce,full", full_lr=3e-3, max_steps=12),
        show_progress=False,
    )
    losses = [row[1] for row in s["stages"][1]["losses"]]
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3])
    before, after = _weights(model_dir), _weights(tmp_path / "o" / "model")
    assert not torch.equal(before["model.layers.0.mlp.up_proj.weight"], after["model.layers.0.mlp.up_proj.weight"])
    assert s["stages"][1]["lr"] == 3e-3 and s["stages"][1]["tokens"] > 0


def test_data_cursor_walks_each_epoch_once():
    from types import SimpleNamespace

    docs = [rec.Doc([i]) for i in range(5)]
    run = SimpleNamespace(
        docs=docs,
        acc=SimpleNamespace(num_processes=1, process_index=0),
        state={"cursor": [0, 0]},
        cfg=SimpleNamespace(batch=2, seed=0),
    )
    got = [d.ids[0] for _ in range(5) for d in rec.next_docs(run)]  # 10 docs = two epochs
    assert sorted(got[:5]) == sorted(got[5:]) == list(range(5)) and got[:5] != got[5:]
    assert run.state["cursor"] == [2, 0]
    two = SimpleNamespace(**{**vars(run), "acc": SimpleNamespace(num_processes=2, process_index=1)})
    two.state = {"cursor": [0, 0]}
    assert [d.ids[0] for d in rec.next_docs(two)] == got[1:4:2]  # rank 1 of 2: every other doc of the global batch


# --- budget, resume, errors -------------------------------------------------------------------------------------


def test_budget_stops_the_stage_and_a_finished_run_is_not_extended(remapped, texts, tmp_path):
    model_dir, _ = remapped["qwen2"]
    cfg = _cfg(model_dir, texts, tmp_path / "o", budget_minutes=0.05, max_steps=0, snapshot_minutes=[0.02])
    s = recover(cfg, show_progress=False)
    st = s["stages"][1]
    assert st["stopped"] == "budget" and st["steps"] > 0
    # the stage stops when its next step would pass the budget: the ledger ends near it (a save may go past)
    assert 2.5 <= s["total_s"] < 3.0 + 5.0
    assert 2.5 <= st["losses"][-1][3] <= 3.0
    assert (tmp_path / "o" / "snapshots" / "0.02min" / "model.safetensors").is_file()
    assert s["snapshots"]["0.02min"]["total_s"] >= 1.2
    again = recover(cfg, show_progress=False)
    assert again["stages"][1]["steps"] == st["steps"] and again["restarts"] == 1
    # a larger budget continues the finished run from its checkpoint
    more = recover(replace(cfg, budget_minutes=0.15), show_progress=False)
    assert more["stages"][1]["stopped"] == "budget" and more["stages"][1]["steps"] > st["steps"]
    assert more["restarts"] == 1 and more["total_s"] > s["total_s"] + 2.0  # the second call saved nothing


@pytest.mark.parametrize("kill_at", [3, 8])  # in the rows stage (compact optimizer state), in the full stage
def test_kill_and_resume_equals_an_uninterrupted_run(remapped, texts, tmp_path, monkeypatch, kill_at):
    model_dir, _ = remapped["qwen3"]
    kw = dict(stages="init:mean,rows:ce,full", max_steps=5, full_lr=1e-3, rows_lr=1e-2, rows_seen_only=False)
    whole = recover(_cfg(model_dir, texts, tmp_path / "whole", **kw), show_progress=False)

    calls = {"n": 0}
    step = rec.train_step

    def killed(*a, **k):
        calls["n"] += 1
        if calls["n"] == kill_at:
            raise KeyboardInterrupt("killed")
        return step(*a, **k)

    monkeypatch.setattr(rec, "train_step", killed)
    with pytest.raises(KeyboardInterrupt):
        recover(_cfg(model_dir, texts, tmp_path / "cut", **kw), show_progress=False)
    state = json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())
    done_steps = [st["steps"] for st in state["stages"]]
    assert done_steps == ([0, 2, 0] if kill_at == 3 else [0, 5, 2]) and state["total_s"] > 0
    assert not (tmp_path / "cut" / "model").exists() and not (tmp_path / "cut" / "recover.json").exists()
    assert not (tmp_path / "cut" / "checkpoint.tmp").exists()

    monkeypatch.setattr(rec, "train_step", step)
    resumed = recover(_cfg(model_dir, texts, tmp_path / "cut", **kw), show_progress=False)
    assert resumed["restarts"] == 1 and [st["steps"] for st in resumed["stages"]] == [0, 5, 5]
    assert resumed["total_s"] >= state["total_s"]
    for a, b in zip(whole["stages"], resumed["stages"]):
        assert [r[1] for r in a["losses"]] == pytest.approx([r[1] for r in b["losses"]], abs=1e-5)
    w1, w2 = _weights(tmp_path / "whole" / "model"), _weights(tmp_path / "cut" / "model")
    for name in w1:
        assert torch.allclose(w1[name], w2[name], atol=1e-6), name


def test_corrupt_checkpoint_and_bad_inputs_are_clear_errors(remapped, texts, tmp_path, monkeypatch):
    model_dir, base_dir = remapped["qwen2"]

    def killed(*a, **k):
        raise KeyboardInterrupt("killed")

    out = tmp_path / "o"
    monkeypatch.setattr(rec, "train_step", killed)
    with pytest.raises(KeyboardInterrupt):  # init:awedist checkpoints, then the rows stage is killed
        recover(_cfg(model_dir, texts, out, stages="init:awedist,rows:ce"), show_progress=False)
    ckpt = out / "checkpoint"
    assert (ckpt / "state.json").is_file()
    listing = sorted(p.name for p in out.iterdir())

    weights = ckpt / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(ConfigError, match=r"model\.safetensors is corrupt or truncated.*Fix: delete"):
        recover(_cfg(model_dir, texts, out, stages="init:awedist,rows:ce"), show_progress=False)
    assert sorted(p.name for p in out.iterdir()) == listing  # nothing written
    weights.write_bytes(good)
    (ckpt / "state.json").write_text("{not json")
    r = CliRunner().invoke(
        app, ["recover", "-m", str(model_dir), "--train", str(texts[0]), "--out", str(out), "--stages",
              "init:awedist,rows:ce", "--quiet"],
    )  # fmt: skip
    assert r.exit_code == 2 and "state.json is corrupt" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == listing

    with pytest.raises(ConfigError, match="has no swap.json"):
        recover(_cfg(base_dir, texts, tmp_path / "x"), show_progress=False)
    with pytest.raises(ConfigError, match="also in --train"):
        recover(_cfg(model_dir, texts, tmp_path / "x", eval=[str(texts[0])]), show_progress=False)
    with pytest.raises(ConfigError, match="not a directory"):
        recover(_cfg(tmp_path / "nowhere", texts, tmp_path / "x"), show_progress=False)
    assert not (tmp_path / "x").exists()


def test_resume_with_other_settings_is_refused(remapped, texts, tmp_path, monkeypatch):
    model_dir, _ = remapped["qwen2"]
    step = rec.train_step
    calls = {"n": 0}

    def killed(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return step(*a, **k)

    monkeypatch.setattr(rec, "train_step", killed)
    with pytest.raises(KeyboardInterrupt):
        recover(_cfg(model_dir, texts, tmp_path / "o"), show_progress=False)
    with pytest.raises(ConfigError, match="other settings.*block"):
        recover(_cfg(model_dir, texts, tmp_path / "o", block=64), show_progress=False)


def test_control_trains_the_base_rows_of_the_old_pieces(remapped, texts, tmp_path):
    model_dir, base_dir = remapped["qwen2"]
    s = recover(
        _cfg(model_dir, texts, tmp_path / "c", control=True, stages="init:awedist,rows:alm", rows_lr=1e-2),
        show_progress=False,
    )
    assert s["control"] and s["stages"][0]["stopped"] == "control: no init" and s["stages"][1]["steps"] == 4
    base_tok = _tok(base_dir)
    swap = json.loads((model_dir / "swap.json").read_text())
    pieces = {i for r in swap for i in base_tok(r["added_text"], add_special_tokens=False)["input_ids"]}
    seen = {i for d in rec.make_docs(TRAIN.splitlines(), base_tok, 32) for i in d.ids}  # the base tokenizes the text
    rows = sorted(pieces & seen)
    assert s["trainable_rows"] == len(rows) > 0
    before, after = _weights(base_dir), _weights(tmp_path / "c" / "model")
    keep = torch.ones(before["lm_head.weight"].shape[0], dtype=torch.bool)
    keep[rows] = False
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        assert torch.equal(before[name][keep], after[name][keep]) and not torch.equal(before[name], after[name])
    # the base's own tokenizer, no swap.json
    assert _tok(tmp_path / "c" / "model").get_vocab() == base_tok.get_vocab()
    assert not (tmp_path / "c" / "model" / "swap.json").exists()


# --- the command ------------------------------------------------------------------------------------------------


def test_cli_end_to_end_json(remapped, texts, tmp_path, capsys):
    model_dir, _ = remapped["qwen3"]
    out = tmp_path / "run"
    args = ["recover", "-m", str(model_dir), "--train", str(texts[0]), "--eval", str(texts[1]), "--out", str(out),
            "--stages", "init:mean,rows:alm+ce:0.6,full:0.4", "--max-steps", "2", "--block", "32", "--json", "--quiet"]  # fmt: skip
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert [st["stopped"] for st in s["stages"]] == ["kept the remap's rows", "max_steps", "max_steps"]
    assert 0 < s["eval"]["bpc"] < 20 and s["eval"]["texts"] == 2 and s["base"] == str(remapped["qwen3"][1])
    assert json.loads((out / "recover.json").read_text())["eval"]["bpc"] == s["eval"]["bpc"]
    from tpro.engine import Done, Engine, SamplingParams
    from tpro.models import load_model

    lm = load_model(str(out / "model"), dtype="float32", progress=False)  # what `tpro generate --model DIR` loads
    done = [
        e for e in Engine.from_loaded(lm).generate("Привет", SamplingParams(max_new_tokens=4)) if isinstance(e, Done)
    ]
    assert done and 1 <= done[0].telemetry.generated_tokens <= 4
    r = CliRunner().invoke(app, ["recover", "--help"])
    assert r.exit_code == 0 and "--budget-minutes" in r.output and "--control" in r.output
    assert rec.main(["--print-config", "-m", str(model_dir), "--train", "t.txt", "--out", "o"]) is None
    assert "budget_minutes: 60.0" in capsys.readouterr().out  # python -m / accelerate launch -m parse as the CLI


def test_shipped_recipes_load():
    configs = Path(__file__).resolve().parents[2] / "configs" / "tokenizer"
    for name in ("recover.yaml", "recover-qwen3-32b.yaml"):
        text = (configs / name).read_text()
        first = text.splitlines()[0]  # each recipe opens with the command that runs it
        assert first.startswith("# ") and ("tpro tokenizer recover" in first or "-m tpro.tokenizer.recover" in first)
        cfg = RecoverConfig.from_yaml(configs / name)
        assert rec.parse_stages(cfg.stages) and cfg.budget_minutes > 0
    big = RecoverConfig.from_yaml(configs / "recover-qwen3-32b.yaml")
    assert big.dtype == "bfloat16" and big.mixed_precision == "bf16" and big.gradient_checkpointing


def test_read_texts_renders_conversations_with_the_chat_template(tmp_path, tiny_qwen2_dir):
    from transformers import AutoTokenizer

    messages = [{"role": "user", "content": "Привет"}, {"role": "assistant", "content": "Здравствуйте!"}]
    (tmp_path / "c.jsonl").write_text(json.dumps({"messages": messages}, ensure_ascii=False), encoding="utf-8")
    tok = AutoTokenizer.from_pretrained(tiny_qwen2_dir)
    got = rec.read_texts([f"{tmp_path / 'c.jsonl'}:messages"], render=rec.chat_renderer(tok))
    assert got == [tok.apply_chat_template(messages, tokenize=False)]
    assert "<|im_start|>assistant\nЗдравствуйте!<|im_end|>" in got[0]
    # without a renderer a conversation is not text (nothing silently flattened)
    with pytest.raises(ConfigError, match="no text found"):
        rec.read_texts([f"{tmp_path / 'c.jsonl'}:messages"])
