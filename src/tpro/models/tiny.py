"""Tiny random-init Qwen2/Qwen3 checkpoints with a real byte-level BPE tokenizer, built offline in seconds.

For tests, the CI pipeline and smoke runs: every code path that takes a model spec can be exercised without
downloads. The tokenizer is trained here with ``tokenizers`` on a small built-in Russian/English sample,
uses Qwen's special tokens and a Qwen-style chat template (Qwen3 flavour: understands ``enable_thinking``).
Not a model anyone should talk to.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
THINK = ["<think>", "</think>"]

QWEN2_TEMPLATE = (
    "{%- for m in messages %}"
    "{%- if loop.first and m['role'] != 'system' %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
QWEN3_TEMPLATE = (
    "{%- for m in messages %}"
    "{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)

_SAMPLE = """Сколько будет семнадцать умножить на двадцать три? Объясни решение по шагам.
Москва является столицей России, а Киев столицей Украины. Минск столица Беларуси.
Мама мыла раму. Папа читает газету. Дети играют во дворе после школы.
Решите уравнение: x^2 - 5x + 6 = 0. Ответ: x = 2 или x = 3.
The quick brown fox jumps over the lazy dog. What is 17 * 23? The answer is 391.
def add(a, b):\n    return a + b\nprint(add(2, 3))
Привет! Как дела? Расскажи, пожалуйста, о себе. Спасибо, всё хорошо.
Найдите сумму первых ста натуральных чисел. Сумма равна 5050.
"""


def train_tiny_tokenizer(vocab_size: int = 512, qwen3: bool = False):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with Qwen's special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_SAMPLE.splitlines() * 4, trainer)
    tok.add_tokens(THINK)  # normal added tokens, as in Qwen3 (not special: they stay in decoded text)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = QWEN3_TEMPLATE if qwen3 else QWEN2_TEMPLATE
    return fast


def make_tiny_model(
    out_dir: str | Path,
    arch: str = "qwen2",
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
    tie_word_embeddings: bool = False,
) -> Path:
    """Write a random-init ``arch`` ("qwen2" | "qwen3") checkpoint + tokenizer to ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen3Config

    if arch not in ("qwen2", "qwen3"):
        raise ValueError(f"arch must be qwen2 or qwen3, got {arch!r}")
    tok = train_tiny_tokenizer(qwen3=arch == "qwen3")
    cls = Qwen3Config if arch == "qwen3" else Qwen2Config
    config = cls(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden_size // 4,
        max_position_embeddings=2048,
        tie_word_embeddings=tie_word_embeddings,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    # Random-init logits are nearly flat; scale the head so greedy argmaxes are far from ties (ties would make
    # "token-identical" comparisons depend on float summation order rather than on our code).
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(8.0)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out
