"""Find, download, collect and describe Minari datasets.

Everything a user can get wrong here (a bad id, no network, an unknown env) ends
in a one-line DataError / ConfigError that says what to do next.

A collected dataset is written the way checkpoints are: Minari writes it under a
temporary root (`.tt-collect-<pid>-*`, hidden from Minari's own listing), it is fsynced,
and only a complete dataset is renamed to its id. A kill at any moment leaves either no
dataset or a whole one; a leftover temporary root (its writer's flock released: the
process is gone) is removed by the next collection or listing. A damaged dataset found under an id (an older tt-tui's
killed collection, a broken download) is reported, never used and never deleted.

The file itself is written by a child process (tt_core/data/dataset_writer.py): on a full
disk h5py prints thousands of lines and can crash the interpreter, which must not be this
one. A dataset the Minari root has no room for is refused before anything is written.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import minari
import numpy as np
from minari.data_collector import EpisodeBuffer
from minari.dataset.minari_dataset import parse_dataset_id
from minari.storage.datasets_root_dir import get_dataset_path

from tt_core.config import DatasetConfig
from tt_core.data.reference import ReferenceScores
from tt_core.durable import FileLock, LockHeld, fsync_dir, fsync_file
from tt_core.errors import ConfigError, DataError, Interrupted, OutputError, no_space_message
from tt_core.mujoco_import import import_glfw_shielded

# The hub client retries for ~20 s offline; never let a start hang much longer.
DOWNLOAD_TIMEOUT_S = 45.0


@dataclass(frozen=True)
class DatasetInfo:
    id: str
    env_id: str | None
    episodes: int
    steps: int
    mean_return: float
    ref_min_score: float | None
    ref_max_score: float | None
    max_episode_steps: int | None = None  # the env's time limit, when its spec names one
    # why the dataset under this id cannot be used (then nothing else is known): its files
    # are damaged, or they are whole but this install cannot read them
    damaged: str | None = None
    unreadable: str | None = None

    @property
    def reference(self) -> ReferenceScores | None:
        """Its D4RL reference scores, when it carries both."""
        if self.ref_min_score is None or self.ref_max_score is None:
            return None
        return ReferenceScores(self.ref_min_score, self.ref_max_score)


def _check_id(dataset_id: str) -> None:
    try:
        parse_dataset_id(dataset_id)
    except Exception:  # ValueError for bad syntax, TypeError when "-vN" is missing
        raise DataError(
            f"invalid dataset id {dataset_id!r}: expected namespace/name-vN, e.g. mujoco/hopper/medium-v0"
        ) from None


def _is_local(dataset_id: str) -> bool:
    return (get_dataset_path(dataset_id) / "data").exists()


def _short(exc: BaseException | str) -> str:
    """The first line of an error, at most 120 characters."""
    text = str(exc).strip().splitlines()
    reason = text[0] if text else type(exc).__name__
    return reason if len(reason) <= 120 else reason[:117] + "..."


def _download(dataset_id: str) -> None:
    """Fetch `dataset_id` from the Minari hub (a seam the tests replace)."""
    # The hub client logs every retry; the user gets one line from us instead.
    try:
        from huggingface_hub.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    except ImportError:  # a GCS-only install has no hub client to quiet
        pass
    logging.getLogger("google").setLevel(logging.CRITICAL)
    minari.download_dataset(dataset_id)


def _download_bounded(dataset_id: str, timeout_s: float) -> str | None:
    """Run the download on a daemon thread; return a failure reason or None."""
    outcome: dict[str, BaseException] = {}

    def target() -> None:
        try:
            _download(dataset_id)
        except BaseException as exc:  # noqa: BLE001 - any failure is "not available"
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"minari-download-{dataset_id}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return f"timed out after {timeout_s:.0f} s"
    if "error" in outcome:
        return _short(outcome["error"])
    return None


def load_dataset(
    dataset_id: str, download: bool = True, notify: Callable[[str], None] | None = None
) -> minari.MinariDataset:
    """Open a local dataset, downloading it first when allowed and missing.

    `notify` hears about slow steps (a hub download) before they start.
    """
    _check_id(dataset_id)
    if not _is_local(dataset_id):
        reason = "download disabled"
        if download:
            if notify:
                notify(f"dataset '{dataset_id}' is not local; trying the Minari hub "
                       f"(up to {DOWNLOAD_TIMEOUT_S:.0f} s)")
            reason = _download_bounded(dataset_id, DOWNLOAD_TIMEOUT_S) or "download left no data"
        if not _is_local(dataset_id):
            raise DataError(
                f"dataset '{dataset_id}' is not available locally and could not be downloaded "
                f"({reason}); run `tt-tui collect ENV_ID --dataset-id {dataset_id}` "
                "or set MINARI_DATASETS_PATH"
            )
    ds, problem, damaged = _open_whole(dataset_id)
    if problem is not None:
        path = get_dataset_path(dataset_id)
        if not damaged:
            raise DataError(f"dataset '{dataset_id}' at {path} cannot be read by this install ({problem})")
        raise DataError(
            f"dataset '{dataset_id}' at {path} is damaged ({problem}); remove that folder "
            f"(rm -r {path}) and collect or download it again"
        )
    return ds


def _open_whole(dataset_id: str) -> tuple[Any, str | None, bool]:
    """(the dataset, None, False), or (None, why it cannot be read, whether its files are
    damaged): its metadata and every episode it lists must be in its files (a killed
    write leaves them short). A dataset of another Minari version, or of a format whose
    package is not installed, is whole but unreadable here: not damaged."""
    try:
        ds = minari.load_dataset(dataset_id)
        main = ds.storage.data_path / "main_data.hdf5"
        if main.exists():
            import h5py  # minari[hdf5] dependency

            with h5py.File(main, "r") as f:
                missing = [i for i in ds.episode_indices if f"episode_{i}" not in f]
            if missing:
                return None, f"episode {missing[0]} of {ds.total_episodes} is missing", True
        if ds.total_steps < 1:
            return None, "it holds no steps", True
        return ds, None, False
    except ImportError as exc:  # a storage format whose package this install lacks
        return None, f"needs {exc.name or 'a package that is not installed'}", False
    except Exception as exc:  # h5py, JSON and Minari's own errors alike
        unsupported = isinstance(exc, ValueError) and "version" in str(exc).lower()
        return None, _short(exc), not unsupported


def make_env(env_id: str, max_episode_steps: int | None) -> gym.Env:
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    import_glfw_shielded()
    try:
        env = gym.make(env_id, **kwargs)
    except Exception as exc:  # NameNotFound, DependencyNotInstalled, bad kwargs, ...
        raise ConfigError(f"cannot make environment '{env_id}': {_short(exc)}") from None
    for what, space in (("observation", env.observation_space), ("action", env.action_space)):
        if not isinstance(space, gym.spaces.Box):
            env.close()
            raise ConfigError(
                f"environment '{env_id}' has a {type(space).__name__} {what} space; only Box is supported"
            )
    return env


Actor = Callable[[np.ndarray], np.ndarray]


def policy_actor(policy: str, env: gym.Env, seed: int, deterministic: bool = False) -> Actor:
    """The behaviour policy `policy` names: `random` (uniform actions), or the path of a
    Stable-Baselines3 policy zip (tt_core/data/sb3_policy.py), sampled unless
    `deterministic`."""
    from tt_core.config import check_limit

    check_limit("dataset.collect.policy", policy, None)
    if policy == "random":
        env.action_space.seed(seed)
        return lambda obs: env.action_space.sample()
    from tt_core.data.sb3_policy import load_sb3_policy

    return load_sb3_policy(Path(policy), env, deterministic=deterministic, seed=seed)


def record_episodes(
    env: gym.Env, act: Actor, steps: int, seed: int, should_stop: Callable[[], bool]
) -> list[EpisodeBuffer]:
    """`steps` steps of `act` as episode buffers; a cut-off last episode is truncated."""
    buffers: list[EpisodeBuffer] = []
    obs, _ = env.reset(seed=seed)
    ep_obs, ep_act, ep_rew, ep_term, ep_trunc = [obs], [], [], [], []

    def close_episode() -> None:
        buffers.append(EpisodeBuffer(
            id=len(buffers),
            seed=seed if not buffers else None,  # only the first reset is seeded
            observations=np.asarray(ep_obs),
            actions=np.asarray(ep_act),
            rewards=np.asarray(ep_rew, dtype=np.float64),
            terminations=np.asarray(ep_term, dtype=bool),
            truncations=np.asarray(ep_trunc, dtype=bool),
        ))

    for i in range(steps):
        if i % 256 == 0 and should_stop():
            raise Interrupted(f"stopped while collecting (step {i} of {steps}); no dataset was written")
        action = np.asarray(act(obs), dtype=env.action_space.dtype)
        obs, reward, terminated, truncated, _ = env.step(action)
        ep_obs.append(obs)
        ep_act.append(action)
        ep_rew.append(float(reward))
        ep_term.append(bool(terminated))
        ep_trunc.append(bool(truncated))
        if terminated or truncated:
            close_episode()
            obs, _ = env.reset()
            ep_obs, ep_act, ep_rew, ep_term, ep_trunc = [obs], [], [], [], []
    if ep_rew:
        ep_trunc[-1] = True
        close_episode()
    return buffers


def collect_dataset(
    env_id: str,
    dataset_id: str,
    steps: int,
    policy: str = "random",
    seed: int = 0,
    max_episode_steps: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    deterministic: bool = False,
    reference: ReferenceScores | None = None,
) -> DatasetInfo:
    """Record `steps` steps of `policy` (see `policy_actor`) in `env_id` as a new local
    Minari dataset.

    `should_stop` is polled while stepping (a stop request): collection then ends with
    Interrupted and nothing is written."""
    if steps < 1:
        raise ConfigError(f"collection steps must be >= 1, got {steps}")
    check_new_id(dataset_id)
    try:
        env = make_env(env_id, max_episode_steps)
    except ConfigError:
        # a terminal's Ctrl+C reaches the helper processes of the env's libraries too (glfw
        # starts a Python to test its library): what they fail with is the stop
        if should_stop():
            raise Interrupted(f"stopped while collecting (step 0 of {steps}); no dataset was written") from None
        raise
    try:
        act = policy_actor(policy, env, seed, deterministic)
        with WriterProcess() as writer:  # started now, to be ready when the episodes are
            buffers = record_episodes(env, act, steps, seed, should_stop)
            name = "random" if policy == "random" else Path(policy).name
            how = "" if policy == "random" else (" (mean actions)" if deterministic else " (sampled actions)")
            return write_dataset(
                dataset_id, buffers, env,
                algorithm=f"{name} policy{how} (tt-tui collect, seed {seed})",
                description=f"{steps} steps of the {name} policy{how} in {env_id}, collected locally.",
                reference=reference, should_stop=should_stop, writer=writer)
    finally:
        env.close()


def check_new_id(dataset_id: str) -> None:
    """Refuse an invalid id, or one a local dataset already holds."""
    _check_id(dataset_id)
    path = get_dataset_path(dataset_id)
    if path.exists():
        raise DataError(
            f"dataset '{dataset_id}' already exists at {path}; delete it "
            f"(minari delete {dataset_id}) or choose another id"
        )


def write_dataset(
    dataset_id: str,
    buffers: list[EpisodeBuffer],
    env: gym.Env,
    algorithm: str,
    description: str,
    reference: ReferenceScores | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    writer: WriterProcess | None = None,
) -> DatasetInfo:
    """Write recorded episodes as the new local dataset `dataset_id`: refused when the
    Minari root has no room for it, else written by `writer` (a child process, started
    here if not given) under a temporary root, renamed into place only when whole (see
    the module's docstring)."""
    check_new_id(dataset_id)
    path = get_dataset_path(dataset_id)
    root = get_dataset_path()
    remove_stale_temporaries(root)
    _check_room(root, dataset_id, buffers)
    staging = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=root))
    alive = FileLock(staging / LOCK_FILE).acquire(f"pid {os.getpid()}")  # tells a live writer from a dead one
    scores = {} if reference is None else {"ref_min_score": reference.ref_min_score,
                                           "ref_max_score": reference.ref_max_score}
    try:
        with writer or WriterProcess() as child:
            child.write(staging, env, dict(dataset_id=dataset_id, buffer=buffers, algorithm_name=algorithm,
                                           author="tt-tui", description=description, **scores))
        if should_stop():  # a stop asked for while the file was written: honoured here
            raise Interrupted(f"stopped while writing dataset '{dataset_id}'; no dataset was written")
        _move_into_place(staging / dataset_id, path)
        namespace = parse_dataset_id(dataset_id)[0]
        if namespace and not (root / namespace / NAMESPACE_FILE).exists():  # as Minari would have left it
            shutil.copyfile(staging / namespace / NAMESPACE_FILE, root / namespace / NAMESPACE_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        alive.release()
    return dataset_info(load_dataset(dataset_id, download=False))


# What a dataset's files take, measured on 17 datasets (Minari 0.5.4, h5py 3.16; random
# policies in Hopper, Walker2d, HalfCheetah, Ant, Humanoid, Swimmer, Reacher and three
# pendulums; 5 to 20,000 episodes of 1 to 1,000 steps): the HDF5 file is 0.95 to 1.14
# times its arrays' bytes (h5py pads each array's last chunk) plus 14.2 to 14.7 KB per
# episode (its group, its chunked arrays and their B-trees), plus about 4 KB (the file's
# header, metadata.json). So random Hopper (22-step episodes) takes 6.6 times its arrays,
# 1,000-step HalfCheetah episodes 1.2 times. These constants put the estimate 5 to 21%
# above each of those files: a little room is refused rather than a write begun that fails.
ARRAY_RATIO = 1.2
EPISODE_BYTES = 14_848  # 14.5 KiB
FILE_BYTES = 16 * 1024


def dataset_bytes(buffers: list[EpisodeBuffer]) -> int:
    """About how many bytes the dataset of `buffers` takes on disk (tt-tui's buffers hold
    arrays only, no infos)."""
    arrays = sum(np.asarray(part).nbytes for b in buffers for part in
                 (b.observations, b.actions, b.rewards, b.terminations, b.truncations))
    return int(ARRAY_RATIO * arrays) + EPISODE_BYTES * len(buffers) + FILE_BYTES


def _check_room(root: Path, dataset_id: str, buffers: list[EpisodeBuffer]) -> None:
    """Refuse, before anything is written, a dataset the Minari root has no room for."""
    needed, free = dataset_bytes(buffers), shutil.disk_usage(root).free
    if free < needed:
        raise OutputError(no_space_message(root, f"dataset '{dataset_id}'", needed, free))


class WriterProcess:
    """The child process that writes a dataset (tt_core/data/dataset_writer.py). It waits
    for its job on stdin, so it can be started before the episodes are recorded: its
    start (a Python and Minari's imports, about 0.3 s) then overlaps the recording."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tt_core.data.dataset_writer", str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl+C is this process's to honour, after the write
        )

    def write(self, staging: Path, env: gym.Env, kwargs: dict[str, Any]) -> None:
        """minari.create_dataset_from_buffers(**kwargs) with `staging` as the Minari root;
        a failure is raised here as one error."""
        job = {"root": str(staging), "spec": env.spec, "observation_space": env.observation_space,
               "action_space": env.action_space, "kwargs": kwargs}
        out, err = self._proc.communicate(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
        if self._proc.returncode != 0:
            raise _writer_failure(self._proc.returncode, out, err, staging)

    def close(self) -> None:
        """End the child if it never got its job (the recording stopped or failed)."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()

    def __enter__(self) -> "WriterProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _writer_failure(code: int, out: bytes, err: bytes, staging: Path) -> Exception:
    """The writer's end as one error: its OS error (a full disk, a name too long) as the
    OSError every command says in one line (as_user_error), else a DataError with the
    writer's own first line. Its stderr is never printed: on a full disk h5py writes
    thousands of lines there."""
    lines = out.decode(errors="replace").strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):  # it died before it could say why
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
        last = err.decode(errors="replace").strip().splitlines()[-1:]
        return DataError(f"the process writing the dataset {how}" + (f" ({_short(last[0])})" if last else "")
                         + "; no dataset was written")
    if report["errno"] is None:
        return DataError(f"could not write the dataset ({_short(report['error'])}); no dataset was written")
    # A full disk is said of the Minari root's folder: the file that filled went with the temporary root.
    full = report["errno"] in (errno.ENOSPC, errno.EDQUOT)
    return OSError(report["errno"], os.strerror(report["errno"]), str(staging) if full else report["filename"])


