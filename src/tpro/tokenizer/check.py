"""Validate an adapted tokenizer against its base: round trip, reachability, kept ids, loading, chat template.

Each check returns a ``Check(name, ok, detail)``; ``run_checks`` runs them all. The round trip is a hypothesis
property (``decode(encode(x)) == normalize(x)``: a tokenizer with an NFC normalizer returns the NFC form, and so
does its base) over all 256 byte values as characters, mixed Latin/Cyrillic/CJK/Greek, emoji, code and runs of
whitespace, plus the same property against the base (both must decode to the same string).

It knows nothing about how the tokenizer was adapted beyond the base it is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tpro.config import Config, opt
from tpro.tokenizer.bpe import load_base, resolve_tokenizer_file, token_text


@dataclass(kw_only=True)
class CheckConfig(Config):
    """``tpro tokenizer check``: the adapted tokenizer, its base, how many generated strings to round-trip."""

    directory: str = opt(help="Adapted tokenizer directory (or its tokenizer.json).", positional=True)
    base: str = opt(help="The base tokenizer it was adapted from (tokenizer.json, a directory or a hub id).")
    examples: int = opt(300, "Hypothesis examples for the round-trip property.", min=1)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def text_strategy():
    """Strings that stress a byte-level BPE: every byte value, scripts, emoji, code, whitespace runs."""
    from hypothesis import strategies as st

    latin1 = st.characters(min_codepoint=0, max_codepoint=255)  # all 256 byte values as code points
    scripts = st.sampled_from(
        list("абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВЯЁїієґўқңғүұһөәјљњћџѓќѕ") + list("abcxyzABCXYZ漢字日本語한국어αβγΩ")
    )
    emoji = st.sampled_from(["😀", "👍🏽", "🇷🇺", "👨‍👩‍👧", "❤️", "🤖", "\u200d", "\ufe0f"])
    code = st.sampled_from(
        [
            "def f(x):\n",
            "    return x + 1\n",
            "if (a<=b) {",
            "}",
            "x[i] = 0;",
            "#include <io>",
            "0x1F",
            "3.14159",
            "1e-9",
            "\t",
            "\r\n",
            "λ",
            "=>",
        ]
    )
    ws = st.sampled_from([" ", "  ", "\n", "\n\n", "\t", "    ", "\u00a0", "\u3000", "\r"])
    words = st.sampled_from(
        [
            " Привет",
            " мир",
            " Қазақстан",
            " Беларусь",
            " України",
            " the",
            " tokenizer",
            "Москва",
            " ",
            "123",
            "ёж",
            "Ў",
        ]
    )
    # any code point but lone surrogates (category Cs): they are not valid text, no UTF-8 tokenizer can take them
    piece = st.one_of(latin1, scripts, emoji, code, ws, words, st.characters(blacklist_categories=("Cs",)))
    return st.lists(piece, max_size=40).map("".join)


def check_round_trip(new, base, max_examples: int) -> Check:
    from hypothesis import HealthCheck, given, settings

    failures: list[str] = []
    norm = new.normalizer

    @settings(max_examples=max_examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(text_strategy())
    def prop(x: str):
        want = norm.normalize_str(x) if norm is not None else x
        got = new.decode(new.encode(x, add_special_tokens=False).ids, skip_special_tokens=False)
        ref = base.decode(base.encode(x, add_special_tokens=False).ids, skip_special_tokens=False)
        if got != want or got != ref:
            failures.append(repr(x))
        assert got == want and got == ref

    try:
        prop()
    except AssertionError:
        pass
    ok = not failures
    return Check(
        "round trip (hypothesis)", ok, f"{max_examples} generated strings" if ok else f"fails on {failures[-1]}"
    )


def reachable_ids(tok, vocab: dict[str, int], added: set[str]) -> tuple[set[int], set[int]]:
    """-> (ids whose text encodes to exactly that id, ids that are whole UTF-8 text and so could)."""
    items = [(t, i, token_text(t)) for t, i in vocab.items() if t not in added]
    items = [(t, i, s) for t, i, s in items if s is not None]
    encs = tok.encode_batch([s for _, _, s in items], add_special_tokens=False)
    ok = {i for (_, i, _), e in zip(items, encs) if e.ids == [i]}
    return ok, {i for _, i, _ in items}


def check(cfg: CheckConfig) -> list[Check]:
    """Every check of ``cfg.directory`` against ``cfg.base`` (a failed check is a ``Check`` with ``ok=False``)."""
    return run_checks(cfg.directory, cfg.base, cfg.examples)


def run_checks(directory: str, base_spec: str, examples: int) -> list[Check]:
    from tokenizers import Tokenizer

    checks: list[Check] = []
    path, _ = resolve_tokenizer_file(directory)
    base = load_base(base_spec)
    new_b = load_base(directory)
    new = Tokenizer.from_file(str(path))
    base_tok = base.build()

    checks.append(
        Check(
            "vocabulary size unchanged",
            new_b.vocab_size == base.vocab_size and len(new_b.vocab) == len(base.vocab),
            f"base {base.vocab_size} / {len(base.vocab)} entries, new {new_b.vocab_size} / {len(new_b.vocab)}",
        )
    )
    id_base = {i: t for t, i in base.vocab.items()}
    id_new = {i: t for t, i in new_b.vocab.items()}
    changed = sorted(i for i in id_base if id_new.get(i) != id_base[i])
    protected = [
        i
        for i in changed
        if id_base[i] in base.added or len(token_text(id_base[i]) or "xx") == 1 and len(id_base[i]) == 1
    ]
    checks.append(
        Check(
            "kept ids and bytes unchanged",
            not protected and new_b.added == base.added,
            f"{len(id_base) - len(changed)} kept, {len(changed)} swapped; "
            f"{len(protected)} byte/special tokens changed; added tokens equal: {new_b.added == base.added}",
        )
    )
    new_added = {id_new[i] for i in changed}
    ok_new, could_new = reachable_ids(new, new_b.vocab, set(new_b.added))
    ok_base, _ = reachable_ids(base_tok, base.vocab, set(base.added))
    swapped_ok = sum(new_b.vocab[t] in ok_new for t in new_added)
    regressed = [i for i in ok_base if i not in changed and i not in ok_new]
    checks.append(
        Check(
            "every added token reachable",
            swapped_ok == len(new_added),
            f"{swapped_ok}/{len(new_added)} added tokens come out of encoding their own text",
        )
    )
    checks.append(
        Check(
            "kept tokens as reachable as in the base",
            not regressed,
            f"{len(ok_new)}/{len(could_new)} whole-text entries reachable "
            f"(base: {len(ok_base)}); regressions: {len(regressed)}",
        )
    )
    checks.append(check_round_trip(new, base_tok, examples))

    try:
        from transformers import AutoTokenizer

        at = AutoTokenizer.from_pretrained(str(Path(path).parent))
        sample = "Привет, мир! Hello, world 123."
        loads = at.decode(at(sample, add_special_tokens=False)["input_ids"]) == sample
        checks.append(Check("loads with transformers.AutoTokenizer", loads, type(at).__name__))
    except Exception as e:  # noqa: BLE001 - reported as a failed check
        checks.append(Check("loads with transformers.AutoTokenizer", False, str(e)[:200]))
        return checks
    if at.chat_template:
        msgs = [{"role": "user", "content": "Сколько будет 2+2?"}]
        rendered = {}
        for think in (True, False):
            rendered[think] = at.apply_chat_template(
                msgs, tokenize=False, add_generation_prompt=True, enable_thinking=think
            )
        ok = all("Сколько будет 2+2?" in r for r in rendered.values())
        detail = "renders with enable_thinking=True and False"
        if "enable_thinking" in at.chat_template:
            ok = ok and rendered[True] != rendered[False]
            detail += " (outputs differ, as they should)"
        checks.append(Check("chat template renders", ok, detail))
    else:
        checks.append(Check("chat template renders", True, "the base has no chat template (nothing to render)"))
    return checks
