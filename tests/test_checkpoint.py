"""Run directories: atomic checkpoints, pickle-free files, one-line errors on damage."""

import json
import zipfile

import numpy as np
import pytest
import torch

from tt_core.runs import checkpoint as ckpt
from tt_core.config import load_config
from tt_core.errors import CheckpointError, TrainingDiverged
from tt_core.events import EventBus
from tt_core.train.trainer import Trainer


@pytest.fixture
def run_dir(tiny_config):
    return Trainer(load_config(tiny_config), EventBus()).run()


def test_run_directory_holds_config_discretizer_weights_and_trainer_state(run_dir):
    assert (run_dir / "config.yaml").exists()
    with np.load(run_dir / "discretizer.npz", allow_pickle=False) as npz:
        assert npz["boundaries"].ndim == 2
    pointer = json.loads((run_dir / "latest.json").read_text())
    assert pointer == {"checkpoint": "checkpoints/step_000000030", "step": 30}
    latest = run_dir / pointer["checkpoint"]
    assert sorted(p.name for p in latest.iterdir()) == ["model.safetensors", "trainer.pt"]
    # the trainer state loads without unpickling arbitrary objects
    state = torch.load(latest / "trainer.pt", weights_only=True)
    assert state["step"] == 30


def test_only_the_newest_checkpoints_are_kept(run_dir):
    kept = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert kept == ["step_000000020", "step_000000030"]


def test_a_crash_mid_save_leaves_the_previous_checkpoint_loadable(run_dir):
    # What a SIGKILL during save leaves: a half-written temp checkpoint directory and
    # a temp file beside latest.json. Neither is ever read.
    partial = run_dir / "checkpoints" / ".step_000000040.abc"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\x00" * 10)
    (run_dir / ".latest.json.xyz").write_text('{"checkp')
    loaded = ckpt.load_run(run_dir)
    assert loaded.step == 30


def test_a_checkpoint_directory_can_be_loaded_directly(run_dir):
    loaded = ckpt.load_run(run_dir / "checkpoints" / "step_000000020")
    assert loaded.step == 20 and loaded.run.root == run_dir


def _latest(run_dir):
    return run_dir / json.loads((run_dir / "latest.json").read_text())["checkpoint"]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: _truncate(_latest(r) / "model.safetensors"), "model.safetensors: truncated or corrupt"),
        (lambda r: _truncate(_latest(r) / "trainer.pt"), "trainer.pt: truncated or corrupt"),
        (lambda r: _truncate(r / "discretizer.npz"), "discretizer.npz: unreadable or corrupt"),
        (lambda r: (r / "latest.json").write_text("{nope"), "latest.json: unreadable or corrupt"),
        (lambda r: (r / "config.yaml").write_text("model: {n_layers: 0}\n"), "invalid saved config"),
        (lambda r: (_latest(r) / "model.safetensors").unlink(), "model.safetensors: missing"),
    ],
)
def test_damaged_files_give_one_line_checkpoint_errors(run_dir, damage, message):
    damage(run_dir)
    with pytest.raises(CheckpointError) as err:
        ckpt.load_run(run_dir)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_pickle_smuggled_into_the_trainer_state_is_refused(run_dir):
    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"step": 1, "evil": Boom()}, _latest(run_dir) / "trainer.pt")
    with pytest.raises(CheckpointError, match="trainer.pt"):
        ckpt.load_run(run_dir)


def test_weights_that_do_not_fit_the_model_are_a_checkpoint_error(run_dir):
    from safetensors.torch import save_file

    save_file({"tok_emb.weight": torch.zeros(3, 3)}, str(_latest(run_dir) / "model.safetensors"))
    cfg = load_config(run_dir / "config.yaml")
    with pytest.raises(CheckpointError, match=r"weight 'tok_emb.weight' has shape \(3, 3\), the model needs \(\d+, \d+\)"):
        Trainer(cfg, EventBus(), resume=run_dir)
    save_file({"pos_emb": torch.zeros(1)}, str(_latest(run_dir) / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"weight 'pos_emb' has shape \(1,\), the model needs"):
        Trainer(cfg, EventBus(), resume=run_dir)


def test_missing_run_directory_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such run directory"):
        ckpt.load_run(tmp_path / "nope")


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_npz_is_read_without_pickle(run_dir):
    # np.savez stores plain .npy members; an object array would need pickle and is refused
    with zipfile.ZipFile(run_dir / "discretizer.npz") as z:
        assert all(name.endswith(".npy") for name in z.namelist())
    np.savez(run_dir / "discretizer.npz", boundaries=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="discretizer.npz"):
        ckpt.load_run(run_dir)


def test_a_state_holding_nan_or_inf_is_never_saved_and_the_newest_checkpoint_stays(run_dir):
    run = ckpt.RunFiles(run_dir)
    before = sorted(p.name for p in run.checkpoints.iterdir())
    newest = ckpt.latest_step(run)
    state = ckpt.load_run(run_dir)
    weights = dict(state.model_state, head=state.model_state["head"].clone())
    weights["head"][0, 0, 0] = float("inf")
    with pytest.raises(TrainingDiverged, match=r"not saving step 999: 'head' holds NaN or inf"):
        ckpt.save_checkpoint(run, 999, weights, state.trainer_state)
    optimizer = {"state": {0: {"exp_avg_sq": torch.tensor([1.0, float("nan")])}}, "param_groups": []}
    with pytest.raises(TrainingDiverged, match=r"'optimizer.state.0.exp_avg_sq'"):
        ckpt.save_checkpoint(run, 999, state.model_state, dict(state.trainer_state, optimizer=optimizer))
    assert sorted(p.name for p in run.checkpoints.iterdir()) == before
    assert ckpt.latest_step(run) == newest


KILL_POINTS = {
    # name: (function of tt_core.runs.checkpoint to replace, which call of it kills)
    "after the weights, before trainer.pt": ("torch.save", 1),
    "checkpoint complete, before its rename": ("os.replace", 1),
    "renamed, before latest.json": ("atomic_write_text", 1),
    "latest.json temp written, before its rename": ("os.replace", 2),
}

_KILLER = """
import os, signal, sys
from pathlib import Path
from tt_core.runs import checkpoint as ckpt
run, target, nth = ckpt.RunFiles(Path(sys.argv[1])), sys.argv[2], int(sys.argv[3])
owner, name = (ckpt.torch, "save") if target == "torch.save" else (ckpt.os, "replace") if target == "os.replace" else (ckpt, target)
real, calls = getattr(owner, name), []
def kill(*args, **kwargs):
    calls.append(1)
    if len(calls) == nth:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
setattr(owner, name, kill)
loaded = ckpt.load_run(run.root)
ckpt.save_checkpoint(run, loaded.step + 1, loaded.model_state, loaded.trainer_state)
"""


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_at_each_named_point_of_a_save_leaves_a_run_that_resumes_cleanly(run_dir, point):
    import subprocess
    import sys

    target, nth = KILL_POINTS[point]
    run = ckpt.RunFiles(run_dir)
    before = ckpt.latest_step(run)
    child = subprocess.run([sys.executable, "-c", _KILLER, str(run_dir), target, str(nth)],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr  # really killed at that point
    assert ckpt.load_run(run_dir).step in (before, before + 1)  # never a broken checkpoint
    resumed = load_config(run_dir / "config.yaml", [f"train.max_steps={before + 3}"])
    Trainer(resumed, EventBus(), resume=run_dir).run()
    assert ckpt.latest_step(run) == before + 3
    assert not list(run.checkpoints.glob(".step_*")) and not list(run_dir.glob(".latest.json.*"))
