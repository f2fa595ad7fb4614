"""Prediction errors per step into a plan (tt_core/plan/prediction.py), against a real
MuJoCo simulator: zero for a plan whose every token is right, positive where one is not."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tt_core.data.discretizer import Discretizer
from tt_core.plan.plan_frames import PlanRenderer
from tt_core.data.trajectories import discounted_values
from tt_core.plan.prediction import TAIL_WEIGHT, HorizonErrors, RealizedValues, observation_scale, plan_errors

O, A = 11, 3  # Hopper-v5
N = 50


@pytest.fixture(scope="module")
def hopper():
    env = gym.make("Hopper-v5")
    env.reset(seed=1)
    env.action_space.seed(1)
    data = [env.step(env.action_space.sample()) for _ in range(200)]
    obs = np.stack([d[0] for d in data])
    acts = np.random.default_rng(0).uniform(-1, 1, (len(obs), A))
    rew = np.array([d[1] for d in data])
    rew[:5] = -100.0  # terminal steps of the data carry the termination penalty
    table = np.concatenate([obs, acts, rew[:, None], rew[:, None]], axis=1)
    disc = Discretizer.fit(table, N, "quantile")
    env.reset(seed=2)
    for _ in range(3):
        env.step(env.action_space.sample())
    sim = PlanRenderer("Hopper-v5", None)
    yield disc, env.unwrapped.state_vector(), sim
    sim.close()


def perfect_plan(disc, state, sim, steps: int) -> np.ndarray:
    """Tokens [steps, T] of a plan whose observations and rewards are exactly (to the
    bin) what the simulator does with its actions."""
    act_tok = np.random.default_rng(3).integers(0, N, (steps, A))
    actions = disc.decode(act_tok, slice(O, O + A))
    played = sim.play(state, actions[: steps - 1])
    assert len(played.rewards) == steps - 1  # no fall within the plan
    tokens = np.zeros((steps, O + A + 2), dtype=np.int64)
    tokens[:, :O] = disc.encode(played.observations, slice(0, O))
    tokens[:, O : O + A] = act_tok
    tokens[:-1, O + A] = disc.encode(played.rewards[:, None], slice(O + A, O + A + 1))[:, 0]
    return tokens


def test_a_plan_whose_every_token_is_right_has_zero_error_and_a_wrong_one_shows(hopper):
    disc, state, sim = hopper
    scale = np.ones(O)
    tokens = perfect_plan(disc, state, sim, 5)
    obs_err, rew_err = plan_errors(sim, disc, tokens, state, scale, O, A)
    assert np.isnan(obs_err[0]) and np.all(obs_err[1:] == 0)
    assert np.all(rew_err[:4] == 0) and np.isnan(rew_err[4])  # the last action is never played
    wrong = tokens.copy()
    wrong[2, 4] = (wrong[2, 4] + 10) % N  # observation 2, one dimension off by 10 bins
    obs_err, _ = plan_errors(sim, disc, wrong, state, scale, O, A)
    assert obs_err[2] > 0 and obs_err[1] == 0 and obs_err[3] == 0


def test_a_predicted_end_stops_the_comparison_there(hopper):
    disc, state, sim = hopper
    tokens = perfect_plan(disc, state, sim, 5)
    tokens[3, 0] = N  # the stop token: the plan says its episode ends at row 3
    obs_err, rew_err = plan_errors(sim, disc, tokens, state, np.ones(O), O, A)
    assert np.all(obs_err[1:3] == 0) and np.all(np.isnan(obs_err[3:]))
    assert np.all(rew_err[:2] == 0) and np.all(np.isnan(rew_err[2:]))


def test_a_simulated_fall_is_compared_as_the_data_scored_it_with_the_termination_penalty(hopper):
    disc, state, sim = hopper
    fallen = state.copy()
    fallen[1] = 0.3  # the torso below Hopper's healthy height: the first step terminates
    tokens = np.zeros((3, O + A + 2), dtype=np.int64)
    tokens[:, :O] = disc.encode(np.tile(sim.play(fallen, np.zeros((0, A))).observations[0], (3, 1)), slice(0, O))
    tokens[0, O + A] = disc.encode(np.array([[-100.0]]), slice(O + A, O + A + 1))[0, 0]
    _, with_penalty = plan_errors(sim, disc, tokens, fallen, np.ones(O), O, A, termination_penalty=-100.0)
    _, without = plan_errors(sim, disc, tokens, fallen, np.ones(O), O, A, termination_penalty=None)
    assert with_penalty[0] == 0 and without[0] > 50 and np.all(np.isnan(with_penalty[1:]))


def test_errors_are_scaled_by_the_data_std_or_else_the_bin_centers_spread(hopper):
    disc = hopper[0]
    std = np.linspace(0.5, 1.5, O)
    scale, basis = observation_scale(disc, {"observation_std": std.tolist()}, O)
    assert basis == "data std" and np.allclose(scale, std)
    scale, basis = observation_scale(disc, {}, O)
    assert basis == "bin-center std" and np.allclose(scale, disc.centers[:O].std(axis=1))


NUMBERISH = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10 ** 400, 10 ** 400),
                      st.text(max_size=3), st.booleans(), st.none())


def finite_number(x) -> bool:
    """A JSON number (not a bool) that a float holds, finite."""
    if type(x) not in (int, float):
        return False
    try:
        return math.isfinite(float(x))
    except OverflowError:
        return False


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(std=st.one_of(st.none(), st.booleans(), st.text(max_size=12), st.integers(-10 ** 400, 10 ** 400),
                     st.lists(NUMBERISH, max_size=14), st.lists(NUMBERISH, min_size=O, max_size=O),
                     st.lists(st.floats(-1e3, 1e3), min_size=O, max_size=O)))
def test_any_observation_std_in_a_hand_edited_dataset_json_gives_a_usable_scale(hopper, std):
    """dataset.json is the user's file: whatever its observation_std holds, the scale is
    O finite positive numbers, the data's std only when it is O finite numbers."""
    disc = hopper[0]
    scale, basis = observation_scale(disc, {"observation_std": std}, O)
    assert scale.shape == (O,) and np.all(np.isfinite(scale)) and np.all(scale > 0)
    good = isinstance(std, list) and len(std) == O and all(finite_number(x) for x in std)
    assert basis == ("data std" if good else "bin-center std")


