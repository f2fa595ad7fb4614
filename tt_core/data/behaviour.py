"""Behaviour policies of known quality, trained here: Stable-Baselines3 SAC with a step
budget (`tt-tui behaviour train`), the way D4RL made its MuJoCo datasets.

D4RL trained one SAC agent online per task, kept the policy it early-stopped at
"medium" quality, its replay buffer up to that point ("medium-replay") and its final
policy ("expert"). `train_behaviour` does the same within a budget: it saves the policy
every `save_every` steps with its return measured over `eval_episodes` episodes, and the
run's transitions in the order they happened (`replay.npz`), so the datasets can be cut
from it afterwards (tt_core/data/behaviour_datasets.py).

stable-baselines3 is an optional extra (`pip install -e ".[sb3]"`, included in [dev]).
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tt_core.data.sb3_policy import require_sb3, sb3_actor
from tt_core.durable import atomic_write_bytes, atomic_write_text
from tt_core.errors import DataError, OutputError

MANIFEST = "behaviour.json"  # what the run did: budget, seed, returns per saved policy
REPLAY = "replay.npz"  # every transition of the run, in order
POLICIES = "policies"  # step_<N>.zip, Stable-Baselines3's own format


@dataclass
class SavedPolicy:
    step: int
    path: str  # relative to the run folder
    mean_return: float
    std_return: float
    episodes: int


@dataclass
class BehaviourRun:
    """behaviour.json: everything needed to cut datasets and to cite the run."""

    env_id: str
    algorithm: str
    seed: int
    steps_budget: int
    steps_done: int = 0
    save_every: int = 0
    eval_episodes: int = 0
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    policies: list[SavedPolicy] = field(default_factory=list)
    replay_steps: int = 0  # transitions in replay.npz (written at every save)
    wall_s: float = 0.0
    finished: bool = False

    def save(self, folder: Path) -> None:
        atomic_write_text(folder / MANIFEST, json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path) -> "BehaviourRun":
        path = Path(folder) / MANIFEST
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            policies = [SavedPolicy(**p) for p in raw.pop("policies")]
            run = cls(**raw, policies=policies)
        except FileNotFoundError:
            raise DataError(f"{folder}: no {MANIFEST} (not a folder made by `tt-tui behaviour train`)") from None
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            raise DataError(f"{path}: unreadable ({type(exc).__name__}: {str(exc)[:80]})") from None
        if not isinstance(run.env_id, str) or not isinstance(run.replay_steps, int) or not all(
                isinstance(p.step, int) and isinstance(p.path, str) and isinstance(p.mean_return, (int, float))
                and np.isfinite(p.mean_return) for p in run.policies):
            raise DataError(f"{path}: a field has the wrong type (hand-edited?)")
        return run

    def best(self) -> SavedPolicy:
        return max(self.policies, key=lambda p: p.mean_return)


def evaluate_policy_returns(act: Callable[[np.ndarray], np.ndarray], env: Any, episodes: int,
                            seed: int) -> np.ndarray:
    """Undiscounted returns of `episodes` full episodes of `act` in `env`, each reset
    with its own seed (seed, seed + 1, ...), so earlier use of `env` does not matter."""
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return np.asarray(returns)


def train_behaviour(
    env_id: str,
    out_dir: Path,
    steps: int,
    seed: int = 0,
    save_every: int = 10_000,
    eval_episodes: int = 5,
    learning_starts: int = 10_000,
    batch_size: int = 256,
    net_arch: tuple[int, ...] = (256, 256),
    notify: Callable[[str], None] = lambda line: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> BehaviourRun:
    """Train SAC on `env_id` for `steps` environment steps (SB3's defaults, RL Zoo's
    MuJoCo `learning_starts`; the tests shrink the networks and batch), saving the
    policy and its measured return (deterministic actions, `eval_episodes` episodes)
    every `save_every` steps. A stop request ends the run at the next step with
    everything saved so far kept and marked unfinished."""
    sb3 = require_sb3()
    out_dir = Path(out_dir)
    if (out_dir / MANIFEST).exists():
        raise OutputError(f"{out_dir} already holds a behaviour run; resume it (--resume) or choose another --out")
    (out_dir / POLICIES).mkdir(parents=True, exist_ok=True)
    hyper = {"learning_starts": learning_starts, "batch_size": batch_size, "net_arch": list(net_arch)}
    run = BehaviourRun(env_id=env_id, algorithm=f"SAC (stable-baselines3 {sb3.__version__})",
                       seed=seed, steps_budget=steps, save_every=save_every,
                       eval_episodes=eval_episodes, hyperparameters=hyper)
    env, model = _sac(run)
    run.hyperparameters.update({name: getattr(model, name) for name in ("learning_rate", "gamma", "tau", "ent_coef")})
    return _learn(run, env, model, out_dir, notify, should_stop)


def resume_behaviour(out_dir: Path, steps: int, notify: Callable[[str], None] = lambda line: None,
                     should_stop: Callable[[], bool] = lambda: False) -> BehaviourRun:
    """Continue a behaviour run from its newest policy up to `steps` in all: its
    networks, optimizers and entropy coefficient, and its replay buffer refilled from
    replay.npz (the episode running at the save is cut there, as a time limit would).
    Random streams start afresh, so the continuation is not the uninterrupted run's."""
    from stable_baselines3.common.save_util import load_from_zip_file

    out_dir = Path(out_dir)
    run = BehaviourRun.load(out_dir)
    if not run.policies:
        raise DataError(f"{out_dir}: the behaviour run saved no policy to resume from")
    last = run.policies[-1]
    if steps <= last.step:
        raise DataError(f"{out_dir}: already at step {last.step}; give --steps above it")
    if run.replay_steps < last.step:
        raise DataError(f"{out_dir}: {REPLAY} holds {run.replay_steps} transitions for step {last.step}")
    run.steps_budget = steps
    env, model = _sac(run)
    try:
        # tensors only (load_data=False: the zip's pickled JSON is never read), one read
        _, params, variables = load_from_zip_file(out_dir / last.path, device="cpu", load_data=False)
        model.set_parameters(params, exact_match=True, device="cpu")
        model.log_ent_coef.data.copy_(variables["log_ent_coef"])
        _refill(model, out_dir / REPLAY)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, zipfile.BadZipFile) as exc:
        raise DataError(f"{out_dir}: cannot resume from {last.path} ({type(exc).__name__}: {str(exc)[:80]})") from None
    model.num_timesteps = model._num_timesteps_at_start = last.step
    notify(f"resuming {out_dir} at step {last.step} (replay: {model.replay_buffer.size()} transitions)")
    return _learn(run, env, model, out_dir, notify, should_stop, start=last.step)


