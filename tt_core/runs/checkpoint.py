"""Run directories: atomic, pickle-free checkpoints.

Layout of a run directory::

    config.yaml            resolved config (written once, atomically)
    discretizer.npz        bin boundaries as plain arrays (np.load allow_pickle=False)
    dataset.json           dataset id, dims and behaviour statistics for eval/UI
    metrics.jsonl          one JSON record per engine event
    checkpoints/step_000001234/
        model.safetensors  weights
        trainer.pt         optimizer + progress + RNG state (loaded with weights_only=True)
    latest.json            {"checkpoint": "checkpoints/step_000001234", "step": 1234}
    train.lock             flock-ed by the one process training the run (its pid inside)

Why a directory per checkpoint plus a pointer: a checkpoint is several files, and a
process killed between two renames must never leave a mix of two steps. Each
checkpoint is written in a temporary directory, fsynced, renamed into place, and only
then is latest.json replaced (write temp, fsync, rename). Whatever moment a SIGKILL
lands, latest.json names a complete checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tt_core.config import Config, config_from_dict, dump_config
from tt_core.data.discretizer import Discretizer
from tt_core.durable import FileLock, LockHeld, atomic_write_bytes, atomic_write_text, fsync_dir, fsync_file
from tt_core.errors import CheckpointError, ConfigError, OutputError, TrainingDiverged, no_space_message
from tt_core.files import RunFileError, check_regular, open_regular, read_json_object
from tt_core.runs.reader import saved_checkpoints
from tt_core.files import read_yaml_mapping as read_yaml

KEEP_CHECKPOINTS = 2  # older complete checkpoints are deleted after a successful save


@dataclass
class RunFiles:
    """Paths inside one run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def discretizer(self) -> Path:
        return self.root / "discretizer.npz"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def latest(self) -> Path:
        return self.root / "latest.json"

    @property
    def lock(self) -> Path:
        return self.root / "train.lock"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"


def write_run_header(
    run: RunFiles, cfg: Config, disc: Discretizer, dataset_meta: dict[str, Any]
) -> None:
    """Write the files fixed for the whole run (config, discretizer, dataset facts)."""
    run.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.config, dump_config(cfg))
    buf = _npz_bytes(disc.to_arrays())
    atomic_write_bytes(run.discretizer, buf)
    atomic_write_text(run.dataset, json.dumps(dataset_meta, indent=2))


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def _tensors(state: Any, prefix: str = ""):
    """(name, tensor) for every tensor of a nested state (dicts, lists, tuples)."""
    if isinstance(state, torch.Tensor):
        yield prefix or "tensor", state
        return
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, (list, tuple)) else ()
    for key, value in items:
        yield from _tensors(value, f"{prefix}.{key}" if prefix else str(key))


def non_finite_key(state: Any, prefix: str = "") -> str | None:
    """The name of the first floating tensor holding NaN or inf in a (nested) state
    dict such as a model's or an optimizer's; None when all are finite."""
    for name, tensor in _tensors(state, prefix):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], where: Path | str) -> None:
    """model.load_state_dict(state), with a one-line error naming the first weight that
    is missing, extra, or of another shape (and both shapes)."""
    expected = model.state_dict()
    for key, value in expected.items():
        if key in state and tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{where}: weight '{key}' has shape {tuple(state[key].shape)}, the model needs "
                f"{tuple(value.shape)} (does config.yaml's model section match the weights?)"
            )
    missing = [key for key in expected if key not in state]
    if missing:
        raise CheckpointError(f"{where}: no weight '{missing[0]}' for this model")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise CheckpointError(f"{where}: weight '{extra[0]}' is not part of this model")
    model.load_state_dict(state)


def save_checkpoint(
    run: RunFiles, step: int, model_state: dict[str, torch.Tensor], trainer_state: dict,
    protect: Path | None = None,
) -> Path:
    """Write a complete checkpoint for `step`, then point latest.json at it; `protect`
    (the checkpoint a run resumed from) is never pruned.

    Refuses (TrainingDiverged) a state holding NaN or inf: such a checkpoint could
    replace, and then prune, the good ones before it."""
    bad = non_finite_key(model_state) or non_finite_key(trainer_state.get("optimizer"), "optimizer")
    if bad is not None:
        raise TrainingDiverged(f"not saving step {step}: '{bad}' holds NaN or inf; {newest_kept(run)}")
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:09d}"
    final = run.checkpoints / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=run.checkpoints))
    try:
        weights = {k: v.detach().to("cpu").contiguous() for k, v in model_state.items()}
        save_file(weights, str(tmp / "model.safetensors"))
        torch.save(trainer_state, tmp / "trainer.pt")
        for f in tmp.iterdir():
            fsync_file(f)
        fsync_dir(tmp)
        if final.exists():  # a re-save of the same step (e.g. 's' right after a save)
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(run.checkpoints)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _raise_if_disk_full(exc, run, step, model_state, trainer_state)
        raise
    pointer = {"checkpoint": f"checkpoints/{name}", "step": step}
    atomic_write_text(run.latest, json.dumps(pointer))
    _prune(run, keep={final, protect})
    return final


