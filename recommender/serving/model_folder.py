"""Local model folders for dummy-weight runs: ``config.json`` plus a tokenizer we build ourselves.

vLLM's ``--load-format dummy`` needs only the architecture (``config.json``) and a tokenizer; energy and
latency depend on shapes, not weight values. No machine here reaches a model hub, so the tokenizer is
synthetic: a word-level vocabulary ``t0 .. t{V-1}`` over exactly the model's ``vocab_size`` ids (the special
ids get special names), in the Hugging Face ``tokenizers`` JSON format, loadable by
``PreTrainedTokenizerFast`` without the ``tokenizers`` wheel being needed here. Prompts are sent as token-id
lists, so the tokenizer only has to accept them and detokenize outputs.

Folders are content-addressed (``<name>-<hash>``), written atomically, and never rewritten when the bytes are
unchanged, so concurrent or repeated calls are safe and deterministic.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recommender.catalog import ModelSpec

#: Bump when the folder layout or tokenizer format changes (part of the folder hash).
FOLDER_FORMAT_VERSION = 1


@dataclass(frozen=True)
class SpecialTokens:
    """Special token ids of a synthetic tokenizer. ``eos`` may hold several ids (Llama 3 has three)."""

    bos: int
    eos: tuple[int, ...]
    unk: int
    pad: int | None = None

    @property
    def all_ids(self) -> frozenset[int]:
        """Every special id (prompts avoid these)."""
        ids = {self.bos, self.unk, *self.eos}
        if self.pad is not None:
            ids.add(self.pad)
        return frozenset(ids)

    def names(self) -> dict[int, str]:
        """Id -> token string for the special ids."""
        out = {self.unk: "<|unk|>", self.bos: "<|bos|>"}
        for k, i in enumerate(self.eos):
            out[i] = "<|eos|>" if k == 0 else f"<|eos_{k}|>"
        if self.pad is not None and self.pad not in out:
            out[self.pad] = "<|pad|>"
        return out


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return [int(value)]


def special_tokens(hf_config: Mapping[str, Any], vocab_size: int) -> SpecialTokens:
    """Special ids from a Hugging Face ``config.json`` mapping, with safe fallbacks inside ``vocab_size``.

    ``bos_token_id``/``eos_token_id``/``pad_token_id`` are used when present and inside the vocabulary;
    otherwise bos=1, eos=2. ``unk`` is the smallest id that is not another special id.

    Raises:
        ValueError: ``vocab_size`` < 4 (no room for special and ordinary tokens).
    """
    if vocab_size < 4:
        raise ValueError(f"vocab_size must be >= 4, got {vocab_size}")
    inside = [i for i in _ids(hf_config.get("bos_token_id")) if 0 <= i < vocab_size]
    bos = inside[0] if inside else 1
    eos = tuple(i for i in _ids(hf_config.get("eos_token_id")) if 0 <= i < vocab_size) or (2 if bos != 2 else 3,)
    pads = [i for i in _ids(hf_config.get("pad_token_id")) if 0 <= i < vocab_size]
    pad = pads[0] if pads and pads[0] not in (bos, *eos) else None
    taken = {bos, *eos} | ({pad} if pad is not None else set())
    unk = next(i for i in range(vocab_size) if i not in taken)
    return SpecialTokens(bos=bos, eos=eos, unk=unk, pad=pad)


def build_tokenizer_json(vocab_size: int, special: SpecialTokens) -> dict[str, Any]:
    """A word-level tokenizer over ids ``0 .. vocab_size-1`` in the HF ``tokenizers`` JSON format.

    Ordinary id ``i`` is the token ``t{i}``; special ids use :meth:`SpecialTokens.names` and are listed as
    added special tokens. Pre-tokenization splits on whitespace; decoding joins tokens with spaces.
    """
    names = special.names()
    vocab = {names.get(i, f"t{i}"): i for i in range(vocab_size)}
    added = [
        {"id": i, "content": names[i], "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i in sorted(names)
    ]  # fmt: skip
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": names[special.unk]},
    }


def folder_files(hf_config: Mapping[str, Any], vocab_size: int, max_model_len: int) -> dict[str, bytes]:
    """File name -> exact bytes of a model folder (deterministic: same inputs, same bytes).

    ``config.json``'s ``vocab_size`` is forced to ``vocab_size`` so the tokenizer and the model agree.
    """
    config = dict(hf_config)
    config["vocab_size"] = int(vocab_size)
    special = special_tokens(config, vocab_size)
    names = special.names()
    eos_cfg: int | list[int] = special.eos[0] if len(special.eos) == 1 else list(special.eos)
    tok_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": names[special.bos],
        "eos_token": names[special.eos[0]],
        "unk_token": names[special.unk],
        "model_max_length": int(max_model_len),
        "clean_up_tokenization_spaces": False,
    }
    if special.pad is not None:
        tok_cfg["pad_token"] = names[special.pad]
    gen_cfg = {"_from_model_config": True, "bos_token_id": special.bos, "eos_token_id": eos_cfg}

    def dump(obj: Any, indent: int | None = 2) -> bytes:
        return (json.dumps(obj, indent=indent, sort_keys=indent is not None) + "\n").encode()

    return {
        "config.json": dump(config),
        "tokenizer.json": dump(build_tokenizer_json(vocab_size, special), indent=None),
        "tokenizer_config.json": dump(tok_cfg),
        "special_tokens_map.json": dump({k: v for k, v in tok_cfg.items() if k.endswith("_token")}),
        "generation_config.json": dump(gen_cfg),
    }


def _write_if_changed(path: Path, data: bytes) -> None:
    if path.exists() and path.read_bytes() == data:
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_model_folder_from_config(
    hf_config: Mapping[str, Any], name: str, root: str | Path, *, vocab_size: int | None = None,
    max_model_len: int | None = None,
) -> Path:
    """Write (or reuse) ``root/<name>-<hash>/`` from a HF config mapping and return the folder.

    Args:
        hf_config: the model's ``config.json`` content.
        name: human-readable prefix of the folder name (sanitized).
        root: parent folder; created if missing.
        vocab_size: vocabulary size (default ``hf_config["vocab_size"]``).
        max_model_len: tokenizer ``model_max_length`` (default ``max_position_embeddings`` or 4096).

    Raises:
        ValueError: no vocabulary size given or found.
    """
    v = vocab_size if vocab_size is not None else hf_config.get("vocab_size")
    if not v:
        raise ValueError("the model config has no vocab_size; pass vocab_size")
    mml = max_model_len or int(hf_config.get("max_position_embeddings") or 4096)
    files = folder_files(hf_config, int(v), mml)
    h = hashlib.sha256(f"format={FOLDER_FORMAT_VERSION}".encode())
    for fname in sorted(files):
        h.update(fname.encode() + b"\0" + hashlib.sha256(files[fname]).digest())
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.split("/")[-1]) or "model"
    folder = Path(root) / f"{safe}-{h.hexdigest()[:10]}"
    folder.mkdir(parents=True, exist_ok=True)
    for fname, data in files.items():
        _write_if_changed(folder / fname, data)
    return folder


def write_model_folder(model: str | ModelSpec, root: str | Path) -> Path:
    """Model folder for a catalog model (name, alias, HF id, local config path, or a ModelSpec).

    Uses ``ModelSpec.to_hf_config()``, ``.vocab_size`` and ``.max_position_embeddings``.

    Raises:
        InputError: unknown model (from the catalog).
    """
    if isinstance(model, str):
        from recommender.catalog import get_model

        spec = get_model(model)
    else:
        spec = model
    return write_model_folder_from_config(
        spec.to_hf_config(), getattr(spec, "name", "model"), root,
        vocab_size=int(spec.vocab_size), max_model_len=int(spec.max_position_embeddings),
    )  # fmt: skip


def read_special_tokens(folder: str | Path) -> SpecialTokens:
    """Special ids of a folder written here (or any folder with a ``config.json``)."""
    config = json.loads((Path(folder) / "config.json").read_text())
    return special_tokens(config, int(config["vocab_size"]))
