"""Token sampling follows the original TT rules (trajectory/search/sampling.py).

`original_filter_cdf` below is this test's own transcription of the original rule, in
plain Python per row: sort the probabilities ascending, find the largest sorted
probability whose cumulative mass is still < threshold (the smallest one when none
is), and mask every token whose probability is <= it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tt_core.config import PlanConfig
from tt_core.model.sampling import filter_cdf, sample_tokens, top_k_logits


def original_filter_cdf_kept(probs: list[float], threshold: float) -> set[int]:
    """Indices the original filter_cdf keeps (logit not set to -1000)."""
    ascending = sorted(probs)
    cum, p = 0.0, ascending[0]
    for q in ascending:
        cum += q
        if cum < threshold:
            p = q
        else:
            break
    return {i for i, q in enumerate(probs) if q > p}


def kept(logits: torch.Tensor) -> set[int]:
    return {i for i, v in enumerate(logits.tolist()) if v > -1000}


# Hand-made distributions with the kept set worked out by hand.
# [0.5, 0.3, 0.1, 0.06, 0.04] ascending cum: .04 .10 .20 .50 1.0
CASES = [
    ([0.5, 0.3, 0.1, 0.06, 0.04], 0.6, {0}),  # < 0.6 up to .50 -> p = 0.3: the low 50 % go
    ([0.5, 0.3, 0.1, 0.06, 0.04], 0.45, {0, 1}),  # < 0.45 up to .20 -> p = 0.1
    ([0.5, 0.3, 0.1, 0.06, 0.04], 0.15, {0, 1, 2}),  # < 0.15 up to .10 -> p = 0.06
    ([0.5, 0.3, 0.1, 0.06, 0.04], 0.01, {0, 1, 2, 3}),  # nothing below: the smallest goes
    ([0.7, 0.1, 0.1, 0.1], 0.6, {0}),  # ties with p are masked too
    ([0.25, 0.25, 0.25, 0.25], 0.6, set()),  # flat: every token is <= p
]


@pytest.mark.parametrize("probs,threshold,expected", CASES)
def test_filter_cdf_drops_the_low_tail_below_the_threshold_mass(probs, threshold, expected):
    assert original_filter_cdf_kept(probs, threshold) == expected  # the transcription agrees
    out = filter_cdf(torch.tensor([probs]).log(), threshold)
    assert kept(out[0]) == expected
    dropped = set(range(len(probs))) - expected
    assert all(out[0, i] == -1000 for i in dropped)
    # kept logits are untouched
    assert all(out[0, i] == torch.tensor(probs).log()[i] for i in expected)


def test_cdf_act_0_6_keeps_fewer_tokens_than_the_inverted_rule_would():
    # The original drops the tail holding up to 60 % of the mass; an inverted
    # (1 - threshold) rule would drop only the tail below 40 %.
    probs = [0.5, 0.2, 0.12, 0.1, 0.08]  # ascending cum: .08 .18 .30 .50 1.0
    assert kept(filter_cdf(torch.tensor([probs]).log(), 0.6)[0]) == {0}
    assert original_filter_cdf_kept(probs, 0.6) == {0}
    assert original_filter_cdf_kept(probs, 1 - 0.6) == {0, 1}  # what the inverted rule keeps


def test_filter_cdf_matches_the_transcription_on_random_distributions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 37, generator=g) * 2.0
    probs = logits.softmax(-1)
    for threshold in (0.1, 0.6, 0.9):
        out = filter_cdf(logits, threshold)
        for row in range(logits.shape[0]):
            assert kept(out[row]) == original_filter_cdf_kept(probs[row].tolist(), threshold)


def test_cdf_sampling_draws_only_kept_tokens_in_proportion_to_their_probability():
    probs = torch.tensor([0.5, 0.3, 0.1, 0.06, 0.04])
    logits = probs.log().expand(40_000, 5).contiguous()
    tok = sample_tokens(logits, None, 0.45, torch.Generator().manual_seed(0))
    counts = np.bincount(tok.numpy(), minlength=5) / tok.numel()
    assert counts[2:].sum() == 0  # filtered out
    np.testing.assert_allclose(counts[:2], [0.5 / 0.8, 0.3 / 0.8], atol=0.01)


def test_cdf_sampling_of_a_flat_row_is_uniform_like_the_original():
    logits = torch.zeros(40_000, 4)  # every token masked -> softmax of all -1000: uniform
    tok = sample_tokens(logits, None, 0.6, torch.Generator().manual_seed(1))
    np.testing.assert_allclose(np.bincount(tok.numpy(), minlength=4) / tok.numel(), 0.25, atol=0.01)


def test_cdf_then_top_k_path_draws_from_the_same_distribution_as_the_cdf_path():
    probs = torch.tensor([0.4, 0.3, 0.2, 0.06, 0.04])
    logits = probs.log().expand(40_000, 5).contiguous()
    a = sample_tokens(logits, None, 0.2, torch.Generator().manual_seed(2))
    b = sample_tokens(logits, 5, 0.2, torch.Generator().manual_seed(3))  # top-5 keeps all
    for tok in (a, b):
        counts = np.bincount(tok.numpy(), minlength=5) / tok.numel()
        np.testing.assert_allclose(counts, [0.4 / 0.9, 0.3 / 0.9, 0.2 / 0.9, 0, 0], atol=0.01)


def test_top_k_keeps_the_k_largest_and_ties():
    out = top_k_logits(torch.tensor([[1.0, 3.0, 2.0, 3.0, 0.5]]), 2)
    assert torch.isinf(out[0, [0, 2, 4]]).all() and (out[0, [1, 3]] == 3.0).all()


def test_top_1_without_cdf_is_greedy():
    logits = torch.randn(64, 11, generator=torch.Generator().manual_seed(4))
    assert torch.equal(sample_tokens(logits, 1, None, None), logits.argmax(-1))


def test_plan_defaults_are_the_originals():
    """trajectory-transformer config/offline.py `plan` and core.beam_plan(k_rew=1)."""
    p = PlanConfig()
    assert (p.k_obs, p.k_act, p.k_reward, p.cdf_obs, p.cdf_act) == (1, None, 1, None, 0.6)
    assert (p.beam_width, p.beam_steps, p.beam_context, p.sample_expand) == (128, 15, 5, 2)
