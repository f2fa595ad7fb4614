"""The cascade cache (the planner's) behind the model's own decode: every row's logits
equal a full forward pass of that row's window, across levels, beam selection and crops."""

from __future__ import annotations

import pytest
import torch

from tt_core.model.cache import CascadeCache
from tt_core.pretrained.ftt.weights import FTT_BLOCK_KEY, NORM_RESIDUAL, PRE_NORM, adapt_model
from tt_core.model.gpt import GPTConfig, TrajectoryGPT

CFG = GPTConfig(observation_dim=3, action_dim=2, num_bins=11, seq_len=4, embedding_dim=32, n_layers=2, n_heads=4)
T, N, BLOCK = CFG.transition_dim, CFG.num_bins, CFG.block_size
E, W, X = 2, 3, 2  # envs, beams per env, candidates per beam


@pytest.fixture(params=[PRE_NORM, NORM_RESIDUAL])
def model(request) -> TrajectoryGPT:
    torch.manual_seed(0)
    model = adapt_model(TrajectoryGPT(CFG), {FTT_BLOCK_KEY: request.param})
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


def tokens(rows: int, n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, N, (rows, n), generator=torch.Generator().manual_seed(seed))


def windows(prefix, beams, cands):
    """Each candidate row's whole sequence: its env's prefix, its beam's tokens, its own."""
    rows = torch.arange(E * W * X)
    return torch.cat([prefix[rows // (W * X)], beams[rows // X], cands], dim=1)


def test_each_level_decodes_like_a_full_forward_of_its_rows_windows(model):
    cache = CascadeCache(CFG.n_layers, CFG.n_heads, 32 // 4, "cpu", torch.float32)
    cache.reset((E, E * W, E * W * X), (BLOCK, BLOCK, T))
    prefix, beams, cands = tokens(E, T + 3, 0), tokens(E * W, 4, 1), tokens(E * W * X, 3, 2)
    with torch.no_grad():
        model.decode(prefix, cache.level(0), logits="none")
        model.decode(beams, cache.level(1), logits="none")
        got = torch.cat([model.decode(cands[:, i : i + 1], cache.level(2)) for i in range(3)], dim=1)
        full = model(windows(prefix, beams, cands))
    assert cache.level(2).length == prefix.shape[1] + 4 + 3
    torch.testing.assert_close(got, full[:, -3:], atol=1e-4, rtol=0)


def test_select_keeps_the_chosen_candidates_and_crop_re_encodes_every_level(model):
    cache = CascadeCache(CFG.n_layers, CFG.n_heads, 32 // 4, "cpu", torch.float32)
    cache.reset((E, E * W, E * W * X), (BLOCK, BLOCK, T))
    prefix, beams, cands = tokens(E, T + 3, 3), tokens(E * W, 4, 4), tokens(E * W * X, 3, 5)
    chosen = torch.tensor([1, 1, 4, 6, 11, 7])  # per env W candidates, duplicates allowed
    with torch.no_grad():
        model.decode(prefix, cache.level(0), logits="none")
        model.decode(beams, cache.level(1), logits="none")
        model.decode(cands, cache.level(2), logits="none")
        cache.select(chosen // X, chosen)
        history = windows(prefix, beams, cands)[chosen]  # what each surviving beam holds
        assert cache.level(2).length == cache.level(1).length == history.shape[1]
        nxt = tokens(E * W, 1, 6)
        got = model.decode(nxt, cache.level(1), logits="next")
        torch.testing.assert_close(got, model(torch.cat([history, nxt], 1))[:, -1], atol=1e-4, rtol=0)
        # crop to the last 2 transitions (window rule), then continue at level 1
        assert model.crop(cache.level(1), 2) is True
        seq = torch.cat([history, nxt], 1)
        kept = seq[:, -(-(seq.shape[1] - 2 * T) // T) * T :]  # whole transitions dropped
        assert cache.level(1).length == kept.shape[1]
        more = tokens(E * W, 2, 7)
        got = model.decode(more, cache.level(1))
        torch.testing.assert_close(got, model(torch.cat([kept, more], 1))[:, -2:], atol=1e-4, rtol=0)
