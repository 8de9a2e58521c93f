"""Export a trained LM as a Hugging Face checkpoint that `transformers` loads and generates from.

The format follows the model: a dense model is Llama; a softmax-routed MoE without shared
experts is Mixtral; a DeepSeekMoE (sigmoid router with its selection bias, shared experts,
group-limited routing, first dense blocks) is GLM-4-MoE, transformers' DeepSeek-V3 MoE on
standard attention. (DeepseekV3 itself needs multi-head latent attention, which this LM does
not have: exporting to it would change the model.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openparity.errors import OpenparityError
from openparity.moe.lm import CausalLM


class ExportError(OpenparityError):
    """The model cannot be written in the requested format."""


def hf_format(model: CausalLM) -> str:
    moe = model.config.moe
    if moe is None:
        return "llama"
    if moe.router == "softmax" and moe.n_shared == 0 and model.config.first_dense_layers == 0:
        return "mixtral"
    if moe.router == "sigmoid":
        return "glm4_moe"
    raise ExportError(
        "a softmax-routed MoE with shared experts has no transformers format",
        hint="use router sigmoid (GLM-4-MoE / DeepSeek-V3 style) or drop the shared experts",
    )


def hf_config(model: CausalLM) -> Any:
    import transformers

    c, moe = model.config, model.config.moe
    common = {
        "vocab_size": c.vocab,
        "hidden_size": c.dim,
        "intermediate_size": c.ffn_dim,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads,
        "max_position_embeddings": c.max_seq,
        "rms_norm_eps": c.norm_eps,
        "tie_word_embeddings": False,
        "hidden_act": "silu",
        "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},
    }
    kind = hf_format(model)
    if kind == "llama":
        return transformers.LlamaConfig(**common, attention_bias=False, mlp_bias=False)
    if kind == "mixtral":
        return transformers.MixtralConfig(
            **{**common, "intermediate_size": moe.expert_dim},
            num_local_experts=moe.n_routed,
            num_experts_per_tok=moe.top_k,
            router_jitter_noise=0.0,
        )
    common["rope_parameters"] = {**common["rope_parameters"], "partial_rotary_factor": 1.0}
    return transformers.Glm4MoeConfig(
        **common,
        moe_intermediate_size=moe.expert_dim,
        num_experts_per_tok=moe.top_k,
        n_shared_experts=moe.n_shared,
        n_routed_experts=moe.n_routed,
        routed_scaling_factor=moe.routed_scaling,
        n_group=moe.n_groups,
        topk_group=moe.topk_groups,
        first_k_dense_replace=c.first_dense_layers,
        norm_topk_prob=moe.norm_topk,
        attention_bias=False,
        use_qk_norm=False,
    )


def hf_state_dict(model: CausalLM) -> dict[str, Any]:
    """Our parameter names in transformers' naming."""
    renamed = {}
    mixtral = hf_format(model) == "mixtral"
    for name, tensor in model.state_dict().items():
        if name in ("cos", "sin"):
            continue
        if mixtral and name.endswith(".mlp.router.bias"):
            if tensor.any():
                raise ExportError(
                    "Mixtral has no expert-selection bias and this model's is non-zero",
                    hint="train with bias_update_speed 0, or use a sigmoid router (GLM-4-MoE)",
                )
            continue
        name = name.replace(".mlp.router.bias", ".mlp.gate.e_score_correction_bias")
        name = name.replace(".mlp.router.weight", ".mlp.gate.weight")
        name = name.replace(".mlp.shared.", ".mlp.shared_experts.")
        renamed[name if name.startswith("lm_head") else "model." + name] = tensor
    return renamed


def export_hf(model: CausalLM, out: Path) -> Path:
    """Write `out/` (config.json + model.safetensors); returns it."""
    import transformers

    config = hf_config(model)
    hf_model = transformers.AutoModelForCausalLM.from_config(config)
    missing, unexpected = hf_model.load_state_dict(hf_state_dict(model), strict=False)
    if missing or unexpected:
        raise ExportError(
            f"weights do not map onto {type(hf_model).__name__}:"
            f" missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    hf_model.save_pretrained(out)
    return out
