import json
import shutil

from hypothesis import given, settings

from tpro.tokenizer.check import run_checks, text_strategy


def test_all_checks_pass_on_adapted(adapted_tiny, tiny_qwen2_dir):
    out, _ = adapted_tiny
    checks = run_checks(str(out), str(tiny_qwen2_dir), examples=100)
    assert [c.name for c in checks if not c.ok] == []
    assert {c.name for c in checks} >= {
        "round trip (hypothesis)",
        "every added token reachable",
        "kept ids and bytes unchanged",
        "chat template renders",
        "loads with transformers.AutoTokenizer",
    }


def test_check_catches_moved_id_and_unreachable_token(adapted_tiny, tiny_qwen2_dir, tmp_path):
    out, _ = adapted_tiny
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    data = json.loads((bad / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    swap = json.loads((out / "swap.json").read_text())
    # Drop the merge that makes one added token: it can no longer come out of encoding.
    victim = swap[0]["added"]
    data["model"]["merges"] = [m for m in data["model"]["merges"] if m[0] + m[1] != victim]
    # Move a byte token's id onto another byte token.
    a, b = "a", "b"
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (bad / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False))
    failed = {c.name for c in run_checks(str(bad), str(tiny_qwen2_dir), examples=20) if not c.ok}
    assert "kept ids and bytes unchanged" in failed
    assert "every added token reachable" in failed


@settings(max_examples=150, deadline=None)
@given(text_strategy())
def test_round_trip_property(adapted_tokenizer, x):
    ids = adapted_tokenizer.encode(x, add_special_tokens=False).ids
    assert adapted_tokenizer.decode(ids, skip_special_tokens=False) == x  # the tiny tokenizer has no normalizer
