"""Model architectures: shapes, parameter counts, weight and KV-cache bytes, FLOPs per token.

A :class:`ModelSpec` is built from a Hugging Face ``config.json`` (:meth:`ModelSpec.from_hf_config`,
:func:`load_config_json`) or from its fields, and can write a config.json back out (:meth:`ModelSpec.to_hf_config`)
that vLLM starts with ``--load-format dummy``.

Parameter count (``h`` hidden size, ``L`` layers, ``nh``/``nkv`` query/KV heads, ``d`` head_dim, ``V`` vocab,
``i`` MLP width, ``e`` expert width, ``E``/``k`` experts total/per token, ``s`` shared experts)::

    attention   = h*nh*d (q) + 2*h*nkv*d (k, v) + nh*d*h (o)  [+ nh*d + 2*nkv*d q/k/v biases if attention_bias]
    dense MLP   = 3*h*i (gate, up, down; 2*h*i when not gated)
    expert      = 3*h*e;  router = h*E
    dense layer = attention + dense MLP + 2*h (two RMSNorms)
    MoE layer   = attention + (E + s)*expert + router + 2*h        total
                = attention + (k + s)*expert + router + 2*h        active per token
    total       = V*h (embedding) + V*h (lm_head, unless tied) + h (final norm) + layers + vision encoder
    active      = the same with MoE layers counted active, and no vision encoder

Left out as negligible (< 0.1%): q/k norms, Gemma's extra norms, gpt-oss attention sinks and expert biases.
``active_params`` counts the input embedding, as Qwen and Mistral do when they publish active parameters;
``flops_per_token`` does not (an embedding lookup is not a matmul).
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from recommender.catalog.hf_config import default_name, parse_hf_config, sliding_layer_count, text_view, vision_params
from recommender.catalog.synthesize import synthesize_hf_config
from recommender.errors import InputError

logger = logging.getLogger(__name__)

#: Bytes per weight parameter. mxfp4 = 4-bit values plus one 8-bit scale per 32 values (4.25 bits).
WEIGHT_BYTES_PER_PARAM: dict[str, float] = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "mxfp4": 4.25 / 8,
    "fp4": 0.5,
}
_DTYPE_SYNONYMS = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32"}

#: Bytes per KV-cache element by vLLM ``--kv-cache-dtype``; "auto" is taken as bf16.
KV_BYTES_PER_ELEMENT: dict[str, int] = {
    "auto": 2,
    "bf16": 2,
    "bfloat16": 2,
    "fp16": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
}


class ModelSpec(BaseModel):
    """Shape of a decoder-only transformer, with the raw config it came from.

    Equality and hashing ignore ``hf_config``: two specs are equal when their shapes are. Instances are frozen;
    ``hf_config`` is never handed out by reference (:meth:`to_hf_config` returns a copy).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    hf_id: str | None = None
    architecture: Literal["dense", "moe"]
    num_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0, description="dense MLP width (unused by pure-MoE layers)")
    num_attention_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    max_position_embeddings: int = Field(gt=0)
    tie_word_embeddings: bool = False
    num_experts: int = Field(default=1, ge=1)
    num_experts_per_token: int = Field(default=1, ge=1)
    moe_intermediate_size: int | None = Field(default=None, gt=0)
    num_shared_experts: int = Field(default=0, ge=0)
    num_dense_layers: int = Field(default=0, ge=0, description="layers of a MoE model with a dense MLP")
    sliding_window: int | None = Field(default=None, gt=0)
    attention_bias: bool = False
    gated_mlp: bool = True
    hf_config: dict[str, Any] = Field(default_factory=dict, repr=False)

    @model_validator(mode="after")
    def _check_consistency(self) -> ModelSpec:
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError(
                f"num_kv_heads {self.num_kv_heads} must divide num_attention_heads {self.num_attention_heads}"
            )
        if (self.architecture == "moe") != (self.num_experts > 1):
            raise ValueError(f"architecture {self.architecture!r} disagrees with num_experts={self.num_experts}")
        if self.num_experts_per_token > self.num_experts:
            raise ValueError(f"num_experts_per_token {self.num_experts_per_token} > num_experts {self.num_experts}")
        if self.architecture == "moe" and self.moe_intermediate_size is None:
            raise ValueError("a MoE model needs moe_intermediate_size")
        if self.num_dense_layers > self.num_layers:
            raise ValueError(f"num_dense_layers {self.num_dense_layers} > num_layers {self.num_layers}")
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ModelSpec):
            return NotImplemented
        return self.model_dump(exclude={"hf_config"}) == other.model_dump(exclude={"hf_config"})

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.model_dump(exclude={"hf_config"}).items())))

    # ---- construction -------------------------------------------------------------------------------------

    @classmethod
    def from_hf_config(
        cls, config: dict[str, Any], name: str | None = None, *, hf_id: str | None = None, source: str = "config"
    ) -> ModelSpec:
        """Build a spec from a config.json dict (nested ``text_config`` handled; ``_catalog`` block honoured).

        Args:
            config: the parsed config.json.
            name: display name; default from ``_catalog.name``, ``_name_or_path`` or ``architectures[0]``.
            hf_id: Hugging Face repo id; default from ``_catalog.hf_id`` or an ``org/name`` ``_name_or_path``.
            source: how error messages name the config (e.g. its file path).

        Raises:
            InputError: the field names ``source`` and the offending key, the message the fix.
        """
        fields = parse_hf_config(config, source)
        found_name, found_id = default_name(config)
        try:
            return cls(name=name or found_name, hf_id=hf_id or found_id, **fields)
        except ValidationError as e:
            raise InputError(source, config.get("model_type"), f"inconsistent architecture: {e}") from e

    def to_hf_config(self) -> dict[str, Any]:
        """A config.json dict for this model (a deep copy of the raw config when there is one).

        A spec built from fields alone gets a synthesized config: ``LlamaForCausalLM`` (dense),
        ``MistralForCausalLM`` (dense with a sliding window), ``MixtralForCausalLM`` (MoE whose expert width
        equals ``intermediate_size``), ``Qwen3MoeForCausalLM`` (other MoE) or ``Qwen2MoeForCausalLM`` (shared
        experts). ``_name_or_path`` carries ``hf_id`` (or, without one, the config's own value or the name) so the
        round trip keeps it; a published config's ``_name_or_path`` is often an upload-time local path.

        Raises:
            InputError: the fields cannot be expressed by any of those classes (non-gated MLP; shared experts
                with an explicit head_dim or without attention biases).
        """
        config = copy.deepcopy(self.hf_config) if self.hf_config else synthesize_hf_config(self)
        if self.hf_id:
            config["_name_or_path"] = self.hf_id
        else:
            config.setdefault("_name_or_path", self.name)
        return config

    # ---- parameter counts ---------------------------------------------------------------------------------

    @property
    def attention_params_per_layer(self) -> int:
        """q, k, v, o projection weights (and q/k/v biases when ``attention_bias``) of one layer."""
        h, q_width, kv_width = (
            self.hidden_size,
            self.num_attention_heads * self.head_dim,
            self.num_kv_heads * self.head_dim,
        )
        bias = q_width + 2 * kv_width if self.attention_bias else 0
        return 2 * h * q_width + 2 * h * kv_width + bias

    def _mlp_params(self, width: int) -> int:
        return (3 if self.gated_mlp else 2) * self.hidden_size * width

    @property
    def expert_params(self) -> int:
        """Weights of one expert (0 for a dense model)."""
        return self._mlp_params(self.moe_intermediate_size) if self.moe_intermediate_size else 0

    @property
    def num_moe_layers(self) -> int:
        """Layers whose MLP is a mixture of experts."""
        return self.num_layers - self.num_dense_layers if self.architecture == "moe" else 0

    def _layer_params(self, experts_counted: int) -> int:
        norms = 2 * self.hidden_size
        dense_layer = self.attention_params_per_layer + self._mlp_params(self.intermediate_size) + norms
        moe_layer = (
            self.attention_params_per_layer
            + (experts_counted + self.num_shared_experts) * self.expert_params
            + self.hidden_size * self.num_experts
            + norms
        )
        dense_layers = self.num_layers - self.num_moe_layers
        return dense_layers * dense_layer + self.num_moe_layers * moe_layer

    @property
    def embedding_params(self) -> int:
        """Input embedding table, ``vocab_size * hidden_size``."""
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        """Output projection; 0 when tied to the embedding."""
        return 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size

    @property
    def vision_params(self) -> int:
        """Vision-encoder parameters from ``hf_config['vision_config']`` (approximate; 0 for text-only)."""
        return vision_params(self.hf_config, self.hidden_size)

    @property
    def total_params(self) -> int:
        """Every weight that is loaded: text model plus vision encoder."""
        text = self.embedding_params + self.lm_head_params + self.hidden_size + self._layer_params(self.num_experts)
        return text + self.vision_params

    @property
    def active_params(self) -> int:
        """Weights one text token touches: embeddings, lm_head, attention, the ``k`` routed + shared experts."""
        return (
            self.embedding_params
            + self.lm_head_params
            + self.hidden_size
            + self._layer_params(self.num_experts_per_token)
        )

    @property
    def non_embedding_params(self) -> int:
        """Text-model parameters without the embedding and lm_head (Qwen's 'non-embedding' count)."""
        return self.hidden_size + self._layer_params(self.num_experts)

    @property
    def total_params_b(self) -> float:
        """:attr:`total_params` in billions."""
        return self.total_params / 1e9

    @property
    def active_params_b(self) -> float:
        """:attr:`active_params` in billions."""
        return self.active_params / 1e9

    # ---- memory -------------------------------------------------------------------------------------------

    def weight_bytes(self, dtype: str = "auto") -> int:
        """Bytes of all weights (:attr:`total_params`) stored in ``dtype``.

        Args:
            dtype: ``bf16``, ``fp16``, ``fp32``, ``fp8``, ``int8``, ``mxfp4``, ``fp4`` (uniform over every weight),
                or ``auto``: the checkpoint as published, i.e. ``quantization_config.quant_method`` ``mxfp4``
                puts the MoE experts in mxfp4 and the rest in bf16 (gpt-oss), ``fp8`` puts everything in one
                byte, else ``torch_dtype`` (bf16 when absent).

        Raises:
            InputError: unknown dtype.
        """
        key = _DTYPE_SYNONYMS.get(dtype.strip().lower(), dtype.strip().lower())
        if key == "auto":
            quant = self.hf_config.get("quantization_config")
            method = str(quant.get("quant_method", "")).lower() if isinstance(quant, dict) else ""
            if method == "mxfp4":
                experts = self.num_moe_layers * self.num_experts * self.expert_params
                rest = self.total_params - experts
                return int(experts * WEIGHT_BYTES_PER_PARAM["mxfp4"] + rest * WEIGHT_BYTES_PER_PARAM["bf16"])
            if method == "fp8":
                key = "fp8"
            else:
                torch_dtype = str(text_view(self.hf_config).get("torch_dtype") or "bfloat16").lower()
                key = _DTYPE_SYNONYMS.get(torch_dtype, torch_dtype)
                if key not in WEIGHT_BYTES_PER_PARAM:
                    logger.warning("unknown torch_dtype %r in %s; assuming bf16", torch_dtype, self.name)
                    key = "bf16"
        if key not in WEIGHT_BYTES_PER_PARAM:
            raise InputError("dtype", dtype, f"use one of auto, {', '.join(WEIGHT_BYTES_PER_PARAM)}")
        return int(self.total_params * WEIGHT_BYTES_PER_PARAM[key])

    @staticmethod
    def _kv_element_bytes(kv_dtype: str) -> int:
        key = kv_dtype.strip().lower()
        if key not in KV_BYTES_PER_ELEMENT:
            raise InputError("kv_cache_dtype", kv_dtype, f"use one of {', '.join(KV_BYTES_PER_ELEMENT)}")
        return KV_BYTES_PER_ELEMENT[key]

    def kv_cache_bytes_per_token(self, kv_dtype: str = "auto") -> int:
        """KV-cache bytes one token adds across all layers: ``2 * layers * kv_heads * head_dim * bytes``.

        An upper bound for sliding-window models (it treats every layer as full attention); use
        :meth:`kv_cache_bytes` for a sequence of a given length.

        Raises:
            InputError: ``kv_dtype`` not one of :data:`KV_BYTES_PER_ELEMENT`.
        """
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * self._kv_element_bytes(kv_dtype)

    @property
    def num_sliding_layers(self) -> int:
        """Layers attending only within ``sliding_window`` tokens (from ``layer_types``/Gemma's pattern)."""
        return sliding_layer_count(text_view(self.hf_config), self.num_layers, self.sliding_window)

    def _attended_tokens(self, context_len: int) -> int:
        """Sum over layers of how many tokens each layer keeps/attends to for ``context_len`` tokens."""
        sliding = self.num_sliding_layers
        window = min(context_len, self.sliding_window) if self.sliding_window else context_len
        return (self.num_layers - sliding) * context_len + sliding * window

    def kv_cache_bytes(self, context_len: int, kv_dtype: str = "auto") -> int:
        """KV-cache bytes of one sequence of ``context_len`` tokens; sliding-window layers keep only the window.

        Raises:
            InputError: negative ``context_len`` or unknown ``kv_dtype``.
        """
        if context_len < 0:
            raise InputError("context_len", context_len, "must be >= 0 tokens")
        per_layer_token = 2 * self.num_kv_heads * self.head_dim * self._kv_element_bytes(kv_dtype)
        return self._attended_tokens(context_len) * per_layer_token

    # ---- compute ------------------------------------------------------------------------------------------

    @property
    def flops_per_token(self) -> int:
        """Matmul FLOPs of one token through the weights, ``2 * (active_params - input embedding)``.

        The lm_head matmul is included even when tied. Attention over the context is separate:
        :meth:`attention_flops_per_token`.
        """
        lookup = 0 if self.tie_word_embeddings else self.embedding_params
        return 2 * (self.active_params - lookup)

    def attention_flops_per_token(self, context_len: int) -> int:
        """FLOPs of one token attending to ``context_len`` tokens: ``4 * heads * head_dim * ctx`` per layer.

        ``QK^T`` and ``softmax(.)V`` are ``2 * heads * head_dim * ctx`` each. Sliding-window layers attend to at
        most ``sliding_window`` tokens, so for models without one this is exactly
        ``4 * layers * heads * head_dim * context_len``.

        Raises:
            InputError: negative ``context_len``.
        """
        if context_len < 0:
            raise InputError("context_len", context_len, "must be >= 0 tokens")
        return 4 * self.num_attention_heads * self.head_dim * self._attended_tokens(context_len)


def load_config_json(path: str | Path, name: str | None = None) -> ModelSpec:
    """Load a ModelSpec from a config.json file, or from a folder that holds one.

    Args:
        path: the file, or its folder.
        name: display name; default the folder's name.

    Raises:
        InputError: the file is missing or unreadable, not JSON, not an object, or lacks/mangles a key;
            the field names the file (and the key), the message says what to fix.
    """
    file = Path(path).expanduser()
    if file.is_dir():
        file = file / "config.json"
    if not file.is_file():
        raise InputError(
            str(file), str(path), "no such file; give a Hugging Face config.json or a folder containing one"
        )
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(str(file), str(path), f"cannot read the file ({e}); check permissions and encoding") from e
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(
            str(file), f"line {e.lineno} column {e.colno}", f"not valid JSON ({e.msg}); fix the file"
        ) from e
    if not isinstance(config, dict):
        raise InputError(str(file), type(config).__name__, "a config.json must hold a JSON object")
    default = file.parent.name or None
    found_name, _ = default_name(config)
    has_own_name = "_catalog" in config or "_name_or_path" in config
    return ModelSpec.from_hf_config(config, name=name or (found_name if has_own_name else default), source=str(file))
