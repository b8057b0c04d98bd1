import json

import pytest
import torch

from tpro.data.reward import RewardScorer, best_worst_pairs, group_completions, keep_above, keep_best, score_rows

from .conftest import make_tiny_reward_model

PROMPTS = [
    "Сколько будет 2+2?",
    [{"role": "system", "content": "Будь краток."}, {"role": "user", "content": "Столица России?"}],
]
COMPS = ["Четыре.", "Москва является столицей России."]


def test_scores_match_a_direct_forward_on_the_chat_template(tiny_rm_dir):
    scorer = RewardScorer(str(tiny_rm_dir))
    text = scorer.format(PROMPTS[0], COMPS[0])
    assert text.startswith("<|im_start|>system") and "<|im_start|>assistant\nЧетыре.<|im_end|>" in text
    ids = scorer.tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        expected = scorer.model(**ids).logits[0, 0].item()
    assert scorer.score(PROMPTS[:1], COMPS[:1])[0] == pytest.approx(expected, abs=1e-5)


def test_batched_scores_equal_one_at_a_time(tiny_rm_dir):
    # Padding must not change a score: the head reads the last non-pad token of each row.
    scorer = RewardScorer(str(tiny_rm_dir), batch_size=4, dtype="float32")  # exact comparison: no bf16 rounding
    prompts = PROMPTS * 2
    comps = COMPS + ["Не знаю, но очень длинный ответ про то, что я не знаю ответа на этот вопрос.", "x"]
    batched = scorer.score(prompts, comps)
    single = [scorer.score([p], [c])[0] for p, c in zip(prompts, comps)]
    assert batched == pytest.approx(single, abs=1e-5)
    assert len(set(round(s, 6) for s in batched)) == 4  # a random head still tells different texts apart


def test_rejects_multi_label_models_and_length_mismatch(tmp_path, tiny_rm_dir):
    with pytest.raises(ValueError, match="2 labels"):
        RewardScorer(str(make_tiny_reward_model(tmp_path / "two", num_labels=2)))
    with pytest.raises(ValueError, match="pair up"):
        RewardScorer(str(tiny_rm_dir)).score(PROMPTS, COMPS[:1])
    with pytest.raises(ValueError, match="could not load"):
        RewardScorer(str(tmp_path / "missing"))


def test_best_worst_pairs_in_trl_preference_format():
    rows = [
        {"prompt": "q1", "completions": ["a", "b", "c"], "scores": [0.1, 2.0, -1.0], "meta": {"id": 1}},
        {"prompt": "q2", "completions": ["x", "y"], "scores": [1.0, 1.0]},  # tie: dropped
        {"prompt": "q3", "completions": ["only"], "scores": [3.0]},  # one completion: dropped
    ]
    pairs = best_worst_pairs(rows)
    assert len(pairs) == 1
    p = pairs[0]
    assert p["prompt"] == [{"role": "user", "content": "q1"}]
    assert p["chosen"] == [{"role": "assistant", "content": "b"}]
    assert p["rejected"] == [{"role": "assistant", "content": "c"}]
    assert p["meta"] == {"id": 1, "chosen_score": 2.0, "rejected_score": -1.0, "margin": 3.0, "k": 3}
    json.dumps(p)  # JSONL-serialisable
    assert best_worst_pairs(rows, min_margin=3.0) == []


def test_keep_best_and_threshold_from_flat_rows():
    flat = [{"prompt": "q1", "completion": c, "score": s} for c, s in [("a", 0.5), ("b", 0.9), ("c", 0.7)]]
    flat += [{"prompt": "q2", "completion": "z", "score": -2.0}]
    grouped = group_completions(flat)
    assert [g["completions"] for g in grouped] == [["a", "b", "c"], ["z"]]
    best = keep_best(flat)
    assert [r["messages"][-1]["content"] for r in best] == ["b", "z"]
    assert [r["messages"][-1]["content"] for r in keep_best(flat, min_score=0.0)] == ["b"]
    above = keep_above(flat, 0.6)
    assert [(r["messages"][-1]["content"], r["meta"]["rank"]) for r in above] == [("b", 0), ("c", 1)]


def test_score_rows_then_pairs_prefer_the_higher_reward(tiny_rm_dir):
    scorer = RewardScorer(str(tiny_rm_dir))
    rows = score_rows(scorer, [{"prompt": PROMPTS[1], "completions": COMPS + ["Париж."]}])
    pair = best_worst_pairs(rows)[0]
    s_chosen, s_rejected = scorer.score([PROMPTS[1]] * 2, [pair["chosen"], pair["rejected"]])
    assert s_chosen > s_rejected
    assert pair["prompt"][0] == {"role": "system", "content": "Будь краток."}
