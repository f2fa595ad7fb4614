"""Batched beam planner (the model's cached decode on a cascade cache) against the naive
full-forward oracle.

Tiny random models (O=3, A=2, N=11 -> T=7). With seq_len 3 the window holds 20
tokens, so the crop (window rule, see tt_core/plan/beam_search.py) happens mid-plan. The last
section repeats the proofs for both block kinds a checkpoint can have (pre-norm, and
the FTT seed's norm-residual), with random weights and with a trained Hopper model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tt_core.config import PlanConfig
from tt_core.data.discretizer import Discretizer
from tt_core.pretrained.ftt.weights import FTT_BLOCK_KEY, NORM_RESIDUAL, PRE_NORM, adapt_model
from tt_core.model.gpt import GPTConfig, TrajectoryGPT
from tt_core.plan.beam_search import BeamPlanner, NaivePlanner

O, A, N = 3, 2, 11
T = O + A + 2
E = 16
GREEDY = dict(k_act=1, k_obs=1, k_reward=1, cdf_act=None, cdf_obs=None)


def make_model(seq_len: int, layers: int = 2, seed: int = 0, block: str = PRE_NORM,
               stop_token: bool = True) -> TrajectoryGPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(observation_dim=O, action_dim=A, num_bins=N, seq_len=seq_len,
                    embedding_dim=32, n_layers=layers, n_heads=4, stop_token=stop_token)
    model = adapt_model(TrajectoryGPT(cfg), {FTT_BLOCK_KEY: block})
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)  # far from init: distinct logits, no near-ties
    return model.eval()


def make_disc(seed: int = 0) -> Discretizer:
    rs = np.random.RandomState(seed)
    return Discretizer(np.sort(rs.randn(T, N + 1), axis=1))


def context(envs: int, h: int, seed: int = 0, dims: tuple[int, int, int] = (O, T, N)):
    """Random token history [envs, h, T] and current observation tokens [envs, O]."""
    o, t, n = dims
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (envs, h, t), generator=g), torch.randint(0, n, (envs, o), generator=g)


def params(**kw) -> PlanConfig:
    base = dict(beam_width=4, beam_steps=3, beam_context=3, sample_expand=2)
    base.update(kw)
    return PlanConfig(**base)


def assert_same_plan(a, b):
    assert a.sequence.shape == b.sequence.shape
    assert torch.equal(a.sequence, b.sequence)
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_allclose(a.value, b.value, atol=1e-4, rtol=0)
    assert a.tokens == b.tokens


# ---------------------------------------------------------------- deterministic


@pytest.mark.parametrize("objective", ["reward", "likelihood"])
@pytest.mark.parametrize("stop_token", [True, False], ids=["stop-token", "no-stop-token"])
@pytest.mark.parametrize("seq_len", [8, 3], ids=["no-crop", "crop-mid-plan"])
def test_greedy_cached_plan_equals_naive_token_for_token(seq_len, stop_token, objective):
    model, disc = make_model(seq_len, stop_token=stop_token), make_disc()
    hist, obs = context(E, 4)  # every env its own context
    p = params(**GREEDY, objective=objective)
    a = BeamPlanner(model, disc, p).plan(hist, obs)
    b = NaivePlanner(model, disc, p).plan(hist, obs)
    assert a.actions.shape == (E, 3, A) and a.sequence.shape == (E, 3, T)
    assert len({tuple(s.flatten().tolist()) for s in a.sequence}) > 1  # envs differ
    assert_same_plan(a, b)


def test_width_1_expand_1_steps_1():
    model, disc = make_model(8), make_disc()
    hist, obs = context(E, 2)
    p = params(beam_width=1, sample_expand=1, beam_steps=1, **GREEDY)
    a = BeamPlanner(model, disc, p).plan(hist, obs)
    assert a.actions.shape == (E, 1, A)
    assert a.tokens == E * (A + 2)
    assert_same_plan(a, NaivePlanner(model, disc, p).plan(hist, obs))


def test_history_longer_than_context_uses_only_the_last_transitions():
    model, disc = make_model(3), make_disc()  # seq_len 3: context capped at 2 transitions
    hist, obs = context(E, 9)
    p = params(beam_context=5, **GREEDY)
    planner = BeamPlanner(model, disc, p)
    a = planner.plan(hist, obs)
    assert_same_plan(a, planner.plan(hist[:, -2:], obs))
    assert_same_plan(a, NaivePlanner(model, disc, p).plan(hist, obs))
    assert not torch.equal(a.sequence, planner.plan(hist[:, -1:], obs).sequence)


def test_empty_history_first_step_of_an_episode():
    model, disc = make_model(4), make_disc()
    hist, obs = context(E, 0)
    p = params(beam_steps=4, **GREEDY)
    assert_same_plan(BeamPlanner(model, disc, p).plan(hist, obs), NaivePlanner(model, disc, p).plan(hist, obs))


def test_env_count_can_shrink_between_plans_on_one_planner():
    model, disc = make_model(3), make_disc()
    p = params(**GREEDY)
    planner, naive = BeamPlanner(model, disc, p), NaivePlanner(model, disc, p)
    hist, obs = context(E, 3)
    assert_same_plan(planner.plan(hist, obs), naive.plan(hist, obs))
    live = torch.tensor([1, 4, 5, 11, 15])  # the other envs finished
    hist2, obs2 = context(E, 4, seed=1)
    hist2, obs2 = hist2[live], obs2[live]
    a = planner.plan(hist2, obs2)
    assert a.sequence.shape[0] == 5
    assert_same_plan(a, naive.plan(hist2, obs2))
    # and grows back (a new batch of episodes)
    assert_same_plan(planner.plan(hist, obs), naive.plan(hist, obs))


def test_set_params_changes_the_next_plan_without_rebuilding():
    model, disc = make_model(3), make_disc()
    planner = BeamPlanner(model, disc, params(beam_width=4, beam_steps=2, **GREEDY))
    hist, obs = context(E, 3)
    first = planner.plan(hist, obs, snapshot=True)
    assert first.actions.shape == (E, 2, A) and len(first.snapshot[0].steps[0].parent) == 4
    new = params(beam_width=8, beam_steps=3, **GREEDY)
    planner.set_params(new)
    second = planner.plan(hist, obs, snapshot=True)
    assert second.actions.shape == (E, 3, A)
    assert len(second.snapshot[0].steps) == 3 and len(second.snapshot[0].steps[0].parent) == 8
    assert planner.model is model
    assert_same_plan(second, NaivePlanner(model, disc, new).plan(hist, obs))


# ---------------------------------------------------------------- the stop token and the history


class ForceStop:
    """Replaces draws by the stop token (id N) the same way in both planners: every other
    candidate's first action token at step 0, and every other beam's second observation
    token after step 0 (calls are counted per env, since the naive planner goes env by env)."""

    def __init__(self):
        self.env, self.calls = None, {}

    def sampled(self, env, kind, logits, tokens):
        if env.start != self.env:
            self.env, self.calls = env.start, {}
        n = self.calls[kind] = self.calls.get(kind, 0) + 1
        if (kind, n) in (("act", 1), ("obs", 2)):
            tokens = tokens.clone()
            tokens[:, ::2] = N
            return tokens
        return None

    def selected(self, env, step, scores, index):
        return None


@pytest.mark.parametrize("seq_len", [8, 3], ids=["no-crop", "crop-mid-plan"])
def test_plans_that_draw_stop_tokens_equal_the_naive_full_forward(seq_len):
    """A stop token drawn mid-plan is fed back through the cache exactly as the full
    forward reads it (the stop embedding row), in actions and observations."""
    model, disc = make_model(seq_len), make_disc()
    hist, obs = context(E, 3)
    p = params(**GREEDY)
    a = BeamPlanner(model, disc, p).plan(hist, obs, hooks=ForceStop())
    b = NaivePlanner(model, disc, p).plan(hist, obs, hooks=ForceStop())
    assert_same_plan(a, b)
    assert not torch.equal(a.sequence, BeamPlanner(model, disc, p).plan(hist, obs).sequence)


def test_stop_mass_zero_drops_the_stop_column_without_renormalising_as_the_original():
    """The score of a candidate at step 0 is E[r] + discount * E[V] by the original's
    value_expectation: probs[:, :, :-1] against the bins' midpoints, the stop token's mass
    counting as 0 (not spread over the bins)."""
    model, disc = make_model(3), make_disc()
    hist, obs = context(E, 2)
    p = params(beam_steps=1, discount=0.9, stop_mass="zero", **GREEDY)
    rec = Recorder()
    BeamPlanner(model, disc, p).plan(hist, obs, hooks=rec)
    (r_logits,) = [lg for kind, lg, _ in rec.samples if kind == "reward"]
    (v_logits,) = [lg for kind, lg, _ in rec.samples if kind == "value"]
    scores, _ = rec.selections[0]

    def original_expectation(logits, dim):
        probs = logits.double().softmax(-1)[..., :-1]
        th = torch.from_numpy(disc.boundaries[dim])
        return (probs @ th[:-1] + probs @ th[1:]) / 2

    expected = original_expectation(r_logits, O + A) + 0.9 * original_expectation(v_logits, O + A + 1)
    torch.testing.assert_close(scores.double(), expected, atol=1e-5, rtol=1e-5)
    stop_mass = r_logits.softmax(-1)[..., N]
    assert stop_mass.min() > 0.01  # the stop column holds real mass here, so dropping it matters


@pytest.mark.parametrize("rule", ["renormalize", "lowest"])
def test_the_other_stop_mass_rules_score_an_end_as_documented_in_both_planners(rule):
    """plan.stop_mass renormalize: E[x | no end] = sum_i p_i c_i / sum_i p_i; lowest: an
    end counts as the dimension's lowest bin, E = sum_i p_i c_i + p_stop c_0. Both
    planners score candidates the same way (greedy plans stay equal token for token)."""
    model, disc = make_model(3), make_disc()
    hist, obs = context(E, 2)
    p = params(beam_steps=1, discount=0.9, stop_mass=rule, **GREEDY)
    rec = Recorder()
    cached = BeamPlanner(model, disc, p).plan(hist, obs, hooks=rec)
    (r_logits,) = [lg for kind, lg, _ in rec.samples if kind == "reward"]
    (v_logits,) = [lg for kind, lg, _ in rec.samples if kind == "value"]
    scores, _ = rec.selections[0]

    def expectation(logits, dim):
        probs = logits.double().softmax(-1)
        th = torch.from_numpy(disc.boundaries[dim])
        mid = (th[:-1] + th[1:]) / 2
        bins, stop = probs[..., :-1], probs[..., -1]
        if rule == "renormalize":
            return (bins @ mid) / bins.sum(-1)
        return bins @ mid + stop * mid[0]

    expected = expectation(r_logits, O + A) + 0.9 * expectation(v_logits, O + A + 1)
    torch.testing.assert_close(scores.double(), expected, atol=1e-5, rtol=1e-5)
    assert_same_plan(cached, NaivePlanner(model, disc, p).plan(hist, obs))


def test_stop_mass_rules_agree_on_a_model_without_a_stop_token():
    model, disc = make_model(3, stop_token=False), make_disc()
    hist, obs = context(E, 2)
    plans = [BeamPlanner(model, disc, params(stop_mass=rule, **GREEDY)).plan(hist, obs)
             for rule in ("zero", "renormalize", "lowest")]
    for other in plans[1:]:
        assert_same_plan(plans[0], other)


def test_a_stop_token_in_an_action_decodes_as_the_top_bin_as_the_original_clips_it():
    model, disc = make_model(3), make_disc()
    planner = BeamPlanner(model, disc, params())
    ids = np.array([[[N, 0]], [[3, N]]])
    expected = disc.decode(np.array([[[N - 1, 0]], [[3, N - 1]]]), slice(O, O + A))
    np.testing.assert_array_equal(planner._decode_actions(ids), expected)


def original_first_input(history: torch.Tensor, obs: torch.Tensor, max_context: int, seq_len: int):
    """The tests' transcription of what the original's first forward of a plan reads
    (scripts/plan.py, search/utils.py, search/sampling.py): the context keeps the last
    `max_context_transitions` transitions, prefix = context + current observation, and
    `forward` crops it to min(block_size, max_context * T - 1) tokens, dropping whole
    transitions (round_to_multiple(len - block, T)) from the front."""
    context = list(history[-max_context:]) if len(history) else []
    x = torch.cat(context + [obs])
    block = min(seq_len * T - 1, max_context * T - 1)
    if x.shape[0] > block:
        excess = x.shape[0] - block
        x = x[excess + (T - excess % T) % T :]
    return x


@pytest.mark.parametrize("seq_len", [3, 5])
def test_a_plan_starts_from_the_history_the_original_crops_to(seq_len):
    """For every history length (an episode's first plan included) and beam_context, the
    prefix equals the original's cropped input: with context c < seq_len, c - 1 past
    transitions and the current observation."""
    model, disc = make_model(seq_len), make_disc()
    for h in range(0, 8):
        hist, obs = context(2, h, seed=h)
        for c in range(1, 7):
            planner = BeamPlanner(model, disc, params(beam_context=c))
            prefix = planner._prefix(hist, obs)
            for e in range(2):
                assert prefix[e].tolist() == original_first_input(hist[e], obs[e], c, seq_len).tolist(), (h, c)


@pytest.mark.parametrize("seq_len, beam_context", [(4, 2), (4, 3), (5, 3), (3, 3), (3, 5)])
def test_the_window_is_the_originals_at_a_plans_start_and_after_every_crop(seq_len, beam_context):
    """The original feeds every token the longest run of whole transitions that fits in
    min(seq_len, beam_context) * T - 1 tokens. tt-tui's window always holds that one (it is
    a suffix of the same sequence), equals it at a plan's first token and right after each
    crop, and everywhere when beam_context >= seq_len."""
    model, disc = make_model(seq_len), make_disc()
    hist, obs = context(1, 6)
    planner = NaivePlanner(model, disc, params(beam_context=beam_context, beam_steps=5, **GREEDY))
    lengths = []
    handle = model.register_forward_pre_hook(lambda m, args: lengths.append(args[0].shape[1]))
    try:
        planner.plan(hist, obs)
    finally:
        handle.remove()
    start = planner.history_transitions * T + O
    block = min(seq_len, beam_context) * T - 1
    for i, held in enumerate(lengths):
        full = start + i  # one forward per sampled token
        excess = max(0, full - block)
        original = full - (excess + (T - excess % T) % T if excess else 0)
        assert original <= held <= seq_len * T - 1, (i, held, original)
        if i == 0 or held < lengths[i - 1] or beam_context >= seq_len:
            assert held == original, (i, held, original)
    assert any(b < a for a, b in zip(lengths, lengths[1:]))  # the plan did crop


# ---------------------------------------------------------------- sampling


class Recorder:
    """Cached planner side: records every sampling call and every selection."""

    def __init__(self):
        self.samples, self.selections = [], []

    def sampled(self, env, kind, logits, tokens):
        self.samples.append((kind, logits.clone(), tokens.clone()))

    def selected(self, env, step, scores, index):
        self.selections.append((scores.clone(), index.clone()))


class Replayer:
    """Naive planner side: at every call, compare the naive (full forward) logits and
    scores with what the cached planner saw for this env, then replay its choices."""

    def __init__(self, rec: Recorder, exact_scores: bool = True):
        self.rec = rec
        self.exact_scores = exact_scores  # False: replay a bf16 plan's choices without judging them
        self.env = -1
        self.checked = 0
        self.max_err = 0.0

    def sampled(self, env, kind, logits, tokens):
        if env.start != self.env:  # the naive planner moved on to the next env
            self.env, self.i, self.j = env.start, 0, 0
        k, ref_logits, ref_tokens = self.rec.samples[self.i]
        self.i += 1
        assert kind == k
        ref = ref_logits[env]
        assert ref.shape == logits.shape
        self.max_err = max(self.max_err, (ref - logits).abs().max().item())
        self.checked += logits.shape[1]
        return ref_tokens[env]

    def selected(self, env, step, scores, index):
        ref_scores, ref_index = self.rec.selections[self.j]
        self.j += 1
        chosen = ref_index[env]
        if not self.exact_scores:
            return chosen
        torch.testing.assert_close(scores, ref_scores[env], atol=1e-4, rtol=0)
        # the cached choice must be a top-k of the naive scores (up to float noise)
        mask = torch.ones_like(scores, dtype=torch.bool).scatter(1, chosen, False)
        if mask.any():
            assert scores.gather(1, chosen).min() >= scores[mask].max() - 1e-4
        return chosen


@pytest.mark.parametrize("objective", ["reward", "likelihood"])
@pytest.mark.parametrize("seq_len", [8, 3], ids=["no-crop", "crop-mid-plan"])
def test_sampled_plan_candidate_logits_equal_full_forward_at_every_token(seq_len, objective):
    """Every token's logits, and every selection's scores (either objective), equal the
    naive planner's full forward passes."""
    model, disc = make_model(seq_len), make_disc()
    hist, obs = context(E, 3)
    p = params(k_act=None, cdf_act=0.6, k_obs=None, cdf_obs=0.9, k_reward=None, temperature=1.3,
               objective=objective)
    rec = Recorder()
    gen = torch.Generator().manual_seed(0)
    a = BeamPlanner(model, disc, p).plan(hist, obs, generator=gen, hooks=rec)
    # sampling really happened: the expanded copies of a beam diverge
    acts = rec.samples[0][2]
    assert (acts.view(E, -1, 2)[..., 0] != acts.view(E, -1, 2)[..., 1]).any()
    rep = Replayer(rec)
    b = NaivePlanner(model, disc, p).plan(hist, obs, hooks=rep)
    assert rep.i == len(rec.samples) and rep.j == len(rec.selections)  # last env consumed all
    assert rep.checked == sum(s[1].shape[1] for s in rec.samples) * E
    assert rep.max_err <= 1e-4
    assert_same_plan(a, b)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_a_likelihood_plans_score_is_its_log_probability_under_one_full_forward(temperature):
    """The likelihood objective's score of each env's plan: the sum, over every token the
    plan sampled (actions, reward, value, then the next observation, ...; not the current
    observation, which is given), of log softmax(logits / temperature) of that token, the
    logits taken from ONE forward pass of the prefix and the plan (no crop: seq_len 8)."""
    model, disc = make_model(8), make_disc()
    hist, obs = context(E, 2)
    p = params(k_act=None, cdf_act=0.6, k_obs=None, cdf_obs=0.9, k_reward=None, temperature=temperature,
               objective="likelihood")
    result = BeamPlanner(model, disc, p).plan(hist, obs, generator=torch.Generator().manual_seed(1))
    prefix = torch.cat([hist.reshape(E, -1), obs], 1)
    plan = result.sequence.reshape(E, -1)[:, O:]  # the plan's tokens after the current observation
    window = torch.cat([prefix, plan], 1)
    with torch.no_grad():
        logp = torch.log_softmax(model(window[:, :-1]) / temperature, -1)
    picked = logp.gather(2, window[:, 1:].unsqueeze(2)).squeeze(2)[:, prefix.shape[1] - 1 :]
    np.testing.assert_allclose(result.value, picked.sum(1).numpy(), atol=1e-4, rtol=1e-5)
    reward = BeamPlanner(model, disc, params(**GREEDY)).plan(hist, obs)
    assert not np.allclose(reward.value, result.value)  # the reward objective scores something else


