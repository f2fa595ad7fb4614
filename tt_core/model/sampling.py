"""Token sampling with the original TT semantics (trajectory/search/sampling.py), in one place.

The original samples a token from the last position's logits as: logits / temperature;
optionally `filter_cdf(logits, cdf)`; optionally `top_k_logits(logits, k)`; softmax;
multinomial. Both planners call `sample_tokens`, so what they draw is defined here once.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch


class EnvStreams:
    """One random stream per env. What env e draws depends only on its own seed and its
    own draws, never on which envs share its batch: an episode plans the same whether
    others finish before it or run in another process of a distributed evaluation.
    Rows of a batch are env-major (each env's rows contiguous, equal counts)."""

    def __init__(self, generators: Sequence[torch.Generator]) -> None:
        self.generators = list(generators)

    @classmethod
    def seeded(cls, seeds: Sequence[int], device: torch.device) -> "EnvStreams":
        return cls([torch.Generator(device=device).manual_seed(int(s)) for s in seeds])

    def subset(self, envs: Sequence[int]) -> "EnvStreams":
        """The streams of `envs` (the same generator objects: draws advance them)."""
        return EnvStreams([self.generators[int(e)] for e in envs])

    def uniform(self, rows: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """[rows, 1] uniforms in [0, 1): rows / len(self) from each env's stream, in order."""
        per, left = divmod(rows, len(self.generators))
        assert left == 0, f"{rows} rows do not split over {len(self.generators)} env streams"
        return torch.cat([torch.rand(per, 1, generator=g, device=device, dtype=dtype) for g in self.generators])


Randomness = Union[torch.Generator, EnvStreams, None]


def _uniform(rows: int, source: Randomness, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(source, EnvStreams):
        return source.uniform(rows, device, dtype)
    return torch.rand(rows, 1, generator=source, device=device, dtype=dtype)


def _cdf_cut(probs_sorted: torch.Tensor, threshold: float) -> torch.Tensor:
    """p [..., 1] of filter_cdf from ascending probabilities: the largest one whose
    cumulative mass is still < threshold, the smallest one when none is."""
    below = probs_sorted.cumsum(dim=-1) < threshold
    # cum is non-decreasing, so `below` is a prefix and its length - 1 is the index of
    # p (the original's argmax(below * bins), 0 when the prefix is empty)
    last = (below.sum(-1, keepdim=True) - 1).clamp_(min=0)
    return probs_sorted.gather(-1, last)


def filter_cdf(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """The original TT `filter_cdf`: drop the low-probability tail holding < `threshold` mass.

    Sort probabilities ascending; p = the largest sorted probability whose cumulative
    mass is still below `threshold` (the smallest probability when none is); every token
    with probability <= p gets logit -1000. With `cdf_act=0.6` the tail that holds up to
    60 % of the mass is dropped, and the smallest token always is.
    """
    probs = logits.softmax(dim=-1)
    probs_sorted, _ = torch.sort(probs, dim=-1)
    return logits.masked_fill(probs <= _cdf_cut(probs_sorted, threshold), -1000.0)


def top_k_logits(logits: torch.Tensor, k: int) -> torch.Tensor:
    """The original `top_k_logits`: logits below the k-th largest become -inf (ties kept)."""
    v = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).values
    return logits.masked_fill(logits < v[..., -1:], -math.inf)


def sample_tokens(
    logits: torch.Tensor, topk: Optional[int], cdf: Optional[float], generator: Randomness
) -> torch.Tensor:
    """logits [R, N] (already / temperature) -> token ids [R].

    The original's distribution (filter_cdf, top-k, softmax), drawn by inverse CDF with
    one uniform per row from `generator`, one torch.Generator or EnvStreams (cheaper than
    multinomial; both planners use it, so they draw the same tokens from the same
    logits). Top-k 1 without a cdf filter
    is argmax: the original keeps exactly tied maxima and draws among them, which float
    logits do not produce in practice.
    """
    R, N = logits.shape
    if topk is not None and topk <= 1 and cdf is None:
        return logits.argmax(-1)
    if cdf is not None and topk is None:
        # filter_cdf's own sort is reused: the kept tokens are the top of the ascending
        # order, drawn with probability p / (kept mass).
        probs = logits.softmax(dim=-1)
        ps, si = torch.sort(probs, dim=-1)
        ps = ps.masked_fill_(ps <= _cdf_cut(ps, cdf), 0.0)
        # A flat row masks every token; the original's softmax over all -1000 is uniform.
        ps = torch.where(ps[:, -1:] > 0, ps, torch.ones_like(ps))
        cum = torch.cumsum(ps, dim=-1)
        u = _uniform(R, generator, logits.device, cum.dtype) * cum[:, -1:]
        j = torch.searchsorted(cum, u, right=True).clamp_(max=N - 1)
        return si.gather(-1, j).squeeze(1)
    if cdf is not None:
        logits = filter_cdf(logits, cdf)
    if topk is not None:
        logits = top_k_logits(logits, topk)
    cum = logits.softmax(dim=-1).cumsum_(-1)
    u = _uniform(R, generator, logits.device, cum.dtype) * cum[:, -1:]
    return torch.searchsorted(cum, u, right=True).clamp_(max=N - 1).squeeze(1)
