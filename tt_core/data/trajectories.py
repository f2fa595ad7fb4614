"""Minari episodes -> one flat float32 table of transitions with discounted values.

A transition is [obs, action, reward, value] where
value_t = sum_{k>=1} gamma^(k-1) r_{t+k}: the return from the NEXT step on, so the
current reward is excluded and the last step of an episode has value 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from tt_core.errors import DataError


@dataclass
class Trajectories:
    """All episodes joined along the first axis (float32 unless noted)."""

    observations: np.ndarray  # [N, O]
    actions: np.ndarray  # [N, A]
    rewards: np.ndarray  # [N]
    values: np.ndarray  # [N]
    terminals: np.ndarray  # [N] bool, True where the environment terminated
    episode_starts: np.ndarray  # int64 [E], index of each episode's first transition
    episode_lengths: np.ndarray  # int64 [E]

    @property
    def observation_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def action_dim(self) -> int:
        return self.actions.shape[1]

    @property
    def transition_dim(self) -> int:
        return self.observation_dim + self.action_dim + 2

    @property
    def num_transitions(self) -> int:
        return self.rewards.shape[0]

    def joined(self) -> np.ndarray:
        """[N, O+A+2] = [obs, act, reward, value]."""
        return np.concatenate(
            [self.observations, self.actions, self.rewards[:, None], self.values[:, None]],
            axis=1,
        ).astype(np.float32, copy=False)


def _episode_arrays(ep: Any) -> tuple[np.ndarray, ...]:
    """Validate one Minari episode; return (obs [L, O], act [L, A], rew, term, trunc)."""
    name = f"episode {ep.id}"
    if not isinstance(ep.observations, np.ndarray) or not isinstance(ep.actions, np.ndarray):
        raise DataError(f"{name}: observations and actions must be flat arrays (Box spaces)")
    rewards = np.asarray(ep.rewards, dtype=np.float64).reshape(-1)
    steps = rewards.shape[0]
    if steps == 0:
        raise DataError(f"{name}: has no steps")
    obs, act = ep.observations, ep.actions
    if obs.shape[0] != steps + 1:
        raise DataError(f"{name}: {obs.shape[0]} observations for {steps} steps (expected {steps + 1})")
    for field, arr in (("actions", act), ("terminations", ep.terminations), ("truncations", ep.truncations)):
        if len(arr) != steps:
            raise DataError(f"{name}: {len(arr)} {field} for {steps} rewards")
    # The observation after the last step has no action; TT never models it.
    obs = obs[:steps].reshape(steps, -1)
    act = act.reshape(steps, -1)
    for field, arr in (("observations", obs), ("actions", act), ("rewards", rewards)):
        if not np.issubdtype(arr.dtype, np.number):
            raise DataError(f"{name}: {field} are not numeric ({arr.dtype})")
        if np.isnan(arr).any():
            raise DataError(f"{name}: {field} contain NaN")
        if np.isinf(arr).any():
            raise DataError(f"{name}: {field} contain inf")
        if arr.size and np.abs(arr).max() > np.finfo(np.float32).max:  # training is float32
            raise DataError(f"{name}: {field} exceed the float32 range (|x| up to {np.abs(arr).max():.3g})")
    term = np.asarray(ep.terminations, dtype=bool).reshape(-1)
    trunc = np.asarray(ep.truncations, dtype=bool).reshape(-1)
    return obs, act, rewards, term, trunc


def discounted_values(rewards: np.ndarray, episode_ends: np.ndarray, discount: float) -> np.ndarray:
    """value_t = sum_{k>=1} discount^(k-1) r_{t+k} within each episode (float64).

    `episode_ends[t]` is the index of the last transition of t's episode. The
    return-to-go G_t = r_t + discount * G_{t+1} is a segmented reverse scan done in
    log2(longest episode) vectorized passes (Hillis-Steele): after the pass with
    stride s, G_t sums rewards t..t+2s-1 (clipped at the episode end). Unlike a
    cumsum of r_t * discount^t it never divides by tiny powers, so long episodes
    cannot underflow.
    """
    n = rewards.shape[0]
    ret = rewards.astype(np.float64)
    idx = np.arange(n)
    stride, power = 1, float(discount)
    while n and stride <= (episode_ends - idx).max():
        ok = idx[:-stride][idx[:-stride] + stride <= episode_ends[:-stride]]
        update = ret[ok + stride] * power
        ret[ok] += update
        stride, power = stride * 2, power * power
    values = np.zeros(n, dtype=np.float64)
    has_next = idx < episode_ends
    values[has_next] = ret[idx[has_next] + 1]
    return values


def build_trajectories(
    ds: Any, discount: float, termination_penalty: float | None
) -> Trajectories:
    """Join `ds.iterate_episodes()` into Trajectories.

    Episodes end at their last step or earlier at any termination/truncation flag
    (a dataset that forgot to split is split here). `termination_penalty` replaces
    the reward of terminated transitions (not truncated ones) before values are
    computed, as the original TT does (`rewards[realterminals] = penalty`).
    """
    obs_parts, act_parts, rew_parts, term_parts, end_parts = [], [], [], [], []
    offset = 0
    shapes: tuple[int, int] | None = None
    episodes: Iterable[Any] = ds.iterate_episodes()
    for ep in episodes:
        obs, act, rew, term, trunc = _episode_arrays(ep)
        if shapes is None:
            shapes = (obs.shape[1], act.shape[1])
        elif (obs.shape[1], act.shape[1]) != shapes:
            raise DataError(
                f"episode {ep.id}: observation/action sizes {obs.shape[1]}/{act.shape[1]} "
                f"differ from the first episode's {shapes[0]}/{shapes[1]}"
            )
        steps = rew.shape[0]
        # The last step always ends an episode, flagged or not.
        done = term | trunc
        done[-1] = True
        obs_parts.append(obs)
        act_parts.append(act)
        rew_parts.append(rew)
        term_parts.append(term)
        end_parts.append(offset + np.flatnonzero(done))
        offset += steps
    if shapes is None:
        raise DataError("dataset has no episodes")

    rewards = np.concatenate(rew_parts)
    terminals = np.concatenate(term_parts)
    if termination_penalty is not None:
        rewards[terminals] = termination_penalty
    ends = np.concatenate(end_parts)
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    lengths = (ends - starts + 1).astype(np.int64)
    episode_ends = np.repeat(ends, lengths)
    values = discounted_values(rewards, episode_ends, discount)
    return Trajectories(
        observations=np.concatenate(obs_parts).astype(np.float32),
        actions=np.concatenate(act_parts).astype(np.float32),
        rewards=rewards.astype(np.float32),
        values=values.astype(np.float32),
        terminals=terminals,
        episode_starts=starts,
        episode_lengths=lengths,
    )