def test_replay_check_detects_a_wrong_model():
    """The sampling check can fail: a slightly different model is caught."""
    model, disc = make_model(3), make_disc()
    hist, obs = context(4, 2)
    p = params(k_act=None, cdf_act=0.6, k_obs=None, cdf_obs=0.9)
    rec = Recorder()
    BeamPlanner(model, disc, p).plan(hist, obs, generator=torch.Generator().manual_seed(0), hooks=rec)
    other = make_model(3)
    with torch.no_grad():
        other.blocks[1].attn.c_attn.weight.add_(1e-2)
    rep = Replayer(rec)
    with pytest.raises(AssertionError):
        NaivePlanner(other, disc, p).plan(hist, obs, hooks=rep)
        assert rep.max_err <= 1e-4


# ---------------------------------------------------------------- snapshot


def test_snapshot_parents_and_chosen_path_match_the_plan():
    model, disc = make_model(3), make_disc()
    hist, obs = context(E, 3)
    p = params(beam_width=5, beam_steps=4, k_act=None, cdf_act=0.6, k_obs=None)
    res = BeamPlanner(model, disc, p).plan(hist, obs, generator=torch.Generator().manual_seed(3), snapshot=True)
    assert len(res.snapshot) == E
    for e, snap in enumerate(res.snapshot):
        assert len(snap.steps) == 4 and len(snap.chosen) == 4
        assert (snap.steps[0].parent == 0).all()
        for step in snap.steps:
            assert step.parent.shape == (5,) and step.score.shape == (5,) and step.reward.shape == (5,)
            assert step.value.shape == (5,)
            assert step.action.shape == (5, A)
            assert ((0 <= step.parent) & (step.parent < 5)).all()
            assert not any(isinstance(v, torch.Tensor) for v in vars(step).values())
        for t in range(1, 4):  # the chosen path follows the parents
            assert snap.steps[t].parent[snap.chosen[t]] == snap.chosen[t - 1]
        for t in range(4):
            np.testing.assert_allclose(snap.steps[t].action[snap.chosen[t]], res.actions[e, t])
        assert snap.steps[-1].score[snap.chosen[-1]] == pytest.approx(res.value[e])
        assert snap.steps[-1].score.max() == pytest.approx(res.value[e])
        # each step's score is the discounted predicted rewards so far plus the value-to-go
        g, path = p.discount, snap.chosen
        for t in range(4):
            rewards = sum(g**i * snap.steps[i].reward[path[i]] for i in range(t + 1))
            expected = rewards + g ** (t + 1) * snap.steps[t].value[path[t]]
            assert snap.steps[t].score[path[t]] == pytest.approx(expected, rel=1e-4, abs=1e-4)
    assert BeamPlanner(model, disc, p).plan(hist, obs).snapshot is None


