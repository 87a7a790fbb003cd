"""Dummy-weight model folders: config.json + a synthetic tokenizer that really loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recommender.serving.model_folder import (
    build_tokenizer_json,
    read_special_tokens,
    special_tokens,
    write_model_folder,
    write_model_folder_from_config,
)

pytestmark = pytest.mark.unit

SMALL = {"architectures": ["LlamaForCausalLM"], "vocab_size": 64, "bos_token_id": 1, "eos_token_id": [2, 5],
         "max_position_embeddings": 512}


def test_special_tokens_fallbacks() -> None:
    s = special_tokens({"bos_token_id": 128000, "eos_token_id": 128001}, 128256)
    assert (s.bos, s.eos, s.unk) == (128000, (128001,), 0)
    s = special_tokens({}, 100)
    assert (s.bos, s.eos, s.unk) == (1, (2,), 0)
    s = special_tokens({"bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 1}, 100)
    assert s.unk == 2 and s.all_ids == {0, 1, 2}
    s = special_tokens({"bos_token_id": 999}, 100)  # out of vocabulary: ignored
    assert s.bos == 1


def test_tokenizer_json_covers_vocab() -> None:
    s = special_tokens(SMALL, 64)
    tok = build_tokenizer_json(64, s)
    vocab = tok["model"]["vocab"]
    assert sorted(vocab.values()) == list(range(64))
    assert vocab["t3"] == 3 and vocab["<|bos|>"] == 1 and vocab["<|eos|>"] == 2 and vocab["<|eos_1|>"] == 5
    assert {a["id"] for a in tok["added_tokens"]} == {0, 1, 2, 5}
    assert tok["model"]["unk_token"] == "<|unk|>"


def test_folder_is_deterministic_and_idempotent(tmp_path: Path) -> None:
    a = write_model_folder_from_config(SMALL, "org/Tiny", tmp_path)
    mtimes = {p.name: p.stat().st_mtime_ns for p in a.iterdir()}
    b = write_model_folder_from_config(SMALL, "org/Tiny", tmp_path)
    assert a == b and a.name.startswith("Tiny-")
    assert {p.name: p.stat().st_mtime_ns for p in b.iterdir()} == mtimes  # nothing rewritten
    assert sorted(p.name for p in a.iterdir()) == [
        "config.json", "generation_config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]
    c = write_model_folder_from_config({**SMALL, "vocab_size": 80}, "org/Tiny", tmp_path)
    assert c != a
    cfg = json.loads((a / "config.json").read_text())
    assert cfg["vocab_size"] == 64 == len(json.loads((a / "tokenizer.json").read_text())["model"]["vocab"])
    tok_cfg = json.loads((a / "tokenizer_config.json").read_text())
    assert tok_cfg["tokenizer_class"] == "PreTrainedTokenizerFast" and tok_cfg["model_max_length"] == 512
    assert json.loads((a / "generation_config.json").read_text())["eos_token_id"] == [2, 5]
    assert read_special_tokens(a).eos == (2, 5)


def test_catalog_model_folder(tmp_path: Path) -> None:
    folder = write_model_folder("Llama-3.2-1B", tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["vocab_size"] == 128256 and cfg["architectures"] == ["LlamaForCausalLM"]
    vocab = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
    assert len(vocab) == 128256 and vocab["<|bos|>"] == cfg["bos_token_id"]


def test_tokenizer_loads_with_tokenizers_library(tmp_path: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    folder = write_model_folder_from_config(SMALL, "tiny", tmp_path)
    tok = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    assert tok.get_vocab_size() == 64
    assert tok.encode("t7 t8 t63", add_special_tokens=False).ids == [7, 8, 63]
    assert tok.encode("nonsense", add_special_tokens=False).ids == [0]  # unk
    assert tok.decode([7, 8, 1, 2], skip_special_tokens=True) == "t7 t8"
    assert tok.token_to_id("<|eos_1|>") == 5


def test_loads_as_pretrained_tokenizer_fast(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    folder = write_model_folder_from_config(SMALL, "tiny", tmp_path)
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    assert tok.bos_token_id == 1 and tok.eos_token_id == 2 and len(tok) == 64
