"""The seed's KBinsDiscretizer as a tt-tui Discretizer that bins exactly like it."""

from __future__ import annotations

from typing import Any

import numpy as np

from tt_core.data.discretizer import Discretizer
from tt_core.errors import CheckpointError
from tt_core.pretrained.ftt.unpickler import SAFE_DTYPE_KINDS, describe

# The seed's KBinsDiscretizer.encode: x + atol + rtol * |x| is binned.
FTT_ENCODE_ATOL = 1.0e-8
FTT_ENCODE_RTOL = 1.0e-5


class FttDiscretizer(Discretizer):
    """A Discretizer whose boundaries reproduce the seed's encode and whose centers are
    the seed's bin centers exactly (decode / expectation)."""

    def __init__(self, boundaries: np.ndarray, centers: np.ndarray):
        super().__init__(boundaries)
        c = np.asarray(centers, dtype=np.float64)
        if c.shape != self.centers.shape or not np.isfinite(c).all():
            raise ValueError(
                f"centers must be finite with shape {self.centers.shape}, got {c.shape}"
            )
        self.centers = c


def ftt_encode_threshold(edges: np.ndarray) -> np.ndarray:
    """The x at which the seed's shifted value x + atol + rtol*|x| reaches each edge.

    The shift is strictly increasing in x (slope 1 +- rtol), so "shifted x >= e" is
    exactly "x >= threshold(e)".
    """
    e = np.asarray(edges, dtype=np.float64) - FTT_ENCODE_ATOL
    return np.where(e >= 0, e / (1.0 + FTT_ENCODE_RTOL), e / (1.0 - FTT_ENCODE_RTOL))


def _rising_from_the_top(b: np.ndarray) -> np.ndarray:
    """Make each row strictly increasing by lowering repeated edges below their run.

    Repeated edges (constant dimensions, quantiles of point masses) are zero-width bins
    the seed can never encode into; it sends a value equal to the repeated edge to the
    bin above the whole run. Keeping the highest copy of a run and moving the others
    down by tiny steps preserves that for the value itself.
    """
    if (np.diff(b, axis=1) > 0).all():
        return b
    span = b[:, -1] - b[:, 0]
    scale = np.maximum(np.abs(b).max(axis=1), 1.0)
    delta = np.where(span > 0, span * 1e-6, scale * 1e-6)
    delta = np.maximum(delta, np.spacing(scale) * 64)[:, None]
    ramp = np.arange(b.shape[1]) * delta
    # out_i = min_{m >= i}(b_m - m*delta) + i*delta: <= b_i, rises by >= delta per step.
    return np.minimum.accumulate((b - ramp)[:, ::-1], axis=1)[:, ::-1] + ramp


def discretizer_from_ftt(state: dict[str, Any], where: str) -> FttDiscretizer:
    """Map the seed discretizer's state onto a Discretizer that bins like the seed."""
    edges = state.get("bin_edges")
    if (
        not isinstance(edges, np.ndarray)
        or edges.dtype.kind not in SAFE_DTYPE_KINDS
        or edges.ndim != 2
        or edges.shape[1] < 3
    ):
        raise CheckpointError(f"{where}: bin_edges missing or not a numeric [dims, bins + 1] array")
    edges = edges.astype(np.float64)
    if not np.isfinite(edges).all() or (np.diff(edges, axis=1) < 0).any():
        raise CheckpointError(f"{where}: bin_edges are not finite and ascending")
    n_bins = state.get("n_bins", edges.shape[1] - 1)
    if type(n_bins) is not int or n_bins != edges.shape[1] - 1:
        raise CheckpointError(f"{where}: n_bins {describe(n_bins)} does not match bin_edges {edges.shape}")
    centers = state.get("bin_centers")
    if centers is None:
        centers = (edges[:, 1:] + edges[:, :-1]) * 0.5
    elif not isinstance(centers, np.ndarray) or centers.dtype.kind not in SAFE_DTYPE_KINDS:
        raise CheckpointError(f"{where}: bin_centers is not a numeric array ({describe(centers)})")
    centers = np.asarray(centers, dtype=np.float64)
    try:
        return FttDiscretizer(_rising_from_the_top(ftt_encode_threshold(edges)), centers)
    except ValueError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
