"""The cascade cache (the planner's) behind the model's own decode: every row's logits
equal a full forward pass of that row's window, across levels, beam selection and crops."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

import tt_core.model.cache as cache_module
from tt_core.model.cache import CascadeCache, _attend_by_products, flash_wins
from tt_core.model.cache_size import kv_dtype
from tt_core.pretrained.ftt.weights import FTT_BLOCK_KEY, NORM_RESIDUAL, PRE_NORM, adapt_model
from tt_core.model.gpt import GPTConfig, TrajectoryGPT

CFG = GPTConfig(observation_dim=3, action_dim=2, num_bins=11, seq_len=4, embedding_dim=32, n_layers=2, n_heads=4)
T, N, BLOCK = CFG.transition_dim, CFG.num_bins, CFG.block_size
E, W, X = 2, 3, 2  # envs, beams per env, candidates per beam


@pytest.fixture(params=["chosen", "flash", "products"], autouse=True)
def kernel(request, monkeypatch):
    """Each test runs with the attention kernel the cache picks per part, and with each
    of its two CPU kernels forced for every part."""
    if request.param != "chosen":
        monkeypatch.setattr(cache_module, "flash_wins", lambda *shape: request.param == "flash")
    return request.param


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


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 6), queries=st.integers(1, 5), keys=st.integers(1, 12), heads=st.integers(1, 3),
       hidden=st.lists(st.booleans(), min_size=12, max_size=12), seed=st.integers(0, 2**16))
def test_the_two_attention_kernels_compute_the_same_softmax_and_log_sum_exp(rows, queries, keys, heads, hidden, seed):
    """The batched-products path equals the fused flash kernel and the written-out
    formula: outputs and the log-sum-exp the cascade merges parts with, any mask that
    leaves each query a key."""
    g = torch.Generator().manual_seed(seed)
    q, K, V = (torch.randn(rows, heads, n, 8, generator=g) for n in (queries, keys, keys))
    hide = torch.tensor(hidden[:keys])
    hide[0] = False  # every query sees key 0
    bias = torch.zeros(queries, keys).masked_fill(hide, -math.inf)
    scale = 8**-0.5
    o, lse, _ = _attend_by_products(q, K, V, bias, scale)
    s = (q @ K.transpose(-1, -2)) * scale + bias
    torch.testing.assert_close(o, torch.softmax(s, -1) @ V, atol=1e-5, rtol=0)
    torch.testing.assert_close(lse, torch.logsumexp(s, -1), atol=1e-5, rtol=0)
    fo, flse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, K, V, 0.0, False, attn_mask=bias,
                                                                         scale=scale)[:2]
    torch.testing.assert_close(o, fo, atol=1e-5, rtol=0)
    torch.testing.assert_close(lse, flse, atol=1e-5, rtol=0)


def test_the_flash_kernel_serves_few_rows_of_many_queries_and_products_many_rows_of_few():
    """The measured crossover (docs/benchmarks.md#attention-kernels), at 4 heads: the
    context level (one row per env, a query per candidate) stays on the fused kernel, the
    beams' and candidates' levels of a large batch go to batched products."""
    assert flash_wins(1, 64, 4) and flash_wins(25, 64, 4)  # context level, 1 and 25 envs
    assert flash_wins(32, 1, 4) and flash_wins(64, 1, 4)  # one env's beams, one query each
    assert not flash_wins(128, 1, 4) and not flash_wins(800, 1, 4)
    assert not flash_wins(32, 2, 4) and not flash_wins(800, 2, 4)  # two candidates per beam
    assert flash_wins(8, 2, 4)


def test_a_bf16_network_on_a_cpu_keeps_fp32_keys_and_values_and_decodes_close_to_fp32(model):
    """kv_dtype: on a CPU the cascade holds and attends in fp32 for a bf16 network (the
    CPU's bf16 attention kernels are slower there), as close to fp32 as a bf16 forward
    pass is; a GPU keeps the network's dtype."""
    assert kv_dtype("bf16", "cpu") == kv_dtype("fp32", "cpu") == "fp32"
    assert kv_dtype("bf16", "cuda") == "bf16" and kv_dtype("fp32", "cuda") == "fp32"
    cache = CascadeCache(CFG.n_layers, CFG.n_heads, 32 // 4, "cpu", torch.bfloat16)
    cache.reset((E, E * W, E * W * X), (BLOCK, BLOCK, T))
    assert cache.dtype == torch.float32 and cache.levels[1].kv.dtype == torch.float32
    half = copy.deepcopy(model).to(torch.bfloat16)
    prefix, beams, cands = tokens(E, T + 3, 8), tokens(E * W, 4, 9), tokens(E * W * X, 3, 10)
    with torch.no_grad():
        half.decode(prefix, cache.level(0), logits="none")
        half.decode(beams, cache.level(1), logits="none")
        got = torch.cat([half.decode(cands[:, i : i + 1], cache.level(2)) for i in range(3)], dim=1)
        full = model(windows(prefix, beams, cands))[:, -3:]
    assert got.dtype == torch.bfloat16
    assert (got.float() - full).abs().max() < 0.03 * full.abs().max()  # a bf16 forward: ~0.01
