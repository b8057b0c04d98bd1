"""Byte-level BPE ``tokenizer.json`` as data: load from a file, a directory or a hub id; read vocabulary and
merges; rebuild a ``tokenizers.Tokenizer`` from edited vocabulary and merges.

Only the ``model`` section (vocab, merges) is ever edited; normalizer, pre-tokenizer, decoder, post-processor and
added tokens are carried over untouched. It knows nothing about which tokens to swap (``adapt.py``).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json")


class TokenizerSpecError(ValueError):
    """The base tokenizer could not be found or is not a byte-level BPE; the message says how to fix it."""


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """GPT-2's byte <-> printable-unicode table, inverted: byte-level token character -> byte."""
    from tokenizers import pre_tokenizers

    # ByteLevel.alphabet() gives the 256 characters; their byte values come from GPT-2's fixed construction:
    # printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100.. in byte order.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = {chr(c): b for b, c in zip(bs, cs)}
    assert set(table) == set(pre_tokenizers.ByteLevel.alphabet())
    return table


def token_bytes(token: str) -> bytes:
    """Raw bytes of a byte-level token string (e.g. 'Ġм' -> b' \\xd0\\xbc')."""
    dec = byte_decoder()
    return bytes(dec[c] for c in token)


def token_text(token: str) -> str | None:
    """The token's text if its bytes are valid UTF-8, else None (a piece of a multi-byte character)."""
    try:
        return token_bytes(token).decode("utf-8")
    except (UnicodeDecodeError, KeyError):
        return None


@dataclass
class BaseBPE:
    """A byte-level BPE tokenizer.json, parsed: vocab (token -> id), merges in rank order, added tokens."""

    data: dict  # the whole tokenizer.json
    vocab: dict[str, int]
    merges: list[tuple[str, str]]
    added: dict[str, int]  # added/special token content -> id
    source: str
    directory: Path | None  # where tokenizer_config.json etc. live, if any
    merges_as_strings: bool  # older tokenizer.json files store merges as "a b"

    @property
    def vocab_size(self) -> int:
        return max(max(self.vocab.values()), max(self.added.values(), default=-1)) + 1

    def build(self, vocab: dict[str, int] | None = None, merges: list[tuple[str, str]] | None = None):
        """A ``tokenizers.Tokenizer`` with this file's pipeline and the given vocab/merges."""
        from tokenizers import Tokenizer

        return Tokenizer.from_str(json.dumps(self.to_json(vocab, merges), ensure_ascii=False))

    def to_json(self, vocab: dict[str, int] | None = None, merges: list[tuple[str, str]] | None = None) -> dict:
        data = copy.copy(self.data)
        model = dict(data["model"])
        model["vocab"] = self.vocab if vocab is None else vocab
        ms = self.merges if merges is None else merges
        model["merges"] = [f"{a} {b}" for a, b in ms] if self.merges_as_strings else [[a, b] for a, b in ms]
        data["model"] = model
        return data


def _is_byte_level(data: dict) -> bool:
    blob = json.dumps([data.get("pre_tokenizer"), data.get("decoder")])
    return '"ByteLevel"' in blob


def resolve_tokenizer_file(spec: str) -> tuple[Path, Path | None]:
    """``spec`` (a tokenizer.json, a directory holding one, or a hub id) -> (tokenizer.json path, its directory)."""
    p = Path(spec).expanduser()
    if p.is_file():
        return p, p.parent if (p.parent / "tokenizer_config.json").is_file() else None
    if p.is_dir():
        if not (p / "tokenizer.json").is_file():
            raise TokenizerSpecError(
                f"directory {spec!r} has no tokenizer.json. Fix: point at a folder written by "
                "tokenizer.save_pretrained() of a fast tokenizer, or at the tokenizer.json file itself"
            )
        return p / "tokenizer.json", p
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1 or not re.fullmatch(r"[\w.\-/]+", spec):
        raise TokenizerSpecError(f"tokenizer {spec!r} does not exist. Fix: check the path")
    try:  # a hub id: fetch only the tokenizer files (the path real users take; needs network)
        from huggingface_hub import snapshot_download

        d = Path(snapshot_download(spec, allow_patterns=["tokenizer.json", *TOKENIZER_FILES]))
    except Exception as e:  # noqa: BLE001 - re-raised with the fix
        raise TokenizerSpecError(
            f"could not download tokenizer {spec!r} from the Hugging Face hub: {e}. "
            "Fix: check the id and network, or pass a local tokenizer.json / directory"
        ) from e
    if not (d / "tokenizer.json").is_file():
        raise TokenizerSpecError(f"hub repo {spec!r} has no tokenizer.json (only fast byte-level BPE tokenizers work)")
    return d / "tokenizer.json", d


def load_base(spec: str) -> BaseBPE:
    path, directory = resolve_tokenizer_file(spec)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise TokenizerSpecError(f"{path} is not a readable tokenizer.json: {e}") from e
    model = data.get("model") if isinstance(data, dict) else None
    model = model if isinstance(model, dict) else {}
    need = "only byte-level BPE vocabularies (GPT-2, Qwen, Llama-3 style) can be adapted"
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict) or "merges" not in model:
        raise TokenizerSpecError(f"{path} holds a {model.get('type') or 'unknown'} model, not a BPE one: {need}")
    added = {t["content"]: t["id"] for t in data.get("added_tokens", [])}
    alphabet = byte_decoder()
    odd = next((t for t in model["vocab"] if t not in added and any(c not in alphabet for c in t)), None)
    if not _is_byte_level(data) or odd is not None:
        why = f"token {odd!r} is not made of byte-level characters" if odd else "no ByteLevel pre-tokenizer/decoder"
        raise TokenizerSpecError(
            f"{path} is a BPE but not a byte-level one ({why}; e.g. a SentencePiece-style vocabulary): {need}"
        )
    raw = model["merges"]
    as_strings = bool(raw) and isinstance(raw[0], str)
    merges = [tuple(m.split(" ", 1)) if as_strings else tuple(m) for m in raw]
    return BaseBPE(
        data=data,
        vocab=dict(model["vocab"]),
        merges=merges,  # type: ignore[arg-type]
        added=added,
        source=spec,
        directory=directory,
        merges_as_strings=as_strings,
    )