def _sac(run: BehaviourRun) -> tuple[Any, Any]:
    """The env and a fresh SAC for `run`, its replay buffer sized for the whole budget."""
    sb3 = require_sb3()
    from tt_core.data.minari_io import make_env

    env = make_env(run.env_id, None)
    h = run.hyperparameters
    model = sb3.SAC("MlpPolicy", env, seed=run.seed, device="cpu", verbose=0, learning_starts=h["learning_starts"],
                    buffer_size=run.steps_budget, batch_size=h["batch_size"],
                    policy_kwargs={"net_arch": list(h["net_arch"])})
    return env, model


def _learn(run: BehaviourRun, env: Any, model: Any, out_dir: Path, notify: Callable[[str], None],
           should_stop: Callable[[], bool], start: int = 0) -> BehaviourRun:
    saver = _PolicySaver(model, out_dir, run, notify)
    # SB3's default logger, even silent, makes an empty SB3-<date> folder in the temp dir
    # at every learn(); the run's own files say all there is to say
    model.set_logger(require_sb3().common.logger.Logger(folder=None, output_formats=[]))
    model.learn(total_timesteps=run.steps_budget - start, reset_num_timesteps=start == 0,
                callback=_checkpoints(saver, run.save_every, should_stop))
    # a stop ends learning before the last step's transition is stored or learned from:
    # the policy is the one of the step before, which the buffer's size counts
    done = min(int(model.num_timesteps), model.replay_buffer.size())
    if not run.policies or run.policies[-1].step != done:
        saver.save(done)  # else the last save was at `done`, after its transition was stored
    run.steps_done, run.finished = done, done >= run.steps_budget
    run.wall_s = saver.elapsed()
    run.save(out_dir)
    saver.close()
    env.close()
    return run


