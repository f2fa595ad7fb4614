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
  saved weights (see the derivation there) instead of autograd's generic graph.

Everything else (CUDA, evaluation, p = 0, code under torch.compile, which cannot trace
the chunk loop) uses torch's own kernels. Tests pin both paths to the written-out formula.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn import functional as F

# Bytes of one chunk's [rows, t, t] score block: a few MiB keeps it in the L2/L3 cache.
CHUNK_BYTES = 4 << 20


def _fast_path(x: torch.Tensor, p: float, training: bool) -> bool:
    return training and p > 0 and x.device.type == "cpu" and not torch.compiler.is_compiling()


def keep_mask(shape: tuple[int, ...], p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean mask, each element False (dropped) with probability p, independently;
    drawn from torch's default generator for `device` (so torch.manual_seed replays it)."""
    n = math.prod(shape)
    words = torch.empty((n + 1) // 2, dtype=torch.int64, device=device).random_(-(2**63), None)
    threshold = round(p * 2**32) - 2**31  # P(uniform int32 < threshold) = p
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


class DropoutAttention(torch.autograd.Function):
    """y = dropout_p(softmax(q k^T / sqrt(d) + bias)) v for q, k, v [R, t, d] and an
    additive bias [t, t] (0 or -inf; no row fully masked), in chunks of rows.

    Backward, with A the softmax weights, K the keep mask, Ad = A * K and dY the output
    gradient scaled by 1/(1-p): dV = Ad^T dY; dAd = dY V^T; the softmax gradient
    A * (dA - rowsum(A * dA)) with dA = K * dAd is Ad * dAd - A * rowsum(Ad * dAd), since
    A * K * dAd = Ad * dAd. So only A and Ad are kept (K is folded into Ad)."""

    @staticmethod
    def forward(ctx, q, k, v, bias, p: float):
        R, t, d = q.shape
        scale = 1 / math.sqrt(d)
        chunk = max(1, CHUNK_BYTES // (t * t * q.element_size()))
        weights, dropped = q.new_empty(R, t, t), q.new_empty(R, t, t)
        y = q.new_empty(R, t, d)
        scores = q.new_empty(min(chunk, R), t, t)
        with torch.autocast(q.device.type, enabled=False):
            for rows in _chunks(R, chunk):
                s = scores[: rows.stop - rows.start]
                torch.baddbmm(bias, q[rows], k[rows].transpose(1, 2), alpha=scale, out=s)
                torch.ops.aten._softmax.out(s, -1, False, out=weights[rows])
                torch.mul(weights[rows], keep_mask(s.shape, p, q.device), out=dropped[rows])
                torch.bmm(dropped[rows], v[rows], out=y[rows])
        ctx.save_for_backward(q, k, v, weights, dropped)
        ctx.scale, ctx.keep_scale, ctx.chunk = scale, 1 / (1 - p), chunk
        return y.mul_(ctx.keep_scale)

    @staticmethod
    def backward(ctx, dy):
        q, k, v, weights, dropped = ctx.saved_tensors
        R, t, _ = q.shape
        dy = dy * ctx.keep_scale
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        scratch = q.new_empty(min(ctx.chunk, R), t, t)
        with torch.autocast(q.device.type, enabled=False):
            for rows in _chunks(R, ctx.chunk):
                torch.bmm(dropped[rows].transpose(1, 2), dy[rows], out=dv[rows])
                ds = torch.bmm(dy[rows], v[rows].transpose(1, 2), out=scratch[: rows.stop - rows.start])
                ds.mul_(dropped[rows])  # Ad * dAd
                ds.addcmul_(weights[rows], ds.sum(-1, keepdim=True), value=-1)
                torch.bmm(ds, k[rows], out=dq[rows])
                torch.bmm(ds.transpose(1, 2), q[rows], out=dk[rows])
        return dq.mul_(ctx.scale), dk.mul_(ctx.scale), dv, None, None


def _chunks(total: int, size: int):
    return (slice(start, min(total, start + size)) for start in range(0, total, size))


def causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, p: float, training: bool
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d), masked) with dropout p on the weights (training only),
    times v. q, k, v: [B, H, t, d]; mask [t, t], True = attend."""
    if not _fast_path(q, p, training):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p if training else 0.0)
    B, H, t, d = q.shape
    bias = torch.zeros(t, t, dtype=q.dtype, device=q.device).masked_fill_(~mask, float("-inf"))
    rows = [x.reshape(B * H, t, d) for x in (q, k, v)]
    return DropoutAttention.apply(*rows, bias, p).view(B, H, t, d)