# ---------------------------------------------------------------- bf16


def test_bf16_planner_logits_close_to_fp32_and_greedy_plans_mostly_agree():
    """bf16 is not token-for-token exact: its first-token logits (before any
    divergence) are within a bf16 tolerance of fp32, and greedy first actions agree
    in most envs. The model itself is left in fp32."""
    model, disc = make_model(8), make_disc()
    hist, obs = context(E, 4)
    p = params(**GREEDY)
    r32, r16 = Recorder(), Recorder()
    a = BeamPlanner(model, disc, p).plan(hist, obs, hooks=r32)
    b = BeamPlanner(model, disc, p, dtype=torch.bfloat16).plan(hist, obs, hooks=r16)
    assert model.pos_emb.dtype == torch.float32
    l32, l16 = r32.samples[0][1], r16.samples[0][1]
    assert l16.dtype == torch.float32
    scale = l32.abs().max().item()
    err = (l32 - l16).abs().max().item()
    assert err <= 5e-2 * max(1.0, scale), (err, scale)
    agree = (a.sequence[:, 0, O : O + A] == b.sequence[:, 0, O : O + A]).all(-1).float().mean().item()
    assert agree >= 0.75, agree


# ------------------------------------------- both block kinds, random and trained weights


@pytest.fixture(scope="module")
def trained_hopper(tmp_path_factory):
    """A real training run on a real Hopper-v5 dataset: 2 layers x 32, 3-transition windows
    (so plans crop mid-plan), weights, discretizer and dimensions as eval loads them."""
    from conftest import write_tiny_config

    from tt_core.plan.agent import load_agent
    from tt_core.config import load_config
    from tt_core.events import EventBus
    from tt_core.train.trainer import Trainer

    root = tmp_path_factory.mktemp("trained")
    # two threads, fixed: the weights the bf16 bound below was set on (one thread trains
    # other weights, whose bf16 logits reach 2.03e-2; the default count follows the load)
    cfg = load_config(write_tiny_config(root / "c.yaml", root / "runs", max_steps=120, threads=2,
                                        model="{embedding_dim: 32, n_layers: 2, n_heads: 4, dropout: 0.1}"),
                      ["train.device=cpu"])
    agent = load_agent(Trainer(cfg, EventBus()).run(), torch.device("cpu"))
    return agent.model.state_dict(), agent.model.cfg, agent.discretizer


