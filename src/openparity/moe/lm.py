"""A small causal LM to compare dense and MoE feed-forwards on equal terms: RMSNorm, RoPE,
grouped-query attention, then a SwiGLU FFN or a DeepSeekMoE layer per block. The math follows
Llama / Mixtral / GLM-4-MoE in Hugging Face transformers exactly, so a trained model exports
to those formats (see `openparity.moe.export`). Tokens are UTF-8 bytes: no tokenizer to fetch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from openparity.moe.config import MoEConfig
from openparity.moe.experts import RoutedExperts, SwiGLU
from openparity.moe.layer import MoELayer
from openparity.moe.router import TopKRouter

BYTE_VOCAB = 256


@dataclass(frozen=True)
class LMConfig:
    dim: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 2
    ffn_dim: int = 512  # dense FFN width (dense layers and the dense baseline)
    moe: MoEConfig | None = None
    first_dense_layers: int = 0  # DeepSeek: the first blocks keep a dense FFN
    vocab: int = BYTE_VOCAB
    max_seq: int = 256
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["moe"] = None if self.moe is None else self.moe.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LMConfig:
        moe = data.get("moe")
        return cls(**{**data, "moe": MoEConfig(**moe) if moe else None})


PRESETS = ("dense", "moe-active", "moe-total", "mixtral")


def preset(name: str, *, dim: int = 128, n_layers: int = 4) -> LMConfig:
    """A config by name; every MoE preset has the dense FFN's width F = 4 x dim as reference.

    dense       SwiGLU of width F in every block
    moe-active  DeepSeekMoE, same *active* FFN parameters: 16 routed experts of F/4, top-2,
                + 2 shared (4 x F/4 = F active, 18 x F/4 = 4.5 F total); sigmoid router with
                auxiliary-loss-free balancing and a small sequence-wise loss
    moe-total   the same layout with the dense model's *total* FFN parameters: experts of F/18
    mixtral     Mixtral layout: 8 experts of F/2, softmax top-2, no shared experts (F active)
    """
    base = LMConfig(
        dim=dim,
        n_layers=n_layers,
        n_heads=max(1, dim // 32),
        n_kv_heads=max(1, dim // 64),
        ffn_dim=4 * dim,
    )
    f = base.ffn_dim
    deepseek = MoEConfig(
        hidden=dim,
        expert_dim=f // 4,
        n_routed=16,
        top_k=2,
        n_shared=2,
        router="sigmoid",
        bias_update_speed=1e-2,
        seq_aux_alpha=1e-4,
    )
    configs = {
        "dense": base,
        "moe-active": replace(base, moe=deepseek),
        "moe-total": replace(base, moe=replace(deepseek, expert_dim=max(8, f // 18))),
        "mixtral": replace(base, moe=MoEConfig(hidden=dim, expert_dim=f // 2, n_routed=8, top_k=2)),
    }
    if name not in configs:
        raise ValueError(f"unknown preset {name!r}: {', '.join(PRESETS)}")
    return configs[name]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rope_tables(head_dim: int, length: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Attention(nn.Module):
    def __init__(self, c: LMConfig) -> None:
        super().__init__()
        self.c = c
        self.q_proj = nn.Linear(c.dim, c.n_heads * c.head_dim, bias=False)
        self.k_proj = nn.Linear(c.dim, c.n_kv_heads * c.head_dim, bias=False)
        self.v_proj = nn.Linear(c.dim, c.n_kv_heads * c.head_dim, bias=False)
        self.o_proj = nn.Linear(c.n_heads * c.head_dim, c.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        c = self.c
        q = self.q_proj(x).view(b, t, c.n_heads, c.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, c.n_kv_heads, c.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, c.n_kv_heads, c.head_dim).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, -1))


class Block(nn.Module):
    def __init__(self, c: LMConfig, index: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(c.dim, c.norm_eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c.dim, c.norm_eps)
        dense = c.moe is None or index < c.first_dense_layers
        self.mlp: nn.Module = SwiGLU(c.dim, c.ffn_dim) if dense else MoELayer(c.moe)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class CausalLM(nn.Module):
    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab, config.dim)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.lm_head = nn.Linear(config.dim, config.vocab, bias=False)
        cos, sin = rope_tables(config.head_dim, config.max_seq, config.rope_theta)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.apply(_init)

    @property
    def moe_layers(self) -> list[MoELayer]:
        return [m for m in self.modules() if isinstance(m, MoELayer)]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        if t > self.config.max_seq:
            raise ValueError(f"sequence of {t} tokens exceeds max_seq {self.config.max_seq}")
        x = self.embed_tokens(ids)
        cos, sin = self.cos[:t].to(x.dtype), self.sin[:t].to(x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.lm_head(self.norm(x))

    def loss(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(next-token cross-entropy, balance losses) on a batch of sequences."""
        logits = self(ids[:, :-1])
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        aux = sum((m.aux_loss for m in self.moe_layers), torch.zeros(()))
        return ce, aux

    @torch.no_grad()
    def generate(self, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
        for _ in range(new_tokens):
            logits = self(ids[:, -self.config.max_seq :])
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        return ids


def _init(module: nn.Module) -> None:
    """GPT-2 style N(0, 0.02) for every weight matrix, experts and routers included."""
    if isinstance(module, (nn.Linear, nn.Embedding, TopKRouter)):
        nn.init.normal_(module.weight, std=0.02)
    elif isinstance(module, RoutedExperts):
        nn.init.normal_(module.gate_up_proj, std=0.02)
        nn.init.normal_(module.down_proj, std=0.02)


@dataclass(frozen=True)
class Size:
    """Parameter counts and forward FLOPs per token (matmuls, 2 per multiply-add)."""

    total_params: int
    active_params: int
    flops_per_token: int
    detail: dict[str, int] = field(default_factory=dict)


def model_size(model: CausalLM, seq_len: int | None = None) -> Size:
    c = model.config
    total = sum(p.numel() for p in model.parameters())
    inactive = 0
    for layer in model.moe_layers:
        m = layer.config
        inactive += 3 * m.hidden * m.expert_dim * (m.n_routed - m.top_k)
    active = total - inactive
    seq = seq_len or c.max_seq
    attention_scores = 2 * 2 * c.n_layers * seq // 2 * c.dim  # QK^T and AV, causal half
    embed = c.vocab * c.dim
    flops = 2 * (active - embed) + attention_scores  # the embedding lookup is no matmul
    return Size(total, active, flops, {"embedding": embed, "inactive_experts": inactive})


def perplexity_bits(loss: float) -> float:
    """Bits per byte from a cross-entropy in nats (byte-level models)."""
    return loss / math.log(2)