def _raise_if_disk_full(exc: BaseException, run: RunFiles, step: int, *states: Any) -> None:
    """torch.save and safetensors report a full disk as opaque errors ("unexpected pos
    ...", SafetensorError); when the free space is smaller than the checkpoint, say so."""
    if not isinstance(exc, Exception):  # KeyboardInterrupt and friends pass through
        return
    needed = sum(tensor.nbytes for state in states for _, tensor in _tensors(state))
    try:
        free = shutil.disk_usage(run.checkpoints).free
    except OSError:
        return
    if free < needed:
        raise OutputError(f"{no_space_message(run.checkpoints, f'step {step}', needed, free)}; "
                          f"{newest_kept(run)}") from None


def clean_residue(run: RunFiles) -> None:
    """Remove what a kill in the middle of a save leaves: temp checkpoint directories and
    the temp files of atomic writes (`.latest.json.*`). Never read; only clutter."""
    for tmp in run.checkpoints.glob(".step_*"):
        shutil.rmtree(tmp, ignore_errors=True)
    for pattern in (".latest.json.*", ".metrics.jsonl.*", ".heartbeat.json.*", ".snapshots.json.*"):
        for tmp in run.root.glob(pattern):
            tmp.unlink(missing_ok=True)


def _prune(run: RunFiles, keep: set) -> None:
    """Delete all but the newest KEEP_CHECKPOINTS checkpoints (and those in `keep`), and
    any save residue. Checkpoints newer than a resumed one were set aside at the resume
    (`set_aside_newer`), so every checkpoint here is older than the one just saved."""
    done = saved_checkpoints(run.root)
    for old in done[:-KEEP_CHECKPOINTS]:
        if old not in keep:
            shutil.rmtree(old, ignore_errors=True)
    clean_residue(run)


SET_ASIDE_DIR = "set-aside"


def set_aside_newer(run: RunFiles, resumed: Path, step: int) -> Path | None:
    """A resume from a checkpoint older than the newest: move the newer checkpoints out
    of checkpoints/ (into set-aside/<time>/, kept whole) so that two histories never mix
    and pruning never weighs them against the new one, and point latest.json at
    `resumed`. The folder they went to, or None when there were none."""
    newer = [p for p in saved_checkpoints(run.root) if _step_of(p) > step]
    if newer:
        dest = run.root / SET_ASIDE_DIR / time.strftime("%Y%m%d-%H%M%S")
        dest.mkdir(parents=True, exist_ok=True)
        for p in newer:
            os.replace(p, dest / p.name)
        fsync_dir(dest)
        fsync_dir(run.checkpoints)
    atomic_write_text(run.latest, json.dumps({"checkpoint": f"checkpoints/{resumed.name}", "step": step}))
    return dest if newer else None


@dataclass
class LoadedRun:
    """Everything needed to continue training or to plan from a run directory."""

    run: RunFiles
    config: Config
    discretizer: Discretizer
    dataset_meta: dict[str, Any]
    checkpoint: Path  # the checkpoint directory loaded
    step: int
    model_state: dict[str, torch.Tensor]
    trainer_state: dict | None


def find_run_root(path: Path) -> tuple[Path, Path | None]:
    """Accept a run directory or one of its checkpoints/step_N directories."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such run directory")
    if (path / "model.safetensors").exists() and path.parent.name == "checkpoints":
        return path.parent.parent, path
    return path, None


def load_run(path: Path, with_trainer: bool = True) -> LoadedRun:
    """Load a run directory's latest (or the named) checkpoint; one-line errors."""
    root, explicit = find_run_root(path)
    run = RunFiles(root)
    cfg = _load_config(run.config)
    disc = _load_discretizer(run.discretizer)
    dataset_meta = _load_json(run.dataset)
    ckpt = explicit if explicit is not None else _latest_checkpoint(run)
    model_state = _load_weights(ckpt / "model.safetensors")
    bad = non_finite_key(model_state)
    if bad is not None:  # a damaged or hand-edited file: saves refuse non-finite weights
        raise CheckpointError(f"{ckpt}: weight '{bad}' holds NaN or inf; {_newest_finite(run, ckpt)}")
    trainer_state = _load_trainer(ckpt / "trainer.pt") if with_trainer else None
    step = int(trainer_state["step"]) if trainer_state else _step_of(ckpt)
    return LoadedRun(run, cfg, disc, dataset_meta, ckpt, step, model_state, trainer_state)