TEMP_PREFIX = ".tt-collect-"
LOCK_FILE = ".writing"  # in a temporary root, flock-ed by the collection writing there
NAMESPACE_FILE = "namespace_metadata.json"  # what minari.create_namespace writes


def _move_into_place(written: Path, final: Path) -> None:
    """fsync a complete dataset folder, then rename it to its id (atomic: one file
    system). If another collection of the id finished first, its dataset is kept (the
    id names the data) and this one is dropped with the temporary root."""
    for item in sorted(written.rglob("*"), reverse=True):
        if item.is_file():
            fsync_file(item)
        else:
            fsync_dir(item)
    fsync_dir(written)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(written, final)
    except OSError as exc:  # another collection of the same id finished first: its dataset is kept
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
        return
    fsync_dir(final.parent)


def remove_stale_temporaries(root: Path) -> None:
    """Delete the temporary roots of collections that ended without cleaning up (killed
    mid-write). A live collection holds the flock of its root's LOCK_FILE, on any host
    sharing the folder; only roots whose lock can be taken are removed."""
    for staging in Path(root).glob(f"{TEMP_PREFIX}*"):
        try:
            lock = FileLock(staging / LOCK_FILE).acquire()
        except (LockHeld, OSError):  # alive, or not ours to judge
            continue
        shutil.rmtree(staging, ignore_errors=True)
        lock.release()


