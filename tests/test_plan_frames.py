"""Plans beside reality (tt_core/plan/plan_frames.py): real MuJoCo rendering of predicted
observations and of the simulator's rollout of a plan's actions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from tt_core.errors import ConfigError
from tt_core.plan.plan_frames import GAP, HEADER, ObservationLayout, PlanRenderer

SIZE = 64


def _stepped(env_id: str, steps: int, seed: int) -> gym.Env:
    """An env a few random steps into an episode (so its state is not the reset pose)."""
    env = gym.make(env_id)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    for _ in range(steps):
        env.step(env.action_space.sample())
    return env


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Walker2d-v5"])
def test_a_predicted_observation_equal_to_the_true_one_renders_the_true_frame(env_id):
    env = _stepped(env_id, 7, seed=3)
    state, obs = env.unwrapped.state_vector(), env.unwrapped._get_obs()
    renderer = PlanRenderer(env_id, SIZE)
    try:
        (true_frame,) = renderer.rollout(state, np.zeros((0, env.action_space.shape[0])))  # the true state's frame
        assert np.array_equal(renderer.frame_of_observation(obs, state), true_frame)
        moved = obs.copy()
        moved[1] += 0.5  # a joint angle: a wrong prediction shows
        assert not np.array_equal(renderer.frame_of_observation(moved, state), true_frame)
    finally:
        renderer.close()


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Walker2d-v5"])
def test_the_simulated_column_is_what_the_env_does_with_the_plans_actions(env_id):
    env = _stepped(env_id, 5, seed=4)
    state = env.unwrapped.state_vector()
    actions = np.random.default_rng(0).uniform(-1, 1, (3, env.action_space.shape[0]))
    renderer = PlanRenderer(env_id, SIZE)
    twin = gym.make(env_id, render_mode="rgb_array", width=SIZE, height=SIZE)
    try:
        frames = renderer.rollout(state, actions)
        twin.reset(seed=0)
        twin.unwrapped.set_state(state[: renderer.layout.nq], state[renderer.layout.nq :])
        for action in actions:
            twin.unwrapped.step(action)
        assert len(frames) == len(actions) + 1 and np.array_equal(frames[-1], twin.render())
        side = renderer.plan_frames(np.stack([env.unwrapped._get_obs()] * 4), np.vstack([actions, actions[:1]]), state)
        assert len(side) == 4 and side[0].shape == (HEADER + SIZE, 2 * SIZE + GAP, 3)
        pictures = side[0][HEADER:]
        assert np.array_equal(pictures[:, :SIZE], pictures[:, SIZE + GAP :])  # both start at the true state
    finally:
        renderer.close()
        twin.close()


def test_envs_whose_observation_is_not_their_state_are_refused_in_one_line():
    with pytest.raises(ConfigError, match="MuJoCo envs only"):
        ObservationLayout.of(gym.make("CartPole-v1"))
    with pytest.raises(ConfigError, match=r"Ant-v5: its observation \(105 values\) is not positions then velocities"):
        ObservationLayout.of(gym.make("Ant-v5"))
