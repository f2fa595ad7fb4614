"""How far a plan's predictions drift from the dynamics, per horizon: the paper's long-horizon
comparison as a number.

At each planning step the best plan's own actions are played in a simulator from the env's
true state (tt_core/plan/plan_frames.py, the reference column of the plan GIFs), and the
plan's predicted observations and rewards are compared with what the simulator gave, k
steps into the plan:

- observation k (k >= 1; row 0 is the one the plan started from): the root mean square
  over dimensions of (predicted - simulated) / scale, scale the data's standard deviation
  of that dimension (`observation_std` of the run's dataset.json; runs made before it was
  recorded use the spread of the bin centers, which approximates it for quantile bins);
- reward k (k >= 0, the reward of the plan's k-th action): |predicted - simulated|, the
  simulated reward of a terminating step replaced by the run's termination penalty, as
  the training data's was (the original's datasets/sequence.py sets the reward of every
  real terminal to the penalty, and tt_core/data/trajectories.py does the same).

Both sides are compared as bin centers (the simulated values discretized with the run's
own bins), so a model that predicts every token right scores exactly 0 and the
quantization of the data is not counted as error. A plan that predicts its episode's end
(a stop token), and a simulated episode that ends, are compared up to that end.
"""

from __future__ import annotations

import math

import numpy as np

from tt_core.data.discretizer import Discretizer
from tt_core.plan.plan_frames import PlanRenderer


def observation_scale(disc: Discretizer, meta: dict, observation_dim: int) -> tuple[np.ndarray, str]:
    """(per-dimension scale of observation errors, what it is): dataset.json's
    `observation_std` when it is `observation_dim` finite numbers (a hand-edited or older
    file may hold anything else there), else the spread of the bin centers."""
    std = meta.get("observation_std")
    if isinstance(std, list) and len(std) == observation_dim and all(map(_finite_number, std)):
        scale, basis = np.asarray(std, dtype=np.float64), "data std"
    else:
        scale, basis = disc.centers[:observation_dim].std(axis=1), "bin-center std"
    return np.where(scale > 0, scale, 1.0), basis


def predicted_rows(tokens: np.ndarray, observation_dim: int, num_bins: int) -> np.ndarray:
    """A plan's tokens [S, T] up to the row whose observation holds a stop token (id
    `num_bins`: the plan predicts its episode's end there); a stop token elsewhere in the
    rows kept counts as the last bin, as the planner decodes actions."""
    ended = np.flatnonzero((tokens[:, :observation_dim] == num_bins).any(1))
    return np.minimum(tokens[: ended[0] if len(ended) else len(tokens)], num_bins - 1)


def _finite_number(x) -> bool:
    if type(x) not in (int, float):  # not bool, str, None, a list...
        return False
    try:
        return math.isfinite(x)
    except OverflowError:  # an int beyond float
        return False


def plan_errors(sim: PlanRenderer, disc: Discretizer, tokens: np.ndarray, true_state: np.ndarray,
                scale: np.ndarray, observation_dim: int, action_dim: int,
                termination_penalty: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(observation error [S], reward error [S]) of one plan's tokens [S, T] against the
    simulator from `true_state`; NaN where there is nothing to compare (observation 0,
    beyond an end)."""
    O, A = observation_dim, action_dim
    S = len(tokens)
    obs_err, rew_err = np.full(S, np.nan), np.full(S, np.nan)
    tokens = predicted_rows(tokens, O, disc.num_bins)
    rows = len(tokens)  # transitions the plan predicts
    if rows == 0:
        return obs_err, rew_err
    actions = disc.decode(tokens[:, O : O + A], slice(O, O + A))
    played = sim.play(true_state, actions[: rows - 1])
    seen = len(played.observations)  # rows with a simulated observation
    both = slice(1, seen)
    simulated = disc.decode(disc.encode(played.observations[both], slice(0, O)), slice(0, O))
    predicted = disc.decode(tokens[both, :O], slice(0, O))
    obs_err[both] = np.sqrt((((predicted - simulated) / scale) ** 2).mean(axis=1))
    m = len(played.rewards)
    reward_dim = slice(O + A, O + A + 1)
    rewards = played.rewards.copy()
    if played.terminated and termination_penalty is not None:
        rewards[-1] = termination_penalty
    simulated_r = disc.decode(disc.encode(rewards[:, None], reward_dim), reward_dim)[:, 0]
    rew_err[:m] = np.abs(disc.decode(tokens[:m, O + A : O + A + 1], reward_dim)[:, 0] - simulated_r)
    return obs_err, rew_err


class HorizonErrors:
    """Running means of plan errors per step k into the plan."""

    def __init__(self) -> None:
        self._sums: dict[str, list[float]] = {"observation": [], "reward": []}
        self._counts: dict[str, list[int]] = {"observation": [], "reward": []}

    def _grow(self, kind: str, n: int) -> None:
        extra = n - len(self._sums[kind])
        if extra > 0:
            self._sums[kind].extend([0.0] * extra)
            self._counts[kind].extend([0] * extra)

    def add(self, kind: str, errors: np.ndarray) -> None:
        """One plan's errors of `kind` (observation or reward), NaN where undefined."""
        self._grow(kind, len(errors))
        for k, e in enumerate(errors):
            if np.isfinite(e):
                self._sums[kind][k] += float(e)
                self._counts[kind][k] += 1

    def merge(self, other: "HorizonErrors") -> None:
        """Add `other`'s sums (another rank's) to these."""
        for kind in self._sums:
            self._grow(kind, len(other._sums[kind]))
            for k, (s, c) in enumerate(zip(other._sums[kind], other._counts[kind])):
                self._sums[kind][k] += s
                self._counts[kind][k] += c

    def summary(self, basis: str) -> dict:
        """{"observation": [mean or None per k], "reward": [...], counts, the scale's basis}."""
        out: dict = {"observation_scale": basis}
        for kind in ("observation", "reward"):
            out[kind] = [s / c if c else None for s, c in zip(self._sums[kind], self._counts[kind])]
            out[f"{kind}_count"] = list(self._counts[kind])
        return out
