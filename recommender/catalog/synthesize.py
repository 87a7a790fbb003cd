"""Write a config.json for a :class:`~recommender.catalog.architecture.ModelSpec` built from fields alone.

The result is a config that ``transformers`` and vLLM accept (e.g. with ``--load-format dummy``) and that
:func:`~recommender.catalog.hf_config.parse_hf_config` reads back to the same fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recommender.errors import InputError

if TYPE_CHECKING:
    from recommender.catalog.architecture import ModelSpec

_COMMON: dict[str, Any] = {
    "hidden_act": "silu",
    "rms_norm_eps": 1e-05,
    "rope_theta": 1000000.0,
    "initializer_range": 0.02,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def _base(spec: ModelSpec) -> dict[str, Any]:
    return {
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_kv_heads,
        "head_dim": spec.head_dim,
        "vocab_size": spec.vocab_size,
        "max_position_embeddings": spec.max_position_embeddings,
        "tie_word_embeddings": spec.tie_word_embeddings,
        "attention_bias": spec.attention_bias,
        **_COMMON,
    }


def synthesize_hf_config(spec: ModelSpec) -> dict[str, Any]:
    """A config.json dict for ``spec`` (see :meth:`ModelSpec.to_hf_config` for which class is chosen).

    Raises:
        InputError: ``spec`` has a shape none of the chosen classes can express.
    """
    if not spec.gated_mlp:
        raise InputError(
            "gated_mlp", False, "only gated (SwiGLU) MLPs can be written as a config.json; use a real config.json"
        )
    config = _base(spec)
    if spec.architecture == "dense":
        if spec.sliding_window is None:
            config.update({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "mlp_bias": False})
        else:
            config.pop("attention_bias")
            if spec.attention_bias:
                raise InputError(
                    "attention_bias", True, "a sliding-window dense model is written as Mistral, which has no biases"
                )
            config.update(
                {
                    "architectures": ["MistralForCausalLM"],
                    "model_type": "mistral",
                    "sliding_window": spec.sliding_window,
                }
            )
        return config

    assert spec.moe_intermediate_size is not None  # guaranteed by ModelSpec validation
    if spec.num_shared_experts:
        if spec.head_dim * spec.num_attention_heads != spec.hidden_size or not spec.attention_bias:
            raise InputError(
                "num_shared_experts",
                spec.num_shared_experts,
                "shared experts are written as Qwen2MoeForCausalLM, which needs head_dim * num_attention_heads == "
                "hidden_size and attention_bias=True; build the spec from a real config.json instead",
            )
        config.pop("head_dim")
        config.pop("attention_bias")
        config.update(
            {
                "architectures": ["Qwen2MoeForCausalLM"],
                "model_type": "qwen2_moe",
                "moe_intermediate_size": spec.moe_intermediate_size,
                "shared_expert_intermediate_size": spec.num_shared_experts * spec.moe_intermediate_size,
                "num_experts": spec.num_experts,
                "num_experts_per_tok": spec.num_experts_per_token,
                "decoder_sparse_step": 1,
                "mlp_only_layers": list(range(spec.num_dense_layers)),
                "norm_topk_prob": False,
                "use_sliding_window": spec.sliding_window is not None,
                "sliding_window": spec.sliding_window,
            }
        )
        return config

    mixtral_like = spec.moe_intermediate_size == spec.intermediate_size and spec.num_dense_layers == 0
    if mixtral_like and not spec.attention_bias:
        config.pop("attention_bias")
        config.update(
            {
                "architectures": ["MixtralForCausalLM"],
                "model_type": "mixtral",
                "num_local_experts": spec.num_experts,
                "num_experts_per_tok": spec.num_experts_per_token,
                "sliding_window": spec.sliding_window,
            }
        )
        return config
    config.update(
        {
            "architectures": ["Qwen3MoeForCausalLM"],
            "model_type": "qwen3_moe",
            "moe_intermediate_size": spec.moe_intermediate_size,
            "num_experts": spec.num_experts,
            "num_experts_per_tok": spec.num_experts_per_token,
            "decoder_sparse_step": 1,
            "mlp_only_layers": list(range(spec.num_dense_layers)),
            "norm_topk_prob": True,
            "use_sliding_window": spec.sliding_window is not None,
            "sliding_window": spec.sliding_window,
        }
    )
    return config