def _episode_returns(ds: minari.MinariDataset) -> np.ndarray:
    """Undiscounted return per episode, reading only the rewards when the file is HDF5."""
    main = ds.storage.data_path / "main_data.hdf5"
    if main.exists():
        import h5py  # minari[hdf5] dependency; reading rewards alone skips observations

        with h5py.File(main, "r") as f:
            return np.array([f[f"episode_{i}"]["rewards"][()].sum() for i in ds.episode_indices])
    return np.array([ep.rewards.sum() for ep in ds.iterate_episodes()])


def dataset_info(ds: minari.MinariDataset) -> DatasetInfo:
    meta: dict[str, Any] = ds.storage.metadata
    returns = _episode_returns(ds)
    ref_min, ref_max = meta.get("ref_min_score"), meta.get("ref_max_score")
    return DatasetInfo(
        id=ds.id,
        env_id=ds.env_spec.id if ds.env_spec is not None else None,
        episodes=ds.total_episodes,
        steps=ds.total_steps,
        mean_return=float(returns.mean()) if returns.size else float("nan"),
        ref_min_score=None if ref_min is None else float(ref_min),
        ref_max_score=None if ref_max is None else float(ref_max),
        max_episode_steps=getattr(ds.env_spec, "max_episode_steps", None),
    )


