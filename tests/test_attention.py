"""Training-time attention and dropout (tt_core/model/attention.py): the CPU path computes the
written-out TT formula, softmax(q k^T / sqrt(d) + mask) -> dropout -> @ v, and draws its
dropout decisions with the right probability, independently."""

from __future__ import annotations

import math

import pytest
import torch

from tt_core.model import attention
from tt_core.model.attention import Dropout, causal_attention, keep_mask
from tt_core.model.gpt import attention_mask

T_DIM, T = 7, 27  # transition_dim and block_size of the tests' small model
MASK = attention_mask(T, T_DIM)


def _formula(q, k, v, mask, keep, p):
    """The original TT attention, written out: masked softmax, dropout on the weights, @ v."""
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    return (weights * keep / (1 - p)) @ v


def _qkv(B=2, H=4, d=8, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(B, H, T, d, generator=g, dtype=dtype, requires_grad=True) for _ in range(3)]


def test_cpu_dropout_attention_equals_the_formula_with_the_same_keep_masks(monkeypatch):
    """Output and all three gradients, across several chunks (3 + 3 + 2 rows) and query
    blocks (4 of 7, 7, 7, 6 positions)."""
    monkeypatch.setattr(attention, "CHUNK_BYTES", 3 * T * T * 8)
    q, k, v = _qkv()
    grad = torch.randn(2, 4, T, 8, dtype=torch.float64)
    p = 0.3

    torch.manual_seed(5)
    fast = causal_attention(q, k, v, MASK, p, training=True)
    fast.backward(grad)
    fast_grads = [x.grad.clone() for x in (q, k, v)]
    for x in (q, k, v):
        x.grad = None

    torch.manual_seed(5)  # replay the draws, in order: per chunk of rows, per query block
    keep = torch.ones(8, T, T, dtype=torch.bool)  # keys after a block are hidden anyway
    for rows in (slice(0, 3), slice(3, 6), slice(6, 8)):
        for a, b in ((0, 7), (7, 14), (14, 21), (21, 27)):
            keep[rows, a:b, :b] = keep_mask((rows.stop - rows.start, b - a, b), p)
    reference = _formula(q, k, v, MASK, keep.view(2, 4, T, T), p)
    reference.backward(grad)

    assert not keep.all() and keep.any()
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-12)
    for got, x in zip(fast_grads, (q, k, v)):
        torch.testing.assert_close(got, x.grad, rtol=0, atol=1e-12)


def test_evaluation_and_zero_dropout_use_torch_attention_and_equal_the_formula(monkeypatch):
    def refuse(*args):
        raise AssertionError("the CPU dropout path ran")

    monkeypatch.setattr(attention.DropoutAttention, "apply", refuse)
    q, k, v = _qkv()
    everything = torch.ones(2, 4, T, T, dtype=torch.bool)
    for p, training in ((0.3, False), (0.0, True)):
        got = causal_attention(q, k, v, MASK, p, training)
        torch.testing.assert_close(got, _formula(q, k, v, MASK, everything, 0.0))


def test_under_bf16_autocast_the_cpu_path_computes_in_fp32_and_returns_bf16():
    """Inputs from bf16 Linear layers: the output is the fp32 computation on those inputs,
    rounded once to bf16, and gradients come back in bf16 (autocast's contract)."""
    q, k, v = (x.detach().bfloat16() for x in _qkv())
    grad = torch.randn(2, 4, T, 8).bfloat16()
    wide = [x.float().requires_grad_() for x in (q, k, v)]
    torch.manual_seed(1)
    reference = causal_attention(*wide, MASK, 0.1, training=True)
    reference.backward(grad.float())

    halves = [x.clone().requires_grad_() for x in (q, k, v)]
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = causal_attention(*halves, MASK, 0.1, training=True)
    got.backward(grad)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, reference.bfloat16(), rtol=0, atol=0)
    for half, full in zip(halves, wide):
        assert half.grad.dtype == torch.bfloat16
        torch.testing.assert_close(half.grad, full.grad.bfloat16(), rtol=0, atol=0)


def test_keep_mask_refuses_a_probability_outside_0_1():
    for p in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            keep_mask((4,), p)
    assert not keep_mask((1000,), 1 - 2**-40).any()  # p this close to 1 keeps 2^-32 of them


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_mask_drops_each_element_with_probability_p_independently(p):
    torch.manual_seed(0)
    keep = keep_mask((1 << 22,), p)
    n = keep.numel()
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs((~keep).float().mean().item() - p) < 5 * sigma
    # the two halves of each 64-bit word are independent draws
    low, high = ~keep[0::2], ~keep[1::2]
    both = (low & high).float().mean().item()
    assert abs(both - p * p) < 5 * math.sqrt(p * p * (1 - p * p) / (n // 2))


def test_keep_mask_replays_under_the_same_seed_and_differs_otherwise():
    torch.manual_seed(3)
    a = keep_mask((1000,), 0.1)
    torch.manual_seed(3)
    assert torch.equal(a, keep_mask((1000,), 0.1))
    assert not torch.equal(a, keep_mask((1000,), 0.1))


def test_dropout_module_scales_kept_elements_and_passes_gradient_only_through_them():
    layer = Dropout(0.25).train()
    x = torch.randn(64, 33, requires_grad=True)
    torch.manual_seed(7)
    y = layer(x)
    y.sum().backward()
    torch.manual_seed(7)
    keep = keep_mask(x.shape, 0.25)
    torch.testing.assert_close(y, x * keep / 0.75)
    torch.testing.assert_close(x.grad, keep / 0.75)
    assert torch.equal(layer.eval()(x), x)


def test_a_mask_that_lets_a_query_see_later_keys_is_refused():
    """The CPU path skips the keys after each query block, so it needs causality."""
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="causal"):
        causal_attention(q, k, v, torch.ones(T, T, dtype=torch.bool), 0.1, training=True)


def test_a_second_backward_through_the_cpu_path_is_refused_not_wrong():
    """Its saved weights go back to the workspace after the first backward."""
    q, k, v = _qkv()
    y = causal_attention(q, k, v, MASK, 0.1, training=True).sum()
    y.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_the_workspace_drops_the_oldest_shapes_beyond_its_budget(monkeypatch):
    monkeypatch.setattr(attention._Workspace, "MAX_BYTES", 3 * 8 * 100)
    space = attention._Workspace()
    old, new = torch.empty(2, 100, dtype=torch.float64), torch.empty(1, 100, dtype=torch.float64)
    third = torch.empty(1, 100, dtype=torch.float64)
    for t in (old, new, third):
        space.give(t)  # 4 x 800 bytes > 3 x 800: the oldest shape goes
    assert space.take((2, 100), old) is not old
    assert space.take((1, 100), new) is third and space.take((1, 100), new) is new
