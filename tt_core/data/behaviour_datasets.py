"""D4RL-style datasets cut from a behaviour run (tt_core/data/behaviour.py), named as
Minari names its MuJoCo datasets: `local/NAME/medium-v0`, `medium-replay-v0`, `expert-v0`.

- medium: `steps` steps of the saved policy whose measured return is closest to a third
  of the best return of the run (D4RL early-stopped its SAC agent there);
- medium-replay: the run's replay buffer up to that policy's step, every transition in
  the order it happened (D4RL's "all samples observed until the medium level");
- expert: `steps` steps of the run's best policy.

Every dataset carries D4RL's reference scores, measured here over `ref_episodes` full
episodes: ref_min_score of a uniformly random policy, ref_max_score of the best policy
(its mean actions: the best it does; its datasets record sampled actions, as D4RL's), so `tt-tui eval` and `report` give the
normalized score 100 * (R - ref_min) / (ref_max - ref_min). What was chosen and measured
is written to `datasets.json` in the run folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from minari.data_collector import EpisodeBuffer

from tt_core.data.behaviour import REPLAY, BehaviourRun, SavedPolicy, evaluate_policy_returns
from tt_core.data.minari_io import (DatasetInfo, check_new_id, collect_dataset, make_env, policy_actor,
                                    write_dataset)
from tt_core.data.reference import ReferenceScores
from tt_core.durable import atomic_write_text
from tt_core.errors import ConfigError, DataError

KINDS = ("medium", "medium-replay", "expert")
RECORD = "datasets.json"


@dataclass
class DatasetsRecord:
    """datasets.json: the reference scores and the policies each dataset came from."""

    ref_min_score: float
    ref_max_score: float
    ref_episodes: int
    best_step: int
    medium_step: int
    medium_return: float
    datasets: dict[str, str]  # kind -> dataset id


def medium_policy(run: BehaviourRun) -> SavedPolicy:
    """The saved policy whose return is closest to a third of the best one, the earliest
    of equals (D4RL's medium agent reached about a third of its expert)."""
    target = run.best().mean_return / 3.0
    return min(run.policies, key=lambda p: (abs(p.mean_return - target), p.step))


def replay_episodes(replay: Path, steps: int) -> list[EpisodeBuffer]:
    """The first `steps` transitions of a run's replay buffer as episodes; the episode
    running at the cut is truncated there."""
    try:
        with np.load(replay) as z:
            arrays = {k: z[k][:steps] for k in ("observations", "next_observations", "actions",
                                               "rewards", "terminations", "truncations")}
    except FileNotFoundError:
        raise DataError(f"{replay} is missing (the behaviour run did not finish writing it)") from None
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{replay}: unreadable ({type(exc).__name__})") from None
    ends = arrays["terminations"] | arrays["truncations"]
    n = len(ends)
    if n == 0:
        raise DataError(f"{replay} holds no transitions")
    ends[-1] = True
    buffers, start = [], 0
    for end in np.flatnonzero(ends):
        sl = slice(start, end + 1)
        truncations = arrays["truncations"][sl].copy()
        truncations[-1] = not arrays["terminations"][end]  # the cut truncates
        buffers.append(EpisodeBuffer(
            id=len(buffers),
            observations=np.concatenate([arrays["observations"][sl], arrays["next_observations"][end:end + 1]]),
            actions=arrays["actions"][sl], rewards=arrays["rewards"][sl].astype(np.float64),
            terminations=arrays["terminations"][sl].astype(bool), truncations=truncations.astype(bool),
        ))
        start = end + 1
    return buffers


def make_behaviour_datasets(
    run_dir: Path,
    name: str,
    steps: int,
    ref_episodes: int = 20,
    seed: int = 0,
    which: list[str] = list(KINDS),
    notify: Callable[[str], None] = lambda line: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[DatasetInfo]:
    """Measure the reference scores, then write the datasets `which` names (every id is
    checked before anything is measured or written)."""
    unknown = [w for w in which if w not in KINDS]
    if unknown:
        raise ConfigError(f"--which: {unknown[0]!r} is not one of {', '.join(KINDS)}")
    run_dir = Path(run_dir)
    run = BehaviourRun.load(run_dir)
    if not run.policies:
        raise DataError(f"{run_dir}: the behaviour run saved no policy yet")
    ids = {kind: f"local/{name}/{kind}-v0" for kind in KINDS if kind in which}
    for dataset_id in ids.values():
        check_new_id(dataset_id)
    medium = medium_policy(run)
    if "medium-replay" in ids and medium.step > run.replay_steps:
        raise DataError(f"{run_dir}: {REPLAY} holds {run.replay_steps} transitions, the medium policy's "
                        f"step is {medium.step} (the run was stopped before saving its replay)")
    reference = measure_reference(run, run_dir, ref_episodes, seed, notify)
    sources = {"medium": medium, "expert": run.best()}
    made = [_make_one(dataset_id, run, run_dir, sources.get(kind), medium.step, reference, steps, seed, should_stop)
            for kind, dataset_id in ids.items()]
    _record(run_dir, run, medium, reference, ref_episodes, ids)
    return made


def measure_reference(run: BehaviourRun, run_dir: Path, episodes: int, seed: int,
                      notify: Callable[[str], None]) -> ReferenceScores:
    """D4RL's reference returns, measured: a random policy's and the best policy's
    (mean actions) over `episodes` full episodes each."""
    best = run.best()
    notify(f"measuring reference scores over {episodes} episodes each "
           f"(random policy; best policy, step {best.step})")
    env = make_env(run.env_id, None)
    try:
        random_returns = evaluate_policy_returns(policy_actor("random", env, seed), env, episodes, seed)
        best_returns = evaluate_policy_returns(policy_actor(str(run_dir / best.path), env, seed, deterministic=True),
                                               env, episodes, seed)
    finally:
        env.close()
    reference = ReferenceScores(float(random_returns.mean()), float(best_returns.mean()))
    if not reference.ref_max_score > reference.ref_min_score:
        raise DataError(f"{run_dir}: the best policy ({reference.ref_max_score:.1f}) does not beat a "
                        f"random one ({reference.ref_min_score:.1f}); train it longer")
    notify(f"ref_min_score {reference.ref_min_score:.1f} (random), ref_max_score "
           f"{reference.ref_max_score:.1f} (step {best.step})")
    return reference


def _make_one(dataset_id: str, run: BehaviourRun, run_dir: Path, policy: SavedPolicy | None, replay_steps: int,
              reference: ReferenceScores, steps: int, seed: int, should_stop: Callable[[], bool]) -> DatasetInfo:
    """`steps` steps of `policy`, or (None) the run's first `replay_steps` transitions."""
    if policy is not None:
        return collect_dataset(run.env_id, dataset_id, steps, policy=str(run_dir / policy.path),
                               seed=seed, should_stop=should_stop, reference=reference)
    env = make_env(run.env_id, None)
    try:
        return write_dataset(
            dataset_id, replay_episodes(run_dir / REPLAY, replay_steps), env,
            algorithm=f"{run.algorithm} replay buffer, steps 1..{replay_steps} (seed {run.seed})",
            description=f"Every transition the SAC run saw until its medium policy (step {replay_steps}).",
            reference=reference, should_stop=should_stop)
    finally:
        env.close()


def _record(run_dir: Path, run: BehaviourRun, medium: SavedPolicy, reference: ReferenceScores, episodes: int,
            ids: dict[str, str]) -> None:
    """datasets.json, merged with the datasets an earlier call made from this run."""
    path = run_dir / RECORD
    try:
        earlier = json.loads(path.read_text(encoding="utf-8")).get("datasets", {})
        earlier = {k: v for k, v in earlier.items() if k in KINDS and isinstance(v, str)}
    except (OSError, ValueError, AttributeError, RecursionError):
        earlier = {}
    record = DatasetsRecord(reference.ref_min_score, reference.ref_max_score, episodes,
                            run.best().step, medium.step, medium.mean_return, {**earlier, **ids})
    atomic_write_text(path, json.dumps(asdict(record), indent=1) + "\n")
