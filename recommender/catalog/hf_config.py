"""Read the architecture numbers out of a Hugging Face ``config.json`` dict, and write one back.

Pure functions on dicts; no file I/O (see :func:`recommender.catalog.architecture.load_config_json`).

Families handled by key name rather than by class: Llama, Mistral, Mixtral, Qwen2/Qwen2-MoE, Qwen3/Qwen3-MoE,
Gemma 2/3 (multimodal configs with a nested ``text_config``), gpt-oss, Phi-3, StarCoder2, BLOOM, Llama 4, and
anything else spelling the usual keys. Keys a published config omits are filled from the ``transformers``
config-class defaults for that ``model_type`` (:data:`MODEL_TYPE_DEFAULTS`), e.g. Gemma 3's ``head_dim`` of 256.

Llama 4 (``llama4_text``): MoE layers are ``moe_layers`` or every ``interleave_moe_layer_step``-th layer, the other
layers use a dense MLP of ``intermediate_size_mlp``, and every MoE layer has one shared expert. Its chunked local
attention (``attention_chunk_size`` on the RoPE layers, ``no_rope_layers``) is counted as a sliding window of the
chunk size: exact below one chunk, an upper bound on KV cache and attention work beyond it (a chunked layer keeps
and attends to at most one chunk).

Not modelled, and refused with an :class:`~recommender.errors.InputError`: multi-head latent attention
(``kv_lora_rank``, DeepSeek V2/V3) and hybrid attention/state-space stacks (``layer_types`` other than
full/sliding attention, e.g. Qwen3-Next, Nemotron-H), whose KV cache the formulas here would get wrong.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Mapping
from typing import Any

from recommender.errors import InputError

logger = logging.getLogger(__name__)

#: Our field name -> config.json keys that carry it, first match wins.
KEY_ALIASES: dict[str, tuple[str, ...]] = {
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "hidden_size": ("hidden_size", "d_model", "n_embd", "n_embed"),
    "intermediate_size": ("intermediate_size", "ffn_dim", "n_inner"),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads"),
    "num_kv_heads": ("num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num"),
    "head_dim": ("head_dim",),
    "vocab_size": ("vocab_size", "padded_vocab_size"),
    "max_position_embeddings": ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"),
    "num_experts": ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"),
    "num_experts_per_token": ("num_experts_per_tok", "num_experts_per_token", "experts_per_token", "moe_top_k"),
    "moe_intermediate_size": ("moe_intermediate_size",),
}

#: transformers config-class defaults for keys that published configs leave out, by (text) model_type.
MODEL_TYPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma3_text": {
        "head_dim": 256,
        "vocab_size": 262208,
        "max_position_embeddings": 131072,
        "tie_word_embeddings": True,
        "sliding_window": 4096,
        "sliding_window_pattern": 6,
    },
    "gemma2": {"head_dim": 256, "tie_word_embeddings": True, "sliding_window": 4096},
    "gemma": {"head_dim": 256, "tie_word_embeddings": True},
    # Starcoder2Config and BloomConfig leave tie_word_embeddings at the PretrainedConfig default (True).
    "starcoder2": {"tie_word_embeddings": True},
    # BLOOM uses ALiBi (no position table) and names no length; vLLM then assumes 2048, its pretraining length.
    "bloom": {"tie_word_embeddings": True, "max_position_embeddings": 2048},
}

#: MLP width as a multiple of hidden_size for model_types whose config may leave it null (``n_inner: null``).
MLP_WIDTH_FACTOR_DEFAULTS: dict[str, int] = {"bloom": 4, "gpt2": 4, "gpt_bigcode": 4}

#: Shared experts per MoE layer for model_types whose config has no key for them.
SHARED_EXPERTS_BY_TYPE: dict[str, int] = {"llama4_text": 1}

#: model_types whose MLP is two matrices (up, down) instead of the gated three (gate, up, down).
NON_GATED_MLP_TYPES = frozenset(
    {"gpt2", "gpt_bigcode", "gpt_neox", "gptj", "starcoder2", "phi", "falcon", "opt", "bloom", "mpt"}
)

#: model_types with biases on q/k/v even though their config has no ``attention_bias`` key.
QKV_BIAS_TYPES = frozenset({"qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl"})

_NESTED_KEYS = ("text_config", "vision_config", "audio_config", "quantization_config")
_ATTENTION_LAYER_TYPES = frozenset({"full_attention", "sliding_attention", "chunked_attention"})
#: Layer types that keep and attend to a bounded number of tokens (``sliding_window`` or the attention chunk).
_WINDOWED_LAYER_TYPES = frozenset({"sliding_attention", "chunked_attention"})
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def text_view(config: Mapping[str, Any]) -> dict[str, Any]:
    """The language-model part of a config: ``text_config`` merged over the top level, defaults filled in.

    Top-level keys stay visible unless the nested ``text_config`` sets them; the nested configs themselves
    (vision, audio, quantization) are dropped. ``_catalog`` is dropped too.
    """
    view = {k: v for k, v in config.items() if k not in _NESTED_KEYS and k != "_catalog"}
    text = config.get("text_config")
    if isinstance(text, Mapping):
        view.update(text)
    for key, value in MODEL_TYPE_DEFAULTS.get(str(view.get("model_type", "")), {}).items():
        if view.get(key) is None:
            view[key] = value
    return view


def _field_name(source: str, key: str) -> str:
    return f"{source}: {key}"


def _first(view: Mapping[str, Any], field: str) -> tuple[str, Any]:
    """(key found, value) for our field, or (first alias, None) when absent or null."""
    keys = KEY_ALIASES[field]
    for key in keys:
        if view.get(key) is not None:
            return key, view[key]
    return keys[0], None


def _positive_int(source: str, key: str, value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer() and value > 0:
            return int(value)
        raise InputError(_field_name(source, key), value, f"{key} ({what}) must be a positive integer")
    if value <= 0:
        raise InputError(_field_name(source, key), value, f"{key} ({what}) must be a positive integer")
    return value


def _required(view: Mapping[str, Any], source: str, field: str, what: str) -> int:
    key, value = _first(view, field)
    if value is None:
        spelled = " or ".join(KEY_ALIASES[field])
        raise InputError(_field_name(source, key), None, f"required key missing: add {spelled} ({what}) to the config")
    return _positive_int(source, key, value, what)


def _optional(view: Mapping[str, Any], source: str, field: str, what: str) -> int | None:
    key, value = _first(view, field)
    return None if value is None else _positive_int(source, key, value, what)


def _check_supported(view: Mapping[str, Any], source: str) -> None:
    if view.get("kv_lora_rank") is not None:
        raise InputError(
            _field_name(source, "kv_lora_rank"),
            view["kv_lora_rank"],
            "multi-head latent attention (DeepSeek V2/V3 style) is not modelled; use a GQA/MHA model",
        )
    layer_types = view.get("layer_types")
    if isinstance(layer_types, list):
        other = sorted({str(t) for t in layer_types} - _ATTENTION_LAYER_TYPES)
        if other:
            raise InputError(
                _field_name(source, "layer_types"),
                other,
                "only full, sliding and chunked attention layers are modelled (no linear/state-space layers)",
            )


def _dense_layer_count(view: Mapping[str, Any], num_layers: int) -> int:
    """Layers of a MoE model that use the dense MLP instead of experts."""
    moe_layers = view.get("moe_layers")
    if isinstance(moe_layers, list) and moe_layers:  # Llama 4: the MoE layers, listed
        return num_layers - len({int(i) for i in moe_layers if 0 <= int(i) < num_layers})
    step = view.get("interleave_moe_layer_step")
    if isinstance(step, int) and not isinstance(step, bool) and step >= 1:  # Llama 4: layers step-1, 2*step-1, ...
        return num_layers - len(range(step - 1, num_layers, step))
    dense: set[int] = set()
    only = view.get("mlp_only_layers")
    if isinstance(only, list):
        dense.update(int(i) for i in only if 0 <= int(i) < num_layers)
    step = view.get("decoder_sparse_step")
    if isinstance(step, int) and step > 1:
        dense.update(i for i in range(num_layers) if (i + 1) % step != 0)
    first_k = view.get("first_k_dense_replace")
    if isinstance(first_k, int) and first_k > 0:
        dense.update(range(min(first_k, num_layers)))
    return len(dense)


def _shared_experts(view: Mapping[str, Any], moe_intermediate_size: int) -> int:
    by_type = SHARED_EXPERTS_BY_TYPE.get(str(view.get("model_type") or ""))
    if by_type is not None:
        return by_type
    for key in ("n_shared_experts", "num_shared_experts"):
        if isinstance(view.get(key), int):
            return max(0, int(view[key]))
    shared_size = view.get("shared_expert_intermediate_size")
    if isinstance(shared_size, int) and shared_size > 0:
        if shared_size % moe_intermediate_size:
            logger.warning(
                "shared_expert_intermediate_size %d is not a multiple of moe_intermediate_size %d; rounding",
                shared_size,
                moe_intermediate_size,
            )
        return max(1, round(shared_size / moe_intermediate_size))
    return 0


def default_name(config: Mapping[str, Any]) -> tuple[str, str | None]:
    """(name, hf_id) from ``_catalog``, ``_name_or_path`` or the architecture, for a config with no name given."""
    catalog = config.get("_catalog")
    if isinstance(catalog, Mapping) and catalog.get("name"):
        return str(catalog["name"]), catalog.get("hf_id")
    path = config.get("_name_or_path")
    if isinstance(path, str) and path:
        if _HF_ID.match(path):
            return path.rsplit("/", 1)[1], path
        return path, None
    archs = config.get("architectures")
    if isinstance(archs, list) and archs:
        return str(archs[0]), None
    return str(config.get("model_type") or "custom-model"), None


def parse_hf_config(config: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """Turn a config.json dict into :class:`~recommender.catalog.architecture.ModelSpec` field values.

    Args:
        config: the parsed config.json (may carry a ``_catalog`` block, which is kept out of ``hf_config``).
        source: how to name the config in error messages (a file path, or ``"config"``).

    Returns:
        Field values (without ``name``/``hf_id``), including ``hf_config``: a deep copy of ``config`` minus
        ``_catalog``.

    Raises:
        InputError: a required key is missing, a number is not a positive integer, the head counts do not fit
            together, or the attention kind is not modelled. The field names the source and the key.
    """
    if not isinstance(config, Mapping):
        raise InputError(source, type(config).__name__, "a config.json must hold a JSON object")
    view = text_view(config)
    _check_supported(view, source)
    model_type = str(view.get("model_type") or "")

    num_layers = _required(view, source, "num_layers", "number of transformer layers")
    hidden = _required(view, source, "hidden_size", "model width")
    heads = _required(view, source, "num_attention_heads", "query heads")
    kv_heads = _optional(view, source, "num_kv_heads", "key/value heads") or heads
    vocab = _required(view, source, "vocab_size", "vocabulary size")
    max_pos = _required(view, source, "max_position_embeddings", "longest context the model supports")
    if heads % kv_heads:
        raise InputError(
            _field_name(source, "num_key_value_heads"),
            kv_heads,
            f"must divide num_attention_heads ({heads}); fix one of the two",
        )
    head_dim = _optional(view, source, "head_dim", "width of one attention head")
    if head_dim is None:
        if hidden % heads:
            raise InputError(
                _field_name(source, "num_attention_heads"),
                heads,
                f"does not divide hidden_size ({hidden}) and head_dim is absent; set head_dim or fix the heads",
            )
        head_dim = hidden // heads

    num_experts = _optional(view, source, "num_experts", "routed experts per MoE layer") or 1
    moe = num_experts > 1
    intermediate = _optional(view, source, "intermediate_size", "MLP width")
    moe_intermediate = _optional(view, source, "moe_intermediate_size", "width of one expert") if moe else None
    if moe and moe_intermediate is None:
        moe_intermediate = intermediate  # Mixtral / gpt-oss / Llama 4: intermediate_size is the expert width
    if moe and view.get("intermediate_size_mlp") is not None:  # Llama 4: width of the dense-MLP layers
        intermediate = _positive_int(source, "intermediate_size_mlp", view["intermediate_size_mlp"], "dense MLP width")
    factor = MLP_WIDTH_FACTOR_DEFAULTS.get(model_type)
    if intermediate is None and not moe and factor:  # n_inner: null means factor * hidden_size
        intermediate = factor * hidden
    if intermediate is None:
        if not moe:
            raise InputError(
                _field_name(source, "intermediate_size"),
                None,
                "required key missing: add intermediate_size (MLP width)",
            )
        intermediate = moe_intermediate
    if moe and moe_intermediate is None:
        raise InputError(
            _field_name(source, "moe_intermediate_size"),
            None,
            "a MoE config needs moe_intermediate_size or intermediate_size",
        )
    per_token = (_optional(view, source, "num_experts_per_token", "experts each token uses") or 1) if moe else 1
    if per_token > num_experts:
        raise InputError(
            _field_name(source, "num_experts_per_tok"),
            per_token,
            f"cannot exceed the number of experts ({num_experts})",
        )

    sliding = view.get("sliding_window")
    if sliding is None and view.get("attention_chunk_size") is not None:  # Llama 4 chunked local attention
        sliding = view["attention_chunk_size"]
    if view.get("use_sliding_window") is False or sliding is None:
        sliding_window = None
    else:
        sliding_window = _positive_int(source, "sliding_window", sliding, "attention window in tokens")

    tie = view.get("tie_word_embeddings")
    return {
        "architecture": "moe" if moe else "dense",
        "num_layers": num_layers,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_attention_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": head_dim,
        "vocab_size": vocab,
        "max_position_embeddings": max_pos,
        "tie_word_embeddings": bool(tie) if tie is not None else False,
        "num_experts": num_experts,
        "num_experts_per_token": per_token,
        "moe_intermediate_size": moe_intermediate,
        "num_shared_experts": _shared_experts(view, moe_intermediate) if moe and moe_intermediate else 0,
        "num_dense_layers": _dense_layer_count(view, num_layers) if moe else 0,
        "sliding_window": sliding_window,
        "attention_bias": bool(view.get("attention_bias")) or model_type in QKV_BIAS_TYPES,
        "gated_mlp": model_type not in NON_GATED_MLP_TYPES,
        "hf_config": copy.deepcopy({k: v for k, v in config.items() if k != "_catalog"}),
    }


def sliding_layer_count(view: Mapping[str, Any], num_layers: int, sliding_window: int | None) -> int:
    """How many layers attend only within ``sliding_window`` tokens (the rest attend to the full context).

    Order of evidence: ``layer_types``; Llama 4's chunked attention on its RoPE layers (``no_rope_layers`` 1 =
    RoPE, else every ``no_rope_layer_interval``-th layer, default 4, is a global NoPE layer); Gemma's
    ``sliding_window_pattern`` (every N-th layer global); Gemma 2's alternation; otherwise every layer
    (Mistral-v0.1 style).
    """
    if sliding_window is None:
        return 0
    layer_types = view.get("layer_types")
    if isinstance(layer_types, list) and layer_types:
        return sum(1 for t in layer_types[:num_layers] if t in _WINDOWED_LAYER_TYPES)
    if view.get("sliding_window") is None and view.get("attention_chunk_size") is not None:
        rope_layers = view.get("no_rope_layers")
        if isinstance(rope_layers, list) and rope_layers:
            return sum(1 for r in rope_layers[:num_layers] if r)
        interval = view.get("no_rope_layer_interval") or 4
        return sum(1 for i in range(num_layers) if (i + 1) % interval != 0)
    pattern = view.get("sliding_window_pattern") or view.get("_sliding_window_pattern")
    if isinstance(pattern, int) and pattern > 0:
        return num_layers - num_layers // pattern
    if view.get("model_type") == "gemma2":
        return (num_layers + 1) // 2
    return num_layers


def vision_params(config: Mapping[str, Any], text_hidden_size: int) -> int:
    """Approximate parameters of a ViT/SigLIP-style vision encoder plus a linear projector; 0 if none.

    Per layer: q/k/v/o with biases (4h^2 + 4h), two-matrix MLP with biases (2*h*i + i + h), two LayerNorms
    (4h); plus patch embedding (c*p^2*h + h), learned positions ((image/patch)^2 * h), a final LayerNorm (2h)
    and a projector to the text width (h * text_hidden_size). Within ~1% of SigLIP-So400m in Gemma 3.
    """
    vision = config.get("vision_config")
    if not isinstance(vision, Mapping):
        return 0
    layers = vision.get("num_hidden_layers") or vision.get("depth")
    width = vision.get("hidden_size") or vision.get("embed_dim")
    if not isinstance(layers, int) or not isinstance(width, int):
        logger.debug("vision_config without num_hidden_layers/hidden_size; vision parameters not counted")
        return 0
    inner = vision.get("intermediate_size") or 4 * width
    per_layer = 4 * width * width + 4 * width + 2 * width * inner + inner + width + 4 * width
    patch = vision.get("patch_size") or 14
    channels = vision.get("num_channels") or 3
    image = vision.get("image_size")
    positions = (image // patch) ** 2 if isinstance(image, int) else 0
    embeddings = channels * patch * patch * width + width + positions * width
    return layers * per_layer + embeddings + 2 * width + width * text_hidden_size
