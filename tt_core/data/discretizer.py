"""Per-dimension discretization of transitions into token ids (and back).

Each of the D dimensions has its own N bins given by N+1 non-decreasing boundaries.
A value's bin is the last boundary at or below it, clipped to [0, N-1] -- the original
TT's `QuantileDiscretizer.discretize` (`largest_nonzero_index` of `x >= thresholds`), so
with repeated boundaries a value equal to them lands in the last of their bins and the
zero-width ones are never encoded into. Decoding returns bin centers (the midpoints of
a bin's boundaries, the original's `reconstruct`); `expectation` turns per-bin
probabilities into a value. All three accept numpy arrays or torch tensors and answer
in kind.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch

from tt_core.errors import ConfigError

Array = Union[np.ndarray, torch.Tensor]


def _strictly_increasing(b: np.ndarray) -> np.ndarray:
    """Push repeated boundaries apart so every bin has positive width.

    Quantiles of data with point masses (or a constant dimension) repeat; a
    zero-width bin could never be encoded into and would have no usable center.
    With c_i = b_i - i*delta, out_i = cummax(c)_i + i*delta rises by at least
    delta per step and equals b wherever b already rises by at least delta.
    """
    span = b[:, -1] - b[:, 0]
    scale = np.maximum(np.abs(b).max(axis=1), 1.0)
    delta = np.where(span > 0, span * 1e-6, scale * 1e-6)
    # Keep the step far above float64 resolution at the boundaries' magnitude.
    delta = np.maximum(delta, np.spacing(scale) * 64)[:, None]
    ramp = np.arange(b.shape[1]) * delta
    return np.maximum.accumulate(b - ramp, axis=1) + ramp


def original_quantile_boundaries(x: np.ndarray, num_bins: int) -> np.ndarray:
    """The original TT's quantile thresholds (`utils/discretization.py`): per dimension,
    the sorted values taken every ceil(n / N) rows, plus the maximum. Repeated values
    stay repeated. Returns [D, N+1]; the rule gives fewer than N bins when n is small
    against N (e.g. n = 101, N = 50: 34 bins), which is refused."""
    n = x.shape[0]
    every = -(-n // num_bins)  # ceil(n / N)
    edges = np.concatenate([np.sort(x, axis=0)[::every], x.max(axis=0, keepdims=True)])
    if edges.shape[0] != num_bins + 1:
        raise ConfigError(
            f"dataset.num_bins: {num_bins} quantile bins need more data; the original's rule "
            f"(an edge every ceil({n} / {num_bins}) = {every} sorted values) gives "
            f"{edges.shape[0] - 1} bins for {n} transitions: lower dataset.num_bins or use "
            f"strategy uniform"
        )
    return np.ascontiguousarray(edges.T)


class Discretizer:
    """Per-dimension bins. boundaries: float64 [D, N+1] non-decreasing; centers [D, N]."""

    def __init__(self, boundaries: np.ndarray):
        b = np.asarray(boundaries, dtype=np.float64)
        if b.ndim != 2 or b.shape[1] < 2:
            raise ValueError(f"boundaries must be [D, N+1] with N >= 1, got shape {b.shape}")
        if not np.isfinite(b).all() or not (np.diff(b, axis=1) >= 0).all():
            raise ValueError("boundaries must be finite and non-decreasing per dimension")
        self.boundaries = b
        self.centers = (b[:, :-1] + b[:, 1:]) / 2
        # (device, dtype) -> (inner boundaries, centers) as tensors, made on first use.
        self._torch: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def fit(cls, data: np.ndarray, num_bins: int, strategy: str) -> "Discretizer":
        """Fit bins to `data` [n, D]: "uniform" spans min..max in equal widths (the seed
        project's; a constant dimension gets tiny distinct bins), "quantile" equal mass by
        the original TT's rule (`original_quantile_boundaries`)."""
        x = np.asarray(data, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"data must be a non-empty [n, D] array, got shape {x.shape}")
        if num_bins < 1:
            raise ValueError(f"num_bins must be >= 1, got {num_bins}")
        if not np.isfinite(x).all():
            raise ValueError("data contains NaN or inf")
        if strategy == "uniform":
            lo, hi = x.min(axis=0), x.max(axis=0)
            b = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, num_bins + 1)
            return cls(_strictly_increasing(np.ascontiguousarray(b)))
        if strategy == "quantile":
            return cls(original_quantile_boundaries(x, num_bins))
        raise ValueError(f"unknown strategy {strategy!r} (uniform or quantile)")

    @property
    def num_bins(self) -> int:
        return self.boundaries.shape[1] - 1

    @property
    def dim(self) -> int:
        return self.boundaries.shape[0]

    def _tensors(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        key = (device, dtype)
        if key not in self._torch:
            inner = torch.as_tensor(self.boundaries[:, 1:-1], dtype=dtype, device=device)
            centers = torch.as_tensor(self.centers, dtype=dtype, device=device)
            self._torch[key] = (inner.contiguous(), centers)
        return self._torch[key]

    def encode(self, x: Array, dims: slice | None = None) -> Array:
        """Values [..., d] -> int64 bin ids [..., d]; out-of-range values clip to edge bins."""
        sl = dims if dims is not None else slice(None)
        if isinstance(x, torch.Tensor):
            # Compare in float64 so ids match the numpy path exactly (MPS lacks float64).
            dtype = torch.float32 if x.device.type == "mps" else torch.float64
            inner = self._tensors(x.device, dtype)[0][sl]
            if x.shape[-1] != inner.shape[0]:
                raise ValueError(f"last axis has {x.shape[-1]} values, dims select {inner.shape[0]}")
            flat = x.to(dtype).reshape(-1, inner.shape[0]).T.contiguous()
            # right=True: count the inner boundaries at or below x, i.e. the last bin whose
            # left boundary is <= x (repeated boundaries: the last of their bins).
            ids = torch.searchsorted(inner, flat, right=True)
            return ids.T.reshape(x.shape)
        inner = self.boundaries[sl, 1:-1]
        xs = np.asarray(x, dtype=np.float64)
        if xs.shape[-1] != inner.shape[0]:
            raise ValueError(f"last axis has {xs.shape[-1]} values, dims select {inner.shape[0]}")
        ids = np.empty(xs.shape, dtype=np.int64)
        for d in range(inner.shape[0]):  # loop over dimensions only, never samples
            ids[..., d] = np.searchsorted(inner[d], xs[..., d], side="right")
        return ids

    def decode(self, idx: Array, dims: slice | None = None) -> Array:
        """Bin ids [..., d] -> bin centers [..., d] (float64 numpy / float32 torch)."""
        sl = dims if dims is not None else slice(None)
        if isinstance(idx, torch.Tensor):
            centers = self._tensors(idx.device, torch.float32)[1][sl]
            cols = torch.arange(centers.shape[0], device=idx.device)
            return centers[cols, idx.long()]
        centers = self.centers[sl]
        return centers[np.arange(centers.shape[0]), np.asarray(idx)]

    def expectation(self, probs: Array, dims: slice | None = None) -> Array:
        """Per-bin probabilities [..., d, N] -> expected value [..., d]."""
        sl = dims if dims is not None else slice(None)
        if isinstance(probs, torch.Tensor):
            centers = self._tensors(probs.device, probs.dtype)[1][sl]
            return (probs * centers).sum(-1)
        return (np.asarray(probs) * self.centers[sl]).sum(-1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for an npz file (centers are derived, so not stored)."""
        return {"boundaries": self.boundaries.copy()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "Discretizer":
        if "boundaries" not in arrays:
            raise ValueError("discretizer arrays lack 'boundaries'")
        return cls(arrays["boundaries"])
