"""The model's attention maps (TrajectoryGPT.attention_maps): the weights of its own decode,
checked against the written-out definition softmax(q k^T / sqrt(d) + mask) per layer and
head, and against the model's masks."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

import numpy as np

from tt_core.model.cache import AttentionMapsCache
from tt_core.runs.attention_figure import attention_image, pool
from tt_core.model.gpt import GPTConfig, TrajectoryGPT

CFG = GPTConfig(observation_dim=3, action_dim=2, num_bins=10, seq_len=4, embedding_dim=32, n_layers=2, n_heads=4)
T = CFG.transition_dim


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TrajectoryGPT(CFG).eval()


def windows():
    return st.integers(1, CFG.block_size).flatmap(
        lambda t: st.lists(st.integers(0, CFG.num_bins), min_size=t, max_size=t))  # N: the stop token


def written_out_maps(model: TrajectoryGPT, idx: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(head_dim), masked) of every block, from the inputs the blocks
    get in an ordinary forward pass (caught with hooks): [B, L, H, t, t]."""
    seen = []
    hooks = [b.attn.register_forward_pre_hook(lambda m, args: seen.append((m, args[0]))) for b in model.blocks]
    try:
        with torch.no_grad():
            model(idx)
    finally:
        for h in hooks:
            h.remove()
    t, maps = idx.shape[1], []
    mask = model.mask[:t, :t]
    for attn, x in seen:
        B, n, E = x.shape
        q, k, _ = attn.c_attn(x).view(B, n, 3, attn.n_heads, E // attn.n_heads).unbind(2)
        s = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(E // attn.n_heads)
        maps.append(torch.softmax(s.masked_fill(~mask, -math.inf), -1))
    return torch.stack(maps, 1)


@settings(max_examples=40, deadline=None)
@given(tokens=windows())
def test_attention_rows_sum_to_one_and_honour_the_causal_and_value_masks(model, tokens):
    idx = torch.tensor([tokens])
    t = idx.shape[1]
    maps = model.attention_maps(idx)
    assert maps.shape == (1, CFG.n_layers, CFG.n_heads, t, t)
    torch.testing.assert_close(maps.sum(-1), torch.ones(1, CFG.n_layers, CFG.n_heads, t), atol=1e-5, rtol=0)
    later = torch.ones(t, t, dtype=torch.bool).triu(1)
    assert (maps[..., later] == 0).all()  # no query sees a later key
    values = torch.arange(t) % T == T - 1
    assert (maps[..., values] == 0).all()  # nor any value token, its own query included
    torch.testing.assert_close(maps, written_out_maps(model, idx), atol=1e-5, rtol=0)


def test_a_decode_that_keeps_its_maps_predicts_exactly_what_the_forward_pass_does(model):
    """The maps' decode is an ordinary decode: same logits as `forward`, so the weights
    shown are the ones that made the model's predictions."""
    idx = torch.randint(0, CFG.num_bins, (3, CFG.block_size), generator=torch.Generator().manual_seed(1))
    cache = AttentionMapsCache(CFG.n_layers, 3, CFG.n_heads, CFG.block_size, CFG.embedding_dim // CFG.n_heads)
    with torch.no_grad():
        torch.testing.assert_close(model.decode(idx, cache), model(idx), atol=1e-5, rtol=1e-5)
    assert all(m.shape == (3, CFG.n_heads, CFG.block_size, CFG.block_size) for m in cache.maps)


@settings(max_examples=80, deadline=None)
@given(t=st.integers(1, 300), rows=st.integers(1, 120), cols=st.integers(1, 120), seed=st.integers(0, 2**16))
def test_pooling_a_map_to_any_panel_size_averages_the_tokens_each_cell_covers(t, rows, cols, seed):
    rng = np.random.default_rng(seed)
    weights = rng.random((t, t))
    weights[rng.random((t, t)) < 0.3] = np.nan  # blank: hidden keys
    cells = pool(weights, rows, cols)
    assert cells.shape == (rows, cols)
    finite = cells[~np.isnan(cells)]
    assert finite.size == 0 or (np.nanmin(weights) - 1e-12 <= finite.min() and finite.max() <= np.nanmax(weights) + 1e-12)
    if t % rows == 0 and t % cols == 0 and not np.isnan(weights).any():  # whole blocks: their plain means
        np.testing.assert_allclose(cells, weights.reshape(rows, t // rows, cols, t // cols).mean((1, 3)))


def test_the_figure_has_a_map_per_layer_and_head_and_their_mean_with_hidden_keys_grey(model):
    idx = torch.randint(0, CFG.num_bins, (1, 2 * T), generator=torch.Generator().manual_seed(2))
    maps = model.attention_maps(idx)[0].numpy()
    image = attention_image(maps, CFG.observation_dim, CFG.action_dim, T + CFG.observation_dim, "test", pixels=2)
    assert image.dtype == np.uint8 and image.ndim == 3
    t = 2 * T
    assert image.shape[1] > (CFG.n_heads + 1) * 2 * t and image.shape[0] > CFG.n_layers * 2 * t
