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

- value k (k >= 0): |predicted value token - realized value| at the episode step the plan's
  row k stands for, the realized value being what the model was trained to predict there:
  the discounted return from the next step on, `discounted_values` of the episode's own
  rewards (tt_core/data/trajectories.py: the same formula and discount, the terminal
  reward replaced by the termination penalty). It is known once the episode has ended:
  at every step of an episode that terminated, and, where it was truncated (max_steps,
  a stop), at the steps whose unseen rest weighs at most TAIL_WEIGHT (discount^(steps
  left) <= 1 %), so a cut-off episode does not count as the model's error. The value
  errors of an episode's plans are added when it ends (`RealizedValues`). Unlike the
  observation and reward errors, which replay the plan's own actions, this compares with
  the trajectory the agent executed: after the first `plan_every` steps it replans, so
  for k >= 1 the error also holds the gap between the plan and what was executed (and
  beam search, keeping the highest predicted values, biases it upward). At k = 0 it is
  the model's error alone.

Both sides are compared as bin centers (the simulated values discretized with the run's
own bins), so a model that predicts every token right scores exactly 0 and the
quantization of the data is not counted as error. A plan that predicts its episode's end
(a stop token), and a simulated episode that ends, are compared up to that end.
"""

from __future__ import annotations

import math

import numpy as np

from tt_core.data.discretizer import Discretizer
from tt_core.data.trajectories import discounted_values
from tt_core.events import PREDICTION_KINDS as KINDS
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


# A truncated episode's realized value counts at a step when the rewards it never saw
# weigh at most this much: discount^(steps left) <= TAIL_WEIGHT.
TAIL_WEIGHT = 0.01


class RealizedValues:
    """The values each env's plans predicted, held until its episode ends and the
    discounted returns they predicted are known; then their errors per step into the plan."""

    def __init__(self, disc: Discretizer, discount: float, termination_penalty: float | None) -> None:
        self.disc, self.discount, self.penalty = disc, discount, termination_penalty
        self._dim = slice(disc.dim - 1, disc.dim)  # the value dimension
        self._plans: dict[int, list[tuple[int, np.ndarray]]] = {}
        self._rewards: dict[int, list[float]] = {}

    def planned(self, env: int, step: int, tokens: np.ndarray, observation_dim: int) -> None:
        """Env `env` planned at episode step `step` (rows taken so far); `tokens` [S, T]
        its plan, whose row k predicts the value at step `step + k`."""
        rows = predicted_rows(tokens, observation_dim, self.disc.num_bins)
        values = self.disc.decode(rows[:, -1:], self._dim)[:, 0]
        values[tokens[: len(rows), -1] == self.disc.num_bins] = np.nan  # a stop token: no value predicted
        self._plans.setdefault(env, []).append((step, values))

    def rewarded(self, env: int, reward: float) -> None:
        """The reward of env `env`'s next step."""
        self._rewards.setdefault(env, []).append(float(reward))

    def ended(self, env: int, terminated: bool) -> list[np.ndarray]:
        """Env `env`'s episode is over: the value errors [S] of each of its plans (NaN
        where the realized value is not known), and its plans and rewards forgotten."""
        plans, rewards = self._plans.pop(env, []), np.array(self._rewards.pop(env, []), dtype=np.float64)
        L = len(rewards)
        if not L or not plans:
            return []
        if terminated and self.penalty is not None:
            rewards[-1] = self.penalty
        realized = discounted_values(rewards, np.full(L, L - 1), self.discount)
        known = np.ones(L, dtype=bool) if terminated else self.discount ** (L - 1 - np.arange(L)) <= TAIL_WEIGHT
        realized = self.disc.decode(self.disc.encode(realized[:, None], self._dim), self._dim)[:, 0]
        out = []
        for start, values in plans:
            err = np.full(len(values), np.nan)
            steps = start + np.arange(len(values))
            ok = (steps < L) & np.isfinite(values)
            ok[ok] &= known[steps[ok]]
            err[ok] = np.abs(values[ok] - realized[steps[ok]])
            out.append(err)
        return out


class HorizonErrors:
    """Running means of plan errors per step k into the plan."""

    def __init__(self) -> None:
        self._sums: dict[str, list[float]] = {kind: [] for kind in KINDS}
        self._counts: dict[str, list[int]] = {kind: [] for kind in KINDS}

    def _grow(self, kind: str, n: int) -> None:
        extra = n - len(self._sums[kind])
        if extra > 0:
            self._sums[kind].extend([0.0] * extra)
            self._counts[kind].extend([0] * extra)

    def add(self, kind: str, errors: np.ndarray) -> None:
        """One plan's errors of `kind` (one of KINDS), NaN where undefined."""
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
        """{"observation": [mean or None per k], "reward": [...], "value": [...], counts,
        the observation scale's basis}."""
        out: dict = {"observation_scale": basis}
        for kind in KINDS:
            out[kind] = [s / c if c else None for s, c in zip(self._sums[kind], self._counts[kind])]
            out[f"{kind}_count"] = list(self._counts[kind])
        return out
