"""Property tests for the per-dimension discretizer (numpy and torch paths)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tt_core.data.discretizer import Discretizer
from tt_core.errors import ConfigError

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=64)
# A small pool of values makes repeated quantiles (point masses) common.
pooled = st.sampled_from([-2.0, 0.0, 0.0, 1.5, 7.0])


@st.composite
def fitted(draw):
    """(data [n, D], fitted discretizer) over both strategies and dedupe-prone data."""
    num_bins = draw(st.integers(1, 16))
    strategy = draw(st.sampled_from(["uniform", "quantile"]))
    # the original's quantile rule gives exactly N bins for n = k * N (and many other n)
    n = draw(st.integers(1, 4)) * num_bins if strategy == "quantile" else draw(st.integers(1, 40))
    d = draw(st.integers(1, 4))
    elements = draw(st.sampled_from([finite, pooled]))
    data = draw(hnp.arrays(np.float64, (n, d), elements=elements))
    return data, Discretizer.fit(data, num_bins, strategy)


def original_quantile(data, N):
    """The tests' transcription of the original TT's QuantileDiscretizer
    (utils/discretization.py): thresholds = sorted values every ceil(n / N) plus the max;
    discretize = the largest index i with x >= thresholds[i] (0 when none, N when all),
    clipped to [0, N-1]; reconstruct = midpoint of thresholds[i] and thresholds[i+1]."""
    every = int(np.ceil(len(data) / N))
    thresholds = np.concatenate([np.sort(data, axis=0)[::every], data.max(axis=0, keepdims=True)])

    def discretize(x):
        gt = x[None] >= thresholds[:, None]  # [N+1, B, D]
        arange = (np.arange(len(thresholds)) + 1)[:, None, None]
        inds = np.argmax(gt * arange, axis=0)
        inds[(~gt).all(axis=0)] = 0
        inds[gt.all(axis=0)] = len(thresholds) - 1
        return np.clip(inds, 0, N - 1)

    def reconstruct(inds):
        left = np.take_along_axis(thresholds, inds, axis=0)
        right = np.take_along_axis(thresholds, inds + 1, axis=0)
        return (left + right) / 2

    return thresholds, discretize, reconstruct


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 12), st.integers(1, 5), st.integers(1, 3), st.sampled_from([finite, pooled]), st.data())
def test_quantile_bins_encode_and_decode_as_the_original(N, per_bin, d, elements, data):
    """Thresholds, bins (repeated edges included) and reconstructions equal the
    transcription's, on data with and without point masses, in and out of range."""
    n = N * per_bin + data.draw(st.integers(0, N - 1)) * (per_bin > 1)
    train = data.draw(hnp.arrays(np.float64, (n, d), elements=elements))
    thresholds, discretize, reconstruct = original_quantile(train, N)
    if len(thresholds) != N + 1:  # the rule gives fewer bins: refused with a line saying so
        with pytest.raises(ConfigError, match="quantile bins need more data"):
            Discretizer.fit(train, N, "quantile")
        return
    disc = Discretizer.fit(train, N, "quantile")
    assert np.array_equal(disc.boundaries, thresholds.T)
    probe = np.concatenate([train, train + data.draw(finite), thresholds])
    ids = disc.encode(probe)
    assert np.array_equal(ids, discretize(probe))
    assert np.array_equal(disc.encode(torch.from_numpy(probe)).numpy(), ids)
    assert np.allclose(disc.decode(ids), reconstruct(ids))


def test_repeated_quantile_edges_put_a_point_mass_in_the_last_of_their_bins():
    data = np.array([[0.0], [0.0], [0.0], [0.0], [0.0], [0.0], [1.0], [2.0]])  # n 8, N 4: every 2
    disc = Discretizer.fit(data, 4, "quantile")
    assert disc.boundaries.tolist() == [[0.0, 0.0, 0.0, 1.0, 2.0]]
    assert disc.encode(np.array([[0.0], [0.5], [1.0], [2.0], [-1.0]]))[:, 0].tolist() == [2, 2, 3, 3, 0]
    assert disc.decode(np.array([[0], [1], [2], [3]]))[:, 0].tolist() == [0.0, 0.0, 0.5, 1.5]


@settings(max_examples=60, deadline=None)
@given(fitted())
def test_fit_gives_ascending_boundaries_strictly_so_for_uniform_bins(case):
    _, disc = case
    steps = np.diff(disc.boundaries, axis=1)
    assert (steps >= 0).all()
    assert disc.centers.shape == (disc.dim, disc.num_bins)


@settings(max_examples=60, deadline=None)
@given(fitted())
def test_decode_of_encode_is_within_the_bin(case):
    data, disc = case
    ids = disc.encode(data)
    assert ids.dtype == np.int64
    width = disc.boundaries[:, 1:] - disc.boundaries[:, :-1]
    bin_width = np.take_along_axis(width, ids.T, axis=1).T
    err = np.abs(disc.decode(ids) - data)
    assert (err <= bin_width / 2 + 1e-9).all()