def _refill(model: Any, replay: Path) -> None:
    """Put a run's saved transitions back into a fresh SAC's replay buffer."""
    with np.load(replay) as z:
        arrays = {k: z[k] for k in z.files}
    n = len(arrays["rewards"])
    buf = model.replay_buffer
    timeouts = arrays["truncations"].copy()
    timeouts[-1] = not arrays["terminations"][-1]  # the episode running at the save ends there
    buf.observations[:n, 0] = arrays["observations"]
    buf.next_observations[:n, 0] = arrays["next_observations"]
    buf.actions[:n, 0] = model.policy.scale_action(arrays["actions"])
    buf.rewards[:n, 0] = arrays["rewards"]
    buf.dones[:n, 0] = arrays["terminations"] | timeouts
    buf.timeouts[:n, 0] = timeouts
    buf.pos, buf.full = n % buf.buffer_size, n >= buf.buffer_size


class _PolicySaver:
    """Saves the policy under training and its measured return into the run."""

    def __init__(self, model: Any, out_dir: Path, run: BehaviourRun, notify: Callable[[str], None]) -> None:
        from tt_core.data.minari_io import make_env

        self.model, self.out_dir, self.run, self.notify = model, out_dir, run, notify
        self.eval_env = make_env(run.env_id, None)  # one for the run's measurements
        self.start, self.before = time.monotonic(), run.wall_s  # a resumed run's earlier time counts

    def close(self) -> None:
        self.eval_env.close()

    def elapsed(self) -> float:
        """Wall time of the run so far, earlier sessions included."""
        return self.before + time.monotonic() - self.start

    def save(self, step: int) -> None:
        run = self.run
        rel = f"{POLICIES}/step_{step}.zip"
        self.model.save(self.out_dir / rel)
        run.replay_steps = _save_replay(self.model, self.out_dir / REPLAY)
        returns = evaluate_policy_returns(sb3_actor(self.model, True), self.eval_env, run.eval_episodes,
                                          10_000 + step)
        run.policies.append(SavedPolicy(step, rel, float(returns.mean()), float(returns.std()), run.eval_episodes))
        run.steps_done, run.wall_s = step, self.elapsed()
        run.save(self.out_dir)
        self.notify(f"step {step:>8}: return {returns.mean():8.1f} ± {returns.std():6.1f} "
                    f"({run.wall_s / 60:.1f} min)")


def _checkpoints(saver: _PolicySaver, every: int, should_stop: Callable[[], bool]) -> Any:
    """An SB3 callback: save every `every` steps; a stop request ends learning."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Checkpoints(BaseCallback):
        def _on_step(self) -> bool:
            return not should_stop()

        def _on_rollout_end(self) -> None:  # after the step's transition is stored (one step per rollout)
            if self.num_timesteps % every == 0:
                saver.save(self.num_timesteps)

    return Checkpoints()


def _save_replay(model: Any, path: Path) -> int:
    """Every transition in the replay buffer so far (the buffer holds the whole budget,
    so in the order they happened), actions in the env's units, episode ends split into
    termination and truncation (SB3 stores a time limit as done + timeout); written
    atomically at every save, so a killed run keeps its replay up to its last policy.
    Returns the number of transitions."""
    buf = model.replay_buffer
    n = buf.size()
    done = buf.dones[:n, 0].astype(bool)
    timeout = buf.timeouts[:n, 0].astype(bool)
    out = io.BytesIO()
    np.savez(out, observations=buf.observations[:n, 0], next_observations=buf.next_observations[:n, 0],
             actions=model.policy.unscale_action(buf.actions[:n, 0]).astype(np.float32),
             rewards=buf.rewards[:n, 0].astype(np.float64), terminations=done & ~timeout, truncations=timeout)
    atomic_write_bytes(path, out.getvalue())
    return n
