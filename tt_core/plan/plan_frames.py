"""A plan beside reality: the model's predicted observations rendered as MuJoCo frames,
next to a simulator rollout of the plan's actions from the same true state.

What the original renders every `vis_freq` env steps (`Renderer.render_plan` in
trajectory/utils/rendering.py, called by scripts/plan.py with the current plan and
`env.state_vector()`; `record --plans N` is its `vis_freq`): a plan's observations are
put into the simulator one by one (its `set_state`) and rendered; beside them, the true
state at planning time is restored and the plan's actions are played in the simulator
(its `rollout_from_state`). Where the two columns part, the model's predictions have
drifted from the dynamics.

One deviation: a MuJoCo observation leaves out the first positions (the x of Hopper,
Walker2d, HalfCheetah). The original sets them to 0; here they are taken from the true
state at planning time, so a predicted observation equal to the true one renders exactly
the true frame (tested), and the tracking camera frames both columns alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from tt_core.errors import ConfigError
from tt_core.mujoco_import import import_glfw_shielded

GAP = 4  # pixels between the two columns
HEADER = 14  # pixels of the caption band above them


@dataclass(frozen=True)
class ObservationLayout:
    """How a MuJoCo env's observation maps onto its simulator state: [qpos[left_out:], qvel]."""

    nq: int
    nv: int
    left_out: int  # leading positions the observation omits

    @classmethod
    def of(cls, env: gym.Env) -> "ObservationLayout":
        """The layout of `env`, or ConfigError when its observation is not that kind."""
        sim = env.unwrapped
        model, shape = getattr(sim, "model", None), env.observation_space.shape
        if model is None or not hasattr(sim, "set_state") or shape is None or len(shape) != 1:
            raise ConfigError(f"{env.spec.id if env.spec else env}: plans are rendered for MuJoCo envs only")
        nq, nv = int(model.nq), int(model.nv)
        left_out = nq + nv - int(shape[0])
        if not 0 <= left_out <= nq:
            raise ConfigError(f"{env.spec.id}: its observation ({shape[0]} values) is not positions then "
                              f"velocities of its {nq} + {nv} state values, so it cannot be rendered as a state")
        return cls(nq, nv, left_out)

    def state(self, observation: np.ndarray, true_state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(qpos, qvel) showing `observation`, the omitted positions from `true_state`
        ([qpos, qvel], as MujocoEnv.state_vector gives it)."""
        qpos = np.concatenate([true_state[: self.left_out], observation[: self.nq - self.left_out]])
        return qpos, np.asarray(observation[self.nq - self.left_out :], dtype=np.float64)


@dataclass(frozen=True)
class Played:
    """A simulator rollout: observations [m + 1, O] from the start, rewards [m]; m is
    shorter than the actions given when the episode ended."""

    observations: np.ndarray
    rewards: np.ndarray
    frames: list[np.ndarray]  # [m + 1] frames, when rendered
    terminated: bool  # the episode ended at the last step played


class PlanRenderer:
    """Plays and renders plans of one env id in a simulator of its own; frames are `size`
    x `size` pixels (None: a simulator that only plays, for the prediction errors)."""

    def __init__(self, env_id: str, size: int | None) -> None:
        import_glfw_shielded()
        pixels = {} if size is None else dict(render_mode="rgb_array", width=size, height=size)
        self.env = gym.make(env_id, **pixels)
        self.env.reset(seed=0)
        self.layout = ObservationLayout.of(self.env)
        self.sim = self.env.unwrapped

    def close(self) -> None:
        self.env.close()

    def _restore(self, state: np.ndarray) -> None:
        """Put the simulator in a full state [qpos, qvel] (MujocoEnv.state_vector's order)."""
        self.sim.set_state(state[: self.layout.nq], state[self.layout.nq :])

    def frame_of_observation(self, observation: np.ndarray, true_state: np.ndarray) -> np.ndarray:
        """The frame of a (predicted) observation, the omitted positions from `true_state`."""
        self.sim.set_state(*self.layout.state(observation, true_state))
        return self.env.render()

    def play(self, true_state: np.ndarray, actions: np.ndarray, render: bool = False) -> Played:
        """The simulator from `true_state` through `actions`, up to the episode's end."""
        self._restore(true_state)
        observations, rewards = [self.sim._get_obs()], []
        frames = [self.env.render()] if render else []
        terminated = False
        for action in actions:
            obs, reward, terminated, _, _ = self.sim.step(np.asarray(action, dtype=np.float64))
            observations.append(obs)
            rewards.append(reward)
            if render:
                frames.append(self.env.render())
            if terminated:
                break
        return Played(np.asarray(observations), np.asarray(rewards, dtype=np.float64), frames, terminated)

    def rollout(self, true_state: np.ndarray, actions: np.ndarray) -> list[np.ndarray]:
        """Frames of the simulator from `true_state` and after each of `actions`; an episode
        that ends early keeps its last frame."""
        frames = self.play(true_state, actions, render=True).frames
        return frames + [frames[-1]] * (len(actions) + 1 - len(frames))

    def plan_frames(self, observations: np.ndarray, actions: np.ndarray, true_state: np.ndarray) -> list[np.ndarray]:
        """Side-by-side frames [predicted | simulated] of a plan, under a caption band:
        `observations` [S, O] its predicted observations (row 0 the one it started from),
        `actions` [S, A] its actions; the simulator plays actions 0..S-2 from `true_state`,
        so frame k shows observation k of both."""
        predicted = [self.frame_of_observation(o, true_state) for o in observations]
        simulated = self.rollout(true_state, actions[: len(observations) - 1])
        gap = np.full((predicted[0].shape[0], GAP, 3), 255, dtype=np.uint8)
        return [_captioned(np.concatenate([p, gap, s], axis=1), k) for k, (p, s) in enumerate(zip(predicted, simulated))]


def _captioned(pair: np.ndarray, k: int) -> np.ndarray:
    """`pair` under a white band naming its columns and the step k of the plan."""
    from PIL import Image, ImageDraw

    width = pair.shape[1]
    column = (width - GAP) // 2
    band = Image.new("RGB", (width, HEADER), "white")
    draw = ImageDraw.Draw(band)
    draw.text((2, 1), f"model, t+{k}", fill="black")
    draw.text((column + GAP + 2, 1), f"simulator, t+{k}", fill="black")
    return np.concatenate([np.asarray(band), pair], axis=0)
