"""The "batched" expert kernel: sorted (token, expert) rows padded into tiles of neighbouring
experts, each tile one `torch.bmm` per projection.

On CPU, MKL's batched GEMM runs each expert's small matmul on one core, about twice as fast as
a loop of two-thread matmuls. Within a tile every expert's rows are padded to the tile's
largest count with rows of token 0 and weight 0, which add exactly nothing; skewed loads get
smaller tiles, down to one expert each, so padding stays under MAX_PADDING. Tiles hold about
TILE_ELEMENTS activations, so inference keeps a tile's rows in cache; it also reuses per-thread
buffers, as fresh multi-megabyte tensors on every call cost page faults worth ~10% of a forward.
Training runs all tiles as one autograd node whose backward writes each tile's weight
gradients straight into the full gradient tensors and recomputes the row gather.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import torch
from torch.nn import functional as F

TILE_ELEMENTS = 1 << 21  # padded rows x hidden per tile (8 MB of fp32 activations)
# padded rows / real rows a layout may reach before its tiles are halved: past ~1.3 the padding
# costs more than smaller batches (measured: a per-expert loop runs the rows ~1.3x slower)
MAX_PADDING = 1.3


class _Workspace(threading.local):
    """Grow-only scratch buffers, one set per thread."""

    def __init__(self) -> None:
        self.buffers: dict[tuple[str, torch.device, torch.dtype], torch.Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        key, numel = (name, like.device, like.dtype), math.prod(shape)
        buffer = self.buffers.get(key)
        if buffer is None or buffer.numel() < numel:
            buffer = self.buffers[key] = torch.empty(numel, device=like.device, dtype=like.dtype)
        return buffer[:numel].view(shape)


_WORKSPACE = _Workspace()


@dataclass
class Tiles:
    """Where each padded row comes from: `tokens` and mixing `weights` (0 on padding rows),
    laid out tile after tile; tile i holds experts [i * per_tile, ...) with rows[i] rows each."""

    per_tile: int
    rows: list[int]
    spans: list[int]  # padded rows per tile
    tokens: torch.Tensor
    weights: torch.Tensor

    @classmethod
    def build(cls, experts, tokens, weights, counts, hidden: int) -> Tiles:
        """From rows sorted by expert: `experts`, `tokens`, `weights` per row, `counts` per
        expert."""
        n_experts = counts.numel()
        mean_rows = max(1, math.ceil(tokens.numel() / n_experts))
        per_tile = max(1, min(n_experts, TILE_ELEMENTS // (mean_rows * hidden)))
        threads = torch.get_num_threads()
        if per_tile > threads:  # bmm deals a tile's experts out to the threads: fill them all
            per_tile -= per_tile % threads
        while True:  # halve the tiles until the padding is affordable (one expert: none)
            rows, sizes = cls._layout(counts, per_tile)
            total = int(sizes.sum())
            if per_tile == 1 or total <= MAX_PADDING * tokens.numel():
                break
            per_tile = (per_tile + 1) // 2
        bases = sizes.cumsum(0) - sizes
        starts = counts.cumsum(0) - counts
        rank = torch.arange(experts.numel(), device=experts.device) - starts[experts]
        tile = experts // per_tile
        slot = bases[tile] + (experts % per_tile) * rows[tile] + rank
        return cls(
            per_tile,
            rows.tolist(),
            sizes.tolist(),
            tokens.new_zeros(total).index_copy_(0, slot, tokens),
            weights.new_zeros(total).index_copy(0, slot, weights),
        )

    @staticmethod
    def _layout(counts: torch.Tensor, per_tile: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows per expert and padded rows of each tile of `per_tile` experts."""
        n_experts = counts.numel()
        n_tiles = math.ceil(n_experts / per_tile)
        rows = F.pad(counts, (0, n_tiles * per_tile - n_experts)).view(n_tiles, per_tile).amax(1)
        first = per_tile * torch.arange(n_tiles, device=counts.device)
        return rows, rows * (n_experts - first).clamp(max=per_tile)

    def each(self):
        """(first expert, experts, rows per expert, row slice) of every non-empty tile."""
        start = 0
        for i, (m, span) in enumerate(zip(self.rows, self.spans, strict=True)):
            if m:
                yield i * self.per_tile, span // m, m, slice(start, start + span)
            start += span