def list_datasets() -> list[DatasetInfo]:
    """Every dataset under the local Minari root; an unreadable one is listed as damaged
    (with the reason) rather than hidden."""
    root = get_dataset_path()
    remove_stale_temporaries(root)
    infos = []
    for dataset_id in _local_ids(root):
        ds, problem, damaged = _open_whole(dataset_id)
        if problem is None:
            try:
                infos.append(dataset_info(ds))
                continue
            except Exception as exc:  # unreadable rewards: damaged too
                problem, damaged = _short(exc), True
        where = f"{problem}; folder {get_dataset_path(dataset_id)}"
        infos.append(DatasetInfo(dataset_id, None, 0, 0, float("nan"), None, None,
                                 damaged=where if damaged else None, unreadable=None if damaged else where))
    return infos


def _local_ids(root: Path, prefix: str = "") -> list[str]:
    """The ids of the dataset folders under `root`, as Minari finds them (a non-hidden
    folder holding `data/`), including those whose metadata Minari cannot read."""
    folder = root / prefix if prefix else root
    if (folder / "data").is_dir():
        return [prefix]
    ids = []
    for child in sorted(folder.iterdir()) if folder.is_dir() else []:
        if child.is_dir() and not child.name.startswith("."):
            ids += _local_ids(root, f"{prefix}/{child.name}" if prefix else child.name)
    return ids


def ensure_dataset(
    cfg: DatasetConfig,
    notify: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> minari.MinariDataset:
    """Load `cfg.id`, collecting it first when missing and `cfg.collect` says how."""
    _check_id(cfg.id)
    if cfg.collect is not None and not _is_local(cfg.id):
        c = cfg.collect
        if notify:
            notify(f"dataset '{cfg.id}' is not local; collecting {c.steps} steps of a "
                   f"{c.policy} policy in {c.env_id}")
        collect_dataset(c.env_id, cfg.id, c.steps, policy=c.policy, seed=c.seed, should_stop=should_stop,
                        deterministic=c.deterministic)
        return load_dataset(cfg.id, download=False)
    return load_dataset(cfg.id, notify=notify)