def test_horizon_means_skip_undefined_steps_and_merge_across_ranks():
    a, b = HorizonErrors(), HorizonErrors()
    a.add("observation", np.array([np.nan, 1.0, 3.0]))
    b.add("observation", np.array([np.nan, 3.0, np.nan, 5.0]))
    a.merge(b)
    s = a.summary("data std")
    assert s["observation"] == [None, 2.0, 3.0, 5.0] and s["observation_count"] == [0, 2, 1, 1]
    assert s["reward"] == [] and s["value"] == [] and s["observation_scale"] == "data std"


def value_plan(disc, values: np.ndarray) -> np.ndarray:
    """Tokens [len(values), T] whose value column holds `values` (the rest arbitrary)."""
    tokens = np.zeros((len(values), disc.dim), dtype=np.int64)
    tokens[:, -1] = disc.encode(np.asarray(values, dtype=np.float64)[:, None], slice(disc.dim - 1, disc.dim))[:, 0]
    return tokens


def realized(rewards, discount, penalty=None):
    rewards = np.array(rewards, dtype=np.float64)
    if penalty is not None:
        rewards[-1] = penalty
    return discounted_values(rewards, np.full(len(rewards), len(rewards) - 1), discount)


def test_values_that_were_the_episodes_own_discounted_returns_have_zero_error(hopper):
    """A plan's row k predicts the value at episode step start + k: the discounted return
    from the next step on, the terminal reward counted as the termination penalty, as the
    training data's values were made. Rows beyond the episode's end are not compared."""
    disc, _, _ = hopper
    rewards = [1.0, 2.0, 0.5, 3.0, 1.5, 2.5]
    truth = realized(rewards, 0.9, penalty=-100.0)
    values = RealizedValues(disc, 0.9, -100.0)
    values.planned(0, 0, value_plan(disc, truth[:4]), O)
    values.planned(0, 3, value_plan(disc, [*truth[3:], 7.0, 7.0]), O)  # two rows past the end
    for r in rewards:
        values.rewarded(0, r)
    first, second = values.ended(0, terminated=True)
    assert np.all(first == 0) and len(first) == 4
    assert np.all(second[:3] == 0) and np.isnan(second[3:]).all()
    assert values.ended(0, terminated=True) == []  # forgotten with its episode