def _gather(x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """x[tokens] in the thread's reused buffer."""
    return torch.index_select(x, 0, tokens, out=_WORKSPACE.take("x", (len(tokens), x.shape[-1]), x))


def _tile_forward(xs, weights, gate_up, down, h, act, ys, keep_h: bool) -> torch.Tensor:
    """For a tile of n experts x m rows: h = [gate | up] = xs @ gate_up^T, act = silu(gate) * up
    * weight, ys = act @ down^T, written into the given (n, m, .) buffers; unless `keep_h`, the
    gate half of h is overwritten."""
    torch.bmm(xs, gate_up.transpose(1, 2), out=h)
    gate, up = h.chunk(2, dim=-1)
    torch.mul(F.silu(gate, inplace=not keep_h), up, out=act)
    act.mul_(weights.unsqueeze(-1).to(act.dtype))
    return torch.bmm(act, down.transpose(1, 2), out=ys)


def run_tiles(x, tiles: Tiles, gate_up, down, out) -> torch.Tensor:
    """out[token] += weight * expert(x[token]) over every row of `tiles`."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, tiles.weights, gate_up, down)):
        ys = _TiledExperts.apply(x, tiles.weights, gate_up, down, tiles)
        return out.index_add_(0, tiles.tokens, ys)
    hidden, inner = x.shape[-1], down.shape[-1]
    for first, n, m, rows in tiles.each():
        experts, tokens = slice(first, first + n), tiles.tokens[rows]
        ys = _tile_forward(
            _gather(x, tokens).view(n, m, hidden),
            tiles.weights[rows].view(n, m),
            gate_up[experts],
            down[experts],
            _WORKSPACE.take("h", (n, m, 2 * inner), x),
            _WORKSPACE.take("a", (n, m, inner), x),
            _WORKSPACE.take("y", (n, m, hidden), x),
            keep_h=False,
        )
        out.index_add_(0, tokens, ys.view(n * m, hidden))
    return out


class _TiledExperts(torch.autograd.Function):
    """ys (rows, H) = weight * expert(x[token]) for every padded row, as one autograd node."""

    @staticmethod
    def forward(ctx, x, weights, gate_up, down, tiles: Tiles):
        hidden, inner = x.shape[-1], down.shape[-1]
        total = tiles.tokens.numel()
        hs = x.new_empty(total, 2 * inner)  # saved: the backward needs gate and up
        ys = x.new_empty(total, hidden)
        for first, n, m, rows in tiles.each():
            experts = slice(first, first + n)
            _tile_forward(
                _gather(x, tiles.tokens[rows]).view(n, m, hidden),
                weights[rows].view(n, m),
                gate_up[experts],
                down[experts],
                hs[rows].view(n, m, 2 * inner),
                _WORKSPACE.take("a", (n, m, inner), x),
                ys[rows].view(n, m, hidden),
                keep_h=True,
            )
        ctx.save_for_backward(x, weights, gate_up, down, hs)
        ctx.tiles = tiles
        return ys

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_ys):
        x, weights, gate_up, down, hs = ctx.saved_tensors
        tiles: Tiles = ctx.tiles
        hidden, inner = x.shape[-1], down.shape[-1]
        grad_ys = grad_ys.contiguous()
        grad_gate_up = torch.zeros_like(gate_up)  # experts with no rows get zeros
        grad_down = torch.zeros_like(down)
        grad_weights = torch.zeros_like(weights)
        grad_rows = x.new_empty(tiles.tokens.numel(), hidden) if ctx.needs_input_grad[0] else None
        for first, n, m, rows in tiles.each():
            experts = slice(first, first + n)
            w = weights[rows].view(n, m, 1).to(x.dtype)
            gate, up = hs[rows].view(n, m, 2 * inner).chunk(2, dim=-1)
            silu = F.silu(gate)
            act = silu * up  # unweighted
            dy = grad_ys[rows].view(n, m, hidden)
            torch.bmm(dy.transpose(1, 2), act * w, out=grad_down[experts])
            d_act = torch.bmm(dy, down[experts])  # (n, m, I)
            grad_weights[rows] = (d_act * act).sum(-1).view(-1).to(weights.dtype)
            d_act.mul_(w)
            d_h = torch.cat([torch.ops.aten.silu_backward(d_act * up, gate), d_act * silu], dim=-1)
            xs = _gather(x, tiles.tokens[rows]).view(n, m, hidden)
            torch.bmm(d_h.transpose(1, 2), xs, out=grad_gate_up[experts])
            if grad_rows is not None:
                torch.bmm(d_h, gate_up[experts], out=grad_rows[rows].view(n, m, hidden))
        grad_x = None
        if grad_rows is not None:
            grad_x = torch.zeros_like(x).index_add_(0, tiles.tokens, grad_rows)
        return grad_x, grad_weights, grad_gate_up, grad_down, None