def _newest_finite(run: RunFiles, bad: Path) -> str:
    """One clause naming the newest other checkpoint whose weights are all finite."""
    for other in reversed(saved_checkpoints(run.root)):
        if other.resolve() == bad.resolve():
            continue
        try:
            state = load_file(str(check_regular(other / "model.safetensors")))
        except (SafetensorError, OSError, ValueError, RuntimeError, RunFileError):
            continue
        if non_finite_key(state) is None:
            return f"the newest finite checkpoint is {other} (use it: tt-tui train --resume {other})"
    return "no finite checkpoint is kept in this run"


def lock_run(run: RunFiles) -> FileLock:
    """Make this process the run directory's only writer until it ends (or releases the
    lock): a second training of the same run is refused, naming the holder."""
    owner = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": round(time.time())})
    try:
        return FileLock(run.lock).acquire(owner)
    except LockHeld as held:
        try:
            holder = json.loads(str(held))
            who = f"process {holder['pid']} on {holder['host']}"
        except (ValueError, TypeError, KeyError):
            who = "another process"
        raise CheckpointError(f"{run.root}: {who} is training this run; wait for it or stop it first") from None


def latest_step(run: RunFiles) -> int | None:
    """Step of the checkpoint latest.json points at, or None when there is none yet."""
    if not run.latest.exists():
        return None
    step = _load_json(run.latest).get("step")
    if not isinstance(step, int):
        raise CheckpointError(f"{run.latest}: corrupt (no 'step' entry)")
    return step


def newest_kept(run: RunFiles) -> str:
    """One clause naming the checkpoint a failed run leaves, for error lines."""
    step = latest_step(run)
    if step is None:
        return "no checkpoint was written yet"
    return f"the newest checkpoint is step {step} ({run.root})"


def _step_of(ckpt: Path) -> int:
    try:
        return int(ckpt.name.split("_")[-1])
    except ValueError:
        return 0


def _load_json(path: Path) -> dict:
    """A run's small JSON file, read bounded (tt_core/files.py), with one-line errors."""
    try:
        return read_json_object(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (not a tt-tui run directory?)") from None


def _latest_checkpoint(run: RunFiles) -> Path:
    if not run.latest.exists() and not run.latest.is_symlink() and run.config.exists():
        kept = saved_checkpoints(run.root)
        if kept:  # deleted by hand, or lost: the checkpoints are there to resume from
            raise CheckpointError(
                f"{run.latest}: missing while checkpoints/ holds {len(kept)}; name the one to use: "
                f"tt-tui train --resume {kept[-1]}"
            )
        raise CheckpointError(
            f"{run.root}: no checkpoint yet (the run stopped before its first save); "
            "start it again with `tt-tui train CONFIG`"
        )
    try:
        pointer = _load_json(run.latest)
        rel = pointer.get("checkpoint")
        if not isinstance(rel, str):
            raise CheckpointError(f"{run.latest}: corrupt (no 'checkpoint' entry)")
    except CheckpointError as exc:  # the checkpoints it pointed at may all be whole: name the one to use
        kept = saved_checkpoints(run.root)
        if not kept:
            raise
        raise CheckpointError(f"{exc}; checkpoints/ holds {len(kept)}; name the one to use: "
                              f"tt-tui train --resume {kept[-1]}") from None
    ckpt = run.root / rel
    if ckpt.resolve().parent != run.checkpoints.resolve():
        raise CheckpointError(f"{run.latest}: points outside the run's checkpoints/ ({rel!r})")
    if not ckpt.is_dir():
        raise CheckpointError(f"{ckpt}: checkpoint named by latest.json is missing")
    return ckpt


def read_yaml_mapping(path: Path, missing: str = "missing") -> dict:
    """A saved YAML file holding a mapping (a run's or an FTT checkpoint's config), read
    bounded, with one-line checkpoint errors."""
    try:
        return read_yaml(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: {missing}") from None


def _load_config(path: Path) -> Config:
    data = read_yaml_mapping(path, "missing (not a tt-tui run directory?)")
    try:
        return config_from_dict(data, str(path))
    except ConfigError as exc:
        raise CheckpointError(f"{path}: invalid saved config: {exc}") from None


def _load_discretizer(path: Path) -> Discretizer:
    try:
        with open_regular(path) as f, np.load(f, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        return Discretizer.from_arrays(arrays)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (not a tt-tui run directory?)") from None
    except RunFileError:
        raise
    except Exception as exc:  # zip/npz/format errors all mean the same to the user
        raise CheckpointError(f"{path}: unreadable or corrupt ({type(exc).__name__})") from None


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(check_regular(path)))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except PermissionError:
        raise CheckpointError(f"{path}: unreadable (permission denied)") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt ({type(exc).__name__})") from None


def _load_trainer(path: Path) -> dict:
    try:
        with open_regular(path) as f:
            state = torch.load(f, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except RunFileError:
        raise
    except Exception as exc:  # torch raises many types for a damaged zip/pickle stream
        raise CheckpointError(f"{path}: truncated or corrupt ({type(exc).__name__})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path}: corrupt (no trainer step)")
    return state