@pytest.fixture(params=[(w, b) for w in ("random", "trained") for b in (PRE_NORM, NORM_RESIDUAL)],
                ids=lambda p: f"{p[0]}-{p[1]}")
def block_case(request, trained_hopper):
    """(model, discretizer, (O, T, N)) for one block kind with random or trained weights.
    The trained case runs the trained weights through the block kind under test."""
    weights, block = request.param
    if weights == "random":
        model = make_model(3, block=block)
        return model, make_disc(), (O, T, N)
    state, gpt, disc = trained_hopper
    model = adapt_model(TrajectoryGPT(gpt), {FTT_BLOCK_KEY: block})
    model.load_state_dict(state)
    return model.eval(), disc, (gpt.observation_dim, gpt.transition_dim, gpt.num_bins)


def test_both_block_kinds_differ_so_the_proofs_below_are_about_two_networks(trained_hopper):
    state, gpt, _ = trained_hopper
    a, b = (adapt_model(TrajectoryGPT(gpt), {FTT_BLOCK_KEY: k}) for k in (PRE_NORM, NORM_RESIDUAL))
    a.load_state_dict(state), b.load_state_dict(state)
    idx = torch.randint(0, gpt.num_bins, (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (a.eval()(idx) - b.eval()(idx)).abs().max() > 1e-2


def test_greedy_plans_equal_naive_token_for_token_for_every_block_kind(block_case):
    model, disc, dims = block_case
    hist, obs = context(E, 4, dims=dims)
    p = params(beam_steps=4, **GREEDY)  # 4 steps in a 3-transition window: crops mid-plan
    assert_same_plan(BeamPlanner(model, disc, p).plan(hist, obs), NaivePlanner(model, disc, p).plan(hist, obs))


def sampled_replay(model, disc, dims, dtype=None):
    """Plan with sampling (cached planner, `dtype`), then replay its choices in the fp32
    naive planner; returns the replayer (max logit error, values checked)."""
    hist, obs = context(E, 3, dims=dims)
    p = params(beam_steps=4, k_act=None, cdf_act=0.6, k_obs=None, cdf_obs=0.9, k_reward=None, temperature=1.3)
    rec = Recorder()
    BeamPlanner(model, disc, p, dtype=dtype).plan(hist, obs, generator=torch.Generator().manual_seed(0), hooks=rec)
    rep = Replayer(rec, exact_scores=dtype is None)
    NaivePlanner(model, disc, p).plan(hist, obs, hooks=rep)
    assert rep.i == len(rec.samples) and rep.j == len(rec.selections)
    return rep


def test_every_sampled_logit_equals_the_full_forward_for_every_block_kind(block_case):
    rep = sampled_replay(*block_case)
    assert rep.checked > 0 and rep.max_err <= 1e-4


def test_bf16_planning_logits_stay_within_2e_2_of_the_fp32_full_forward(block_case):
    rep = sampled_replay(*block_case, dtype=torch.bfloat16)
    assert rep.checked > 0 and rep.max_err <= 2e-2, rep.max_err


def test_bf16_planner_follows_the_models_weights_when_they_change_in_place():
    """Evaluations during training plan with a model the optimizer keeps changing."""
    model, disc = make_model(8), make_disc()
    planner = BeamPlanner(model, disc, params(**GREEDY), dtype=torch.bfloat16)
    hist, obs = context(E, 2)
    before = Recorder()
    planner.plan(hist, obs, hooks=before)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-1.0)  # in place, as an optimizer step is
    rec = Recorder()
    planner.plan(hist, obs, hooks=rec)
    assert (rec.samples[0][1] - before.samples[0][1]).abs().max() > 1.0  # a stale copy would show
    rep = Replayer(rec, exact_scores=False)
    NaivePlanner(model, disc, params(**GREEDY)).plan(hist, obs, hooks=rep)
    assert rep.max_err <= 5e-2


# ------------------------------------------------------------------ per-env random streams


def test_with_env_streams_an_envs_sampled_plan_does_not_depend_on_its_batch_mates():
    """What env e draws comes from its own stream: planned alone or among others, and by
    either planner, its sampled plan is the same (the ground of distributed evaluation)."""
    from tt_core.model.sampling import EnvStreams

    model, disc = make_model(3), make_disc()
    p = params(cdf_act=0.6)  # sampled actions and observations
    hist, obs = context(4, 2, seed=5)
    together = BeamPlanner(model, disc, p).plan(hist, obs, generator=EnvStreams.seeded([10, 11, 12, 13], "cpu"))
    alone = BeamPlanner(model, disc, p).plan(hist[2:3], obs[2:3], generator=EnvStreams.seeded([12], "cpu"))
    assert torch.equal(together.sequence[2], alone.sequence[0])
    naive = NaivePlanner(model, disc, p).plan(hist, obs, generator=EnvStreams.seeded([10, 11, 12, 13], "cpu"))
    assert_same_plan(together, naive)
    # and the streams matter: another seed for env 2 draws other tokens
    drawn = {}
    for seed in (12, 99):
        record = Recorder()
        BeamPlanner(model, disc, p).plan(hist[2:3], obs[2:3], generator=EnvStreams.seeded([seed], "cpu"),
                                         hooks=record)
        drawn[seed] = torch.cat([t.flatten() for kind, _, t in record.samples if kind == "act"])
    assert not torch.equal(drawn[12], drawn[99])


def test_the_per_token_loop_never_waits_for_the_device(monkeypatch):
    """No .item()/bool()/.cpu()/.tolist()/.numpy() on tensors while a plan samples: on a
    GPU each would stall the queue once per token. Counted on CPU by patching the tensor
    methods: a plan makes the same few calls (its results) whatever its length."""
    import torch as _torch

    model, disc = make_model(3), make_disc()
    hist, obs = context(2, 2)
    calls: list[str] = []
    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__"):
        real = getattr(_torch.Tensor, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(_torch.Tensor, name, counted)

    def syncs(steps: int) -> list[str]:
        planner = BeamPlanner(model, disc, params(beam_steps=steps, cdf_act=0.6))
        planner.plan(hist, obs, generator=torch.Generator().manual_seed(0))  # warm-up: mask tables
        calls.clear()
        planner.plan(hist, obs, generator=torch.Generator().manual_seed(0))
        return sorted(calls)

    short, long = syncs(2), syncs(6)  # 3x the tokens, 3x the crops of the window
    assert short == long  # none of them is per token or per step
    assert len(long) <= 5, long  # the plan's results: actions, sequence, values


# ------------------------------------------------------------------ CUDA graphs


def test_on_the_cpu_every_decode_is_the_eager_decode():
    """CUDA graphs exist only on CUDA: here the planner counts every one-token decode as
    eager and plans exactly what the naive oracle plans."""
    model, disc = make_model(3), make_disc()
    p = params(**GREEDY)
    planner = BeamPlanner(model, disc, p)
    hist, obs = context(E, 3)
    assert_same_plan(planner.plan(hist, obs), NaivePlanner(model, disc, p).plan(hist, obs))
    stats = planner.graphs.stats
    # per step: A action + 1 reward decodes of the candidates; O + 1 of the beams but the last step
    assert stats.eager == p.beam_steps * (A + 1) + (p.beam_steps - 1) * (O + 1)
    assert stats.captured == stats.replayed == 0


class _FailingGraph:
    """Stands in for a torch.cuda.CUDAGraph whose replay raises (a driver error, say)."""

    def replay(self):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


@pytest.mark.parametrize("fails", ["capture", "replay"])
def test_a_cuda_graph_that_raises_finishes_the_plan_eagerly_and_graphs_stay_off(fails):
    """The graph path driven on the CPU (the CUDA calls replaced): a capture, or a replay
    of a captured graph, that raises is rewound and decoded eagerly; the plan equals the
    eager planner's, the planner stays eager for the run and says why once."""
    from tt_core.model.decode_graphs import _Graph

    model, disc = make_model(3), make_disc()
    p = params(**GREEDY)
    hist, obs = context(E, 3)
    eager = BeamPlanner(model, disc, p, graphs=False)
    planner = BeamPlanner(model, disc, p)
    graphs = planner.graphs
    graphs.enabled = True  # as on CUDA: first sight eager, second capture, then replay
    graphs._eager_on_capture_stream = lambda net, tokens, level: net.decode(tokens[:, None], level, logits="next")

    def capture(net, tokens, level):
        if fails == "capture":
            level.advance(1)  # a capture runs the decode's host half before it can fail
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")
        logits = net.decode(tokens[:, None], level, logits="next")  # the decode the capture made
        graphs.stats.captured += 1
        return _Graph(_FailingGraph(), tokens.clone(), logits)

    graphs._capture = capture
    for _ in range(3):
        assert_same_plan(planner.plan(hist, obs), eager.plan(hist, obs))
    assert not graphs.enabled and graphs.fallback.startswith("CUDA graphs failed (RuntimeError: CUDA error")
    assert "planning eagerly for the rest of this run" in graphs.fallback and "\n" not in graphs.fallback
    assert graphs.stats.replayed == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graph_plans_equal_eager_plans_across_replays_edits_and_shrinking_batches():
    """Three plans per layout (eager, captured, replayed), then a live width edit, then
    envs leaving the batch: the graphed planner picks the eager planner's tokens."""
    from tt_core.model.sampling import EnvStreams

    model, disc = make_model(3).cuda(), make_disc()
    hist, obs = context(E, 3)
    everyone, live = list(range(E)), [1, 4, 5, 11, 15]
    sampled, wider = params(cdf_act=0.6), params(beam_width=8, cdf_act=0.6)
    sharper = params(beam_width=8, cdf_act=0.9)  # same layouts: replays at once
    schedule = [(sampled, everyone)] * 3 + [(wider, everyone)] * 3 + [(sharper, everyone)] * 2
    schedule += [(sampled, live)] * 3
    graphed = BeamPlanner(model, disc, sampled)
    eager = BeamPlanner(model, disc, sampled, graphs=False)
    for i, (p, envs) in enumerate(schedule):
        plans = []
        for planner in (graphed, eager):
            planner.set_params(p)
            streams = EnvStreams.seeded(range(i, i + E), "cuda").subset(envs)
            plans.append(planner.plan(hist[envs], obs[envs], generator=streams))
        assert_same_plan(*plans)
    stats = graphed.graphs.stats
    per_plan = stats.eager // 3  # each of the 3 shapes: one plan eager, one captured, the rest replayed
    assert stats.captured == 3 * per_plan and stats.replayed == (1 + 1 + 2 + 1) * per_plan


def test_consecutive_plans_walk_the_same_decode_layouts_for_odd_and_even_step_counts(monkeypatch):
    """What lets CUDA graphs replay: plan k+1 decodes through the very buffers, rows and
    lengths of plan k, although each beam selection swaps level 1's two buffers."""
    from tt_core.model.decode_graphs import DecodeGraphs

    walked: list[tuple] = []
    real = DecodeGraphs.decode

    def spy(self, net, tokens, level):
        walked.append(level.layout())
        return real(self, net, tokens, level)

    monkeypatch.setattr(DecodeGraphs, "decode", spy)
    model, disc = make_model(3), make_disc()
    hist, obs = context(E, 3)
    for steps in (3, 4):
        planner = BeamPlanner(model, disc, params(beam_steps=steps, **GREEDY))
        plans = []
        for _ in range(3):
            walked.clear()
            planner.plan(hist, obs)
            plans.append(list(walked))
        assert plans[0] == plans[1] == plans[2]
        assert len(set(plans[0])) == len(plans[0])  # within a plan, every layout is new
