import json

import pytest
import torch

from tpro.tokenizer.remap import RemapConfig, omp, padded_batches, remap, ridge_update

RU_TEXT = """Сегодня в городе прошла большая конференция о развитии науки.
Учёные обсуждали новые методы обучения и образования детей.
Правительство утвердило программу поддержки молодых специалистов.
Мама мыла раму, а папа читал газету в большой комнате.
"""


def _rows(d):
    from safetensors.torch import load_file

    return load_file(str(d / "model.safetensors"))


def _swap(tok_dir):
    return json.loads((tok_dir / "swap.json").read_text())


@pytest.mark.parametrize("arch_dir", ["tiny_qwen2_dir", "tiny_qwen3_dir"])
def test_mean_init_kept_rows_bit_identical(arch_dir, request, adapted_tiny, tmp_path):
    src = request.getfixturevalue(arch_dir)
    tok_dir, _ = adapted_tiny
    out = tmp_path / "m"
    stats = remap(RemapConfig(model=str(src), tokenizer=str(tok_dir), out=str(out)), show_progress=False)
    before, after = _rows(src), _rows(out)
    swap = _swap(tok_dir)
    ids = torch.tensor([r["id"] for r in swap])
    keep = torch.ones(before["model.embed_tokens.weight"].shape[0], dtype=torch.bool)
    keep[ids] = False
    names = ["model.embed_tokens.weight"] + ([] if stats["tied"] else ["lm_head.weight"])
    assert stats["tied"] == (arch_dir == "tiny_qwen3_dir")
    from tokenizers import Tokenizer

    base_tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    for name in names:
        assert torch.equal(before[name][keep], after[name][keep])  # bit-identical kept rows
        for r in swap:
            pieces = base_tok.encode(r["added_text"], add_special_tokens=False).ids
            assert len(pieces) >= 2
            assert torch.allclose(after[name][r["id"]], before[name][pieces].mean(0))
    for name in before:  # every other tensor untouched
        if name not in names and name != "lm_head.weight":
            assert torch.equal(before[name], after[name])
    # A loadable checkpoint that carries the new tokenizer.
    from tpro.models import load_model

    lm = load_model(str(out), progress=False)
    assert lm.tokenizer.convert_tokens_to_ids(swap[0]["added"]) == swap[0]["id"]
    ids_new = lm.tokenizer("Сегодня большая конференция", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        assert torch.isfinite(lm.model(input_ids=torch.tensor([ids_new])).logits).all()


def test_contextual_fits_chain_rule_logits(tiny_qwen2_dir, adapted_tiny, tmp_path):
    tok_dir, _ = adapted_tiny
    text = tmp_path / "ru.txt"
    text.write_text(RU_TEXT * 3, encoding="utf-8")
    out = tmp_path / "c"
    stats = remap(
        RemapConfig(
            model=str(tiny_qwen2_dir),
            tokenizer=str(tok_dir),
            out=str(out),
            method="contextual",
            text=[str(text)],
            ridge=1e-3,
        ),
        show_progress=False,
    )
    assert stats["fitted"] > 0
    before, after = _rows(tiny_qwen2_dir), _rows(out)
    swap = {r["id"]: r for r in _swap(tok_dir)}
    changed = [
        i for i in swap if not torch.allclose(after["lm_head.weight"][i], _mean_row(before, tiny_qwen2_dir, swap[i]))
    ]
    assert len(changed) == stats["fitted"]  # exactly the fitted rows moved away from the mean init
    keep = torch.ones(before["lm_head.weight"].shape[0], dtype=torch.bool)
    keep[list(swap)] = False
    assert torch.equal(before["lm_head.weight"][keep], after["lm_head.weight"][keep])
    assert torch.equal(before["model.embed_tokens.weight"][keep], after["model.embed_tokens.weight"][keep])


def _mean_row(weights, src, row):
    from tokenizers import Tokenizer

    pieces = Tokenizer.from_file(str(src / "tokenizer.json")).encode(row["added_text"], add_special_tokens=False).ids
    return weights["lm_head.weight"][pieces].mean(0)


def test_ridge_update_interpolates_and_stays_near_prior():
    torch.manual_seed(0)
    H, w0 = torch.randn(5, 16), torch.randn(16)
    y = torch.randn(5)
    w = ridge_update(w0, H, y, lam=1e-9)
    assert torch.allclose(H @ w, y, atol=1e-4)  # fits every context
    # Minimum change: the correction lies in the row space of H.
    P = H.T @ torch.linalg.pinv(H.T)
    assert torch.allclose(P @ (w - w0), w - w0, atol=1e-4)
    assert torch.allclose(ridge_update(w0, H, y, lam=1e9), w0, atol=1e-5)  # huge lam: prior kept


def test_omp_recovers_sparse_combination():
    torch.manual_seed(1)
    atoms = torch.randn(50, 32)
    target = 2.0 * atoms[3] - 0.5 * atoms[17] + 0.25 * atoms[40]
    idx, coef = omp(target, atoms, k=3)
    assert sorted(idx.tolist()) == [3, 17, 40]
    got = dict(zip(idx.tolist(), coef.tolist()))
    assert got[3] == pytest.approx(2.0, abs=1e-6) and got[17] == pytest.approx(-0.5, abs=1e-6)


def test_contextual_needs_text(tiny_qwen2_dir, adapted_tiny, tmp_path):
    with pytest.raises(ValueError, match="--text"):
        remap(
            RemapConfig(
                model=str(tiny_qwen2_dir), tokenizer=str(adapted_tiny[0]), out=str(tmp_path / "x"), method="contextual"
            ),
            show_progress=False,
        )


def test_padded_batches_stay_within_budget():
    lengths = [3, 5, 2, 9, 4, 4]
    batches = padded_batches(list(range(6)), lengths, budget=10)
    assert [i for b in batches for i in b] == list(range(6))  # consecutive, nothing lost
    assert batches == [[0, 1], [2], [3], [4, 5]]  # rows x longest <= 10
    assert padded_batches(["a", "b"], [50, 1], budget=10) == [["a"], ["b"]]


def test_contextual_unties_a_tied_model(tiny_qwen3_dir, adapted_tiny, tmp_path):
    """Tied embeddings: the fit goes to a new lm_head only; the input rows keep the mean init, and the saved model
    loads untied. --no-untie writes the fit into the one shared matrix."""
    tok_dir, _ = adapted_tiny
    text = tmp_path / "ru.txt"
    text.write_text(RU_TEXT * 3, encoding="utf-8")
    kw = dict(model=str(tiny_qwen3_dir), tokenizer=str(tok_dir), method="contextual", text=[str(text)], ridge=1e-3)
    stats = remap(RemapConfig(out=str(tmp_path / "u"), **kw), show_progress=False)
    assert stats["tied"] and stats["untied"] and stats["fitted"] > 0
    before, after = _rows(tiny_qwen3_dir), _rows(tmp_path / "u")
    swap = {r["id"]: r for r in _swap(tok_dir)}
    emb0 = before["model.embed_tokens.weight"]
    moved = [
        i for i in swap if not torch.allclose(after["lm_head.weight"][i], _piece_mean(emb0, tiny_qwen3_dir, swap[i]))
    ]
    assert len(moved) == stats["fitted"]
    for i in swap:  # every input row: the mean of its pieces, fitted or not
        assert torch.allclose(after["model.embed_tokens.weight"][i], _piece_mean(emb0, tiny_qwen3_dir, swap[i]))
    keep = torch.ones(emb0.shape[0], dtype=torch.bool)
    keep[list(swap)] = False
    assert torch.equal(after["lm_head.weight"][keep], emb0[keep])
    assert json.loads((tmp_path / "u" / "config.json").read_text())["tie_word_embeddings"] is False

    shared = remap(RemapConfig(out=str(tmp_path / "t"), untie=False, **kw), show_progress=False)
    assert shared["tied"] and not shared["untied"]
    rows = _rows(tmp_path / "t")
    assert "lm_head.weight" not in rows or torch.equal(rows["lm_head.weight"], rows["model.embed_tokens.weight"])
    fitted = [
        i
        for i in moved
        if not torch.allclose(rows["model.embed_tokens.weight"][i], after["model.embed_tokens.weight"][i])
    ]
    assert fitted == moved  # the fit landed in the shared matrix, input rows included


def _piece_mean(weight, src, row):
    from tokenizers import Tokenizer

    pieces = Tokenizer.from_file(str(src / "tokenizer.json")).encode(row["added_text"], add_special_tokens=False).ids
    return weight[pieces].mean(0)


def test_contextual_targets_odds_vs_prob(tiny_qwen2_dir, adapted_tiny, tmp_path):
    """odds = prob - log(1 - P(pieces)): the same contexts, each target higher by exactly that amount."""
    import math

    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    from tpro.tokenizer.bpe import load_base, resolve_tokenizer_file
    from tpro.tokenizer.remap import collect_contexts, swapped_ids

    tok_dir, _ = adapted_tiny
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir, dtype=torch.float32).eval()
    base_tok = Tokenizer.from_file(str(tiny_qwen2_dir / "tokenizer.json"))
    tok_path, _ = resolve_tokenizer_file(str(tok_dir))
    new_tok = Tokenizer.from_file(str(tok_path))
    swapped = swapped_ids(json.loads(base_tok.to_str())["model"]["vocab"], load_base(str(tok_path)).vocab)
    lines = RU_TEXT.strip().splitlines() * 2
    ctx = base_tok.token_to_id("<|endoftext|>")
    kw = dict(model=str(tiny_qwen2_dir), tokenizer=str(tok_dir), out=str(tmp_path / "x"), method="contextual")
    prob = collect_contexts(model, base_tok, new_tok, swapped, lines, RemapConfig(target="prob", text=["x"], **kw), ctx)
    odds = collect_contexts(model, base_tok, new_tok, swapped, lines, RemapConfig(target="odds", text=["x"], **kw), ctx)
    assert prob and prob.keys() == odds.keys()
    for i in prob:
        (H1, y1), (H2, y2) = prob[i], odds[i]
        assert torch.equal(H1, H2)
        d = y2 - y1  # float64
        assert (d > 0).all()
        p = -torch.expm1(-d)  # the P(pieces) each target used
        with torch.no_grad():
            lse = torch.logsumexp(model.get_output_embeddings()(H1).double(), -1)
        assert torch.allclose(p, torch.exp(y1 - lse).clamp(max=1 - 1e-4), rtol=1e-4, atol=0)
        assert math.isfinite(float(y2.sum()))


def test_contextual_input_init_mean_keeps_input_rows(tiny_qwen2_dir, adapted_tiny, tmp_path):
    tok_dir, _ = adapted_tiny
    text = tmp_path / "ru.txt"
    text.write_text(RU_TEXT * 3, encoding="utf-8")
    out = tmp_path / "m"
    kw = dict(tokenizer=str(tok_dir), method="contextual", text=[str(text)], ridge=1e-3, input_init="mean")
    stats = remap(RemapConfig(model=str(tiny_qwen2_dir), out=str(out), **kw), show_progress=False)
    assert stats["fitted"] > 0 and not stats["tied"]
    before, after = _rows(tiny_qwen2_dir), _rows(out)
    swap = _swap(tok_dir)
    from tokenizers import Tokenizer

    base_tok = Tokenizer.from_file(str(tiny_qwen2_dir / "tokenizer.json"))
    for r in swap:
        pieces = base_tok.encode(r["added_text"], add_special_tokens=False).ids
        assert torch.allclose(
            after["model.embed_tokens.weight"][r["id"]], before["model.embed_tokens.weight"][pieces].mean(0)
        )