@settings(max_examples=60, deadline=None)
@given(fitted())
def test_encode_of_decode_is_identity_for_bins_of_positive_width(case):
    """(A zero-width bin between repeated quantile edges is never encoded into: its
    center, the edge, belongs to the last bin of the run, as in the original.)"""
    data, disc = case
    ids = np.broadcast_to(np.arange(disc.num_bins)[:, None], (disc.num_bins, disc.dim))
    wide = (disc.boundaries[:, 1:] > disc.boundaries[:, :-1]).T
    assert (disc.encode(disc.decode(ids)) == ids)[wide].all()
    seen = disc.encode(data)  # the original's own check: data's bins survive a round trip
    assert (disc.encode(disc.decode(seen)) == seen).all()


@settings(max_examples=60, deadline=None)
@given(fitted(), st.floats(1e-3, 1e6))
def test_out_of_range_values_clip_to_edge_bins(case, gap):
    _, disc = case
    below = disc.boundaries[:, 0] - gap
    above = disc.boundaries[:, -1] + gap
    assert (disc.encode(below) == 0).all()
    assert (disc.encode(above) == disc.num_bins - 1).all()


@settings(max_examples=60, deadline=None)
@given(fitted(), st.data())
def test_numpy_and_torch_agree(case, data):
    values, disc = case
    x = np.concatenate([values, values + data.draw(finite)])  # in and out of range
    ids = disc.encode(x)
    t_ids = disc.encode(torch.from_numpy(x))
    assert t_ids.dtype == torch.int64 and (t_ids.numpy() == ids).all()
    assert disc.encode(torch.from_numpy(x).float()).dtype == torch.int64
    assert np.allclose(disc.decode(t_ids).numpy(), disc.decode(ids), rtol=1e-6, atol=1e-4)
    probs = np.random.default_rng(0).dirichlet(np.ones(disc.num_bins), size=(3, disc.dim))
    t_exp = disc.expectation(torch.from_numpy(probs)).numpy()
    assert np.allclose(t_exp, disc.expectation(probs))


@settings(max_examples=60, deadline=None)
@given(fitted(), st.data())
def test_dims_slice_matches_full_encoding(case, data):
    values, disc = case
    lo = data.draw(st.integers(0, disc.dim - 1))
    hi = data.draw(st.integers(lo + 1, disc.dim))
    sl = slice(lo, hi)
    ids = disc.encode(values)
    assert (disc.encode(values[:, sl], dims=sl) == ids[:, sl]).all()
    assert (disc.encode(torch.from_numpy(values[:, sl]), dims=sl).numpy() == ids[:, sl]).all()
    assert np.array_equal(disc.decode(ids[:, sl], dims=sl), disc.decode(ids)[:, sl])


def test_expectation_of_one_hot_is_the_center():
    disc = Discretizer.fit(np.random.default_rng(1).normal(size=(200, 3)), 8, "quantile")
    ids = np.array([[0, 7, 3]])
    probs = np.eye(8)[ids]  # [1, 3, 8]
    assert np.allclose(disc.expectation(probs), disc.decode(ids))
    t = disc.expectation(torch.from_numpy(probs).float())
    assert t.dtype == torch.float32 and np.allclose(t.numpy(), disc.decode(ids))


def test_constant_dimension_still_has_usable_bins():
    data = np.stack([np.full(50, 3.0), np.linspace(-1, 1, 50)], axis=1)  # n 50, N 10: every 5
    for strategy in ("uniform", "quantile"):
        disc = Discretizer.fit(data, 10, strategy)
        ids = disc.encode(data)
        assert (ids[:, 0] == ids[0, 0]).all()
        assert np.allclose(disc.decode(ids)[:, 0], 3.0, atol=1e-4)


def test_leading_axes_are_kept():
    disc = Discretizer.fit(np.random.default_rng(2).normal(size=(100, 4)), 5, "uniform")
    x = np.random.default_rng(3).normal(size=(2, 3, 4))
    assert disc.encode(x).shape == (2, 3, 4)
    assert disc.encode(torch.from_numpy(x)).shape == (2, 3, 4)


def test_arrays_round_trip():
    disc = Discretizer.fit(np.random.default_rng(4).normal(size=(100, 3)), 7, "quantile")
    arrays = disc.to_arrays()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in arrays.values())
    again = Discretizer.from_arrays(arrays)
    assert np.array_equal(again.boundaries, disc.boundaries)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="strategy"):
        Discretizer.fit(np.zeros((3, 2)), 4, "kmeans")
    with pytest.raises(ValueError, match="non-decreasing"):
        Discretizer(np.array([[0.0, 1.0, 0.5]]))
    with pytest.raises(ValueError, match="dims select"):
        Discretizer.fit(np.zeros((3, 2)), 4, "uniform").encode(np.zeros((1, 3)))
