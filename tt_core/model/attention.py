"""Training-time attention and dropout: torch's kernels, or on the CPU a faster path.

Training TT applies dropout to the attention weights (the original's attn_pdrop), so
`scaled_dot_product_attention` cannot use its fused CPU kernel and falls back to
materialising [rows, t, t] tensors, and `torch.bernoulli_` draws each dropout decision
separately (about 11 ns per element on an AVX2 core). On a walker2d-size model those two
take more than half of a training step on the CPU.

The CPU path computes the same function with fewer passes over memory:

- `keep_mask` draws 64-bit random words and splits each into two 32-bit uniforms, so an
  element is dropped with probability round(p * 2^32) / 2^32 (p to within 2^-33; torch's
  own float draw resolves 2^-24). Same distribution, a different random stream.
- `DropoutAttention` walks the rows in cache-sized chunks: scores, masked softmax,
  dropout and the weighted sum of one chunk stay in cache, and its backward reuses the
  saved weights (see the derivation there) instead of autograd's generic graph. The
  large weight buffers are reused from step to step (`_Workspace`).

Everything else (CUDA, evaluation, p = 0, code under torch.compile, which cannot trace
the chunk loop) uses torch's own kernels. Tests pin both paths to the written-out formula.
"""

from __future__ import annotations

import math
import threading

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

# Bytes of one chunk's [rows, t, t] score block: a few MiB keeps it in the L2/L3 cache.
CHUNK_BYTES = 4 << 20


def _fast_path(x: torch.Tensor, p: float, training: bool) -> bool:
    return training and p > 0 and x.device.type == "cpu" and not torch.compiler.is_compiling()