def test_a_wrong_value_shows_as_its_distance_to_the_realized_return_in_bin_centers(hopper):
    disc, _, _ = hopper
    dim = slice(disc.dim - 1, disc.dim)
    truth = realized([1.0, 1.0, 1.0], 0.99, penalty=-100.0)
    wrong = disc.centers[-1, -1]  # the top value bin
    values = RealizedValues(disc, 0.99, -100.0)
    values.planned(0, 0, value_plan(disc, [wrong, *truth[1:]]), O)
    for r in (1.0, 1.0, 1.0):
        values.rewarded(0, r)
    (err,) = values.ended(0, terminated=True)
    expected = abs(wrong - disc.decode(disc.encode(truth[:1, None], dim), dim)[0, 0])
    assert err[0] == pytest.approx(expected) and expected > 0 and np.all(err[1:] == 0)


def test_a_truncated_episode_compares_only_steps_whose_unseen_rewards_weigh_under_the_tail(hopper):
    disc, _, _ = hopper
    discount, L = 0.5, 12
    values = RealizedValues(disc, discount, -100.0)
    values.planned(3, 0, value_plan(disc, realized([1.0] * L, discount)), O)
    for _ in range(L):
        values.rewarded(3, 1.0)
    (err,) = values.ended(3, terminated=False)  # cut at max_steps: no penalty, the rest unknown
    steps_left = L - 1 - np.arange(L)
    known = discount ** steps_left <= TAIL_WEIGHT
    assert known.any() and not known.all()
    assert np.all(err[known] == 0) and np.isnan(err[~known]).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rewards=st.lists(st.floats(-5, 5), min_size=1, max_size=40), terminated=st.booleans(),
       discount=st.floats(0.05, 1.0), plans=st.lists(st.tuples(st.integers(0, 45), st.integers(1, 8)), max_size=6))
def test_value_errors_are_nonnegative_where_known_and_zero_for_the_truth(hopper, rewards, terminated, discount, plans):
    """Any episode and any plans (started anywhere, even past the end): one error per row,
    NaN exactly where the realized value is unknown, and plans that predicted the realized
    values score 0 wherever they are compared."""
    disc, _, _ = hopper
    L = len(rewards)
    truth = realized(rewards, discount, penalty=-100.0 if terminated else None)
    padded = np.concatenate([truth, np.zeros(60)])
    values = RealizedValues(disc, discount, -100.0)
    for start, rows in plans:
        values.planned(1, start, value_plan(disc, padded[start : start + rows]), O)
    for r in rewards:
        values.rewarded(1, r)
    errors = values.ended(1, terminated)
    assert len(errors) == len(plans)
    for (start, rows), err in zip(plans, errors):
        steps = start + np.arange(rows)
        known = (steps < L) & ((discount ** (L - 1 - np.minimum(steps, L - 1)) <= TAIL_WEIGHT) | terminated)
        assert len(err) == rows
        assert np.array_equal(np.isfinite(err), known)
        assert np.all(err[known] == 0)


def test_a_value_predicted_as_a_stop_token_is_not_compared(hopper):
    disc, _, _ = hopper
    truth = realized([1.0, 2.0, 3.0], 0.9, penalty=-100.0)
    tokens = value_plan(disc, truth)
    tokens[1, -1] = disc.num_bins  # the stop token where row 1's value is
    values = RealizedValues(disc, 0.9, -100.0)
    values.planned(0, 0, tokens, O)
    for r in (1.0, 2.0, 3.0):
        values.rewarded(0, r)
    (err,) = values.ended(0, terminated=True)
    assert err[0] == 0 and np.isnan(err[1]) and err[2] == 0