def keep_mask(shape: tuple[int, ...], p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean mask, each element False (dropped) with probability p, independently;
    drawn from torch's default generator for `device` (so torch.manual_seed replays it)."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    n = math.prod(shape)
    words = torch.empty((n + 1) // 2, dtype=torch.int64, device=device).random_(-(2**63), None)
    threshold = min(round(p * 2**32), 2**32 - 1) - 2**31  # P(uniform int32 < threshold) = p
    return torch.ge(words.view(torch.int32)[:n].view(shape), threshold)


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        keep = keep_mask(x.shape, p, x.device)
        ctx.save_for_backward(keep)
        ctx.scale = 1 / (1 - p)
        return torch.mul(x, keep).mul_(ctx.scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return torch.mul(grad, keep).mul_(ctx.scale), None


class Dropout(nn.Dropout):
    """nn.Dropout (same name, same state), drawing its masks with `keep_mask` on the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _fast_path(x, self.p, self.training):
            return _Dropout.apply(x, self.p)
        return super().forward(x)


class _Workspace:
    """The [rows, t, t] weight buffers of `DropoutAttention`, kept from one step to the
    next. A fresh tensor that large is mmapped by the C allocator and page-faulted in at
    every step, which took ~40 % of the attention forward here. A buffer is taken by a
    forward and given back by its backward; at most MAX_BYTES are kept."""

    MAX_BYTES = 2 << 30

    def __init__(self) -> None:
        self._free: dict[tuple, list[torch.Tensor]] = {}
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        with self._lock:
            free = self._free.get((shape, like.dtype, like.device))
            if free:
                return free.pop()
        return like.new_empty(shape)

    def give(self, *tensors: torch.Tensor) -> None:
        """Keep `tensors` for the next take; the shapes given back longest ago are
        dropped first when more than MAX_BYTES would be held."""
        with self._lock:
            for t in tensors:
                key = (tuple(t.shape), t.dtype, t.device)
                self._free[key] = self._free.pop(key, []) + [t]  # newest shape last
            held = sum(t.nbytes for free in self._free.values() for t in free)
            while held > self.MAX_BYTES:
                oldest = next(iter(self._free))
                held -= sum(t.nbytes for t in self._free.pop(oldest))


_WORKSPACE = _Workspace()


class DropoutAttention(torch.autograd.Function):
    """y = dropout_p(softmax(q k^T / sqrt(d) + bias)) v for q, k, v [R, t, d] and an
    additive bias [t, t] (0 or -inf) that is causal (every key after its query hidden)
    and leaves no row empty; in the dtype of q (autocast off inside).

    The rows go in chunks that keep their scores in cache; within a chunk the queries go
    in QUERY_BLOCKS blocks, and block [a, b) scores only keys [0, b): the keys after it
    are hidden by causality, which skips 3/8 of the work at 4 blocks. A block's weights
    live in a buffer of their own, [R, b - a, b].

    Backward, with A the softmax weights, K the keep mask, Ad = A * K and dY the output
    gradient scaled by 1/(1-p): dV = Ad^T dY; dAd = dY V^T; the softmax gradient
    A * (dA - rowsum(A * dA)) with dA = K * dAd is Ad * dAd - A * rowsum(Ad * dAd), since
    A * K * dAd = Ad * dAd. So only A and Ad are kept (K is folded into Ad). They go back
    to the workspace after the backward, so a graph can be backpropagated once (no
    retain_graph)."""

    @staticmethod
    def forward(ctx, q, k, v, bias, p: float):
        R, t, d = q.shape
        scale = 1 / math.sqrt(d)
        chunk = max(1, CHUNK_BYTES // (t * t * q.element_size()))
        ctx.blocks = blocks = query_blocks(t)
        weights = [_WORKSPACE.take((R, b - a, b), q) for a, b in blocks]
        dropped = [_WORKSPACE.take((R, b - a, b), q) for a, b in blocks]
        y = q.new_empty(R, t, d)
        with torch.autocast(q.device.type, enabled=False):
            for rows in _chunks(R, chunk):
                for (a, b), w, wd in zip(blocks, weights, dropped):
                    s = torch.baddbmm(bias[a:b, :b], q[rows, a:b], k[rows, :b].transpose(1, 2), alpha=scale)
                    torch.ops.aten._softmax.out(s, -1, False, out=w[rows])
                    torch.mul(w[rows], keep_mask(s.shape, p, q.device), out=wd[rows])
                    y[rows, a:b] = torch.bmm(wd[rows], v[rows, :b])
        ctx.save_for_backward(q, k, v, *weights, *dropped)
        ctx.scale, ctx.keep_scale, ctx.chunk, ctx.released = scale, 1 / (1 - p), chunk, False
        return y.mul_(ctx.keep_scale)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        if ctx.released:
            raise RuntimeError(
                "DropoutAttention was backpropagated already: retain_graph and create_graph are not supported"
            )
        q, k, v, *saved = ctx.saved_tensors
        R, t, _ = q.shape
        blocks = ctx.blocks
        weights, dropped = saved[: len(blocks)], saved[len(blocks) :]
        dy = dy * ctx.keep_scale
        dq, dk, dv = torch.empty_like(q), torch.zeros_like(k), torch.zeros_like(v)
        with torch.autocast(q.device.type, enabled=False):
            for rows in _chunks(R, ctx.chunk):
                for (a, b), w, wd in zip(blocks, weights, dropped):
                    dy_block = dy[rows, a:b]
                    dv[rows, :b] += torch.bmm(wd[rows].transpose(1, 2), dy_block)
                    ds = torch.bmm(dy_block, v[rows, :b].transpose(1, 2))
                    ds.mul_(wd[rows])  # Ad * dAd
                    ds.addcmul_(w[rows], ds.sum(-1, keepdim=True), value=-1)
                    dq[rows, a:b] = torch.bmm(ds, k[rows, :b])
                    dk[rows, :b] += torch.bmm(ds.transpose(1, 2), q[rows, a:b])
        _WORKSPACE.give(*weights, *dropped)
        ctx.released = True
        return dq.mul_(ctx.scale), dk.mul_(ctx.scale), dv, None, None


QUERY_BLOCKS = 4


def query_blocks(t: int) -> list[tuple[int, int]]:
    """QUERY_BLOCKS spans [a, b) of query positions covering [0, t)."""
    size = -(-t // QUERY_BLOCKS)
    return [(a, min(t, a + size)) for a in range(0, t, size)]


def _chunks(total: int, size: int):
    return (slice(start, min(total, start + size)) for start in range(0, total, size))


def causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, p: float, training: bool
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d), masked) with dropout p on the weights (training only),
    times v. q, k, v: [B, H, t, d]; mask [t, t], True = attend, causal (no query sees a
    later key: the CPU path skips those keys)."""
    if not _fast_path(q, p, training):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p if training else 0.0)
    if mask.triu(1).any():  # checked here only: on the CPU it costs no device sync
        raise ValueError("causal_attention needs a causal mask (True above the diagonal)")
    B, H, t, d = q.shape
    # at least fp32 inside, even under bf16 autocast: the softmax and its backward round less
    wide = torch.promote_types(q.dtype, torch.float32)
    bias = torch.zeros(t, t, dtype=wide, device=q.device).masked_fill_(~mask, float("-inf"))
    rows = [x.reshape(B * H, t, d).to(wide) for x in (q, k, v)]
    return DropoutAttention.apply(*rows, bias, p).view(B, H, t, d).to(q.dtype)
