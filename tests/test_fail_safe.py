"""Fail safe, round two (#19): datasets written atomically, one writer per run, damaged
runs and datasets reported, no silent hang, and one line for every bad input. Real
processes, real files, real signals."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from conftest import write_tiny_config
from test_cli import _one_error_line, small_disk, tt  # noqa: F401  (small_disk: a fixture)
from tt_core.config import load_config
from tt_core.data.minari_io import TEMP_PREFIX, list_datasets
from tt_core.events import EventBus
from tt_core.runs import checkpoint as ckpt
from tt_core.runs.listing import DAMAGED, FINISHED, summarize_run
from tt_core.train.trainer import Trainer, step_memory_bytes


def _collect_cmd(dataset_id: str, steps: int) -> list[str]:
    return [sys.executable, "-m", "tt_tui.cli", "collect", "Hopper-v5", "--dataset-id", dataset_id,
            "--steps", str(steps)]


def _wait_for_the_write(root: Path, dataset_id: str, timeout: float = 120) -> None:
    """Until Minari has begun writing the dataset under a temporary root."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any((staging / dataset_id).exists() for staging in root.glob(f"{TEMP_PREFIX}*")):
            return
        time.sleep(0.005)
    raise AssertionError("the collection never began writing")


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


# ------------------------------------------------------------------ datasets


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
def test_a_collection_killed_while_it_writes_leaves_no_dataset_and_the_next_one_collects_it(minari_root, delay):
    dataset_id = "test/kill/k-v0"
    proc = subprocess.Popen(_collect_cmd(dataset_id, 30_000), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_the_write(minari_root, dataset_id)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    final = minari_root / dataset_id
    if final.exists():  # the kill came after the rename: the dataset must then be whole
        assert [(d.id, d.damaged) for d in list_datasets()] == [(dataset_id, None)]
        return
    again = tt("collect", "Hopper-v5", "--dataset-id", dataset_id, "--steps", "300")
    assert again.returncode == 0, again.stderr
    assert not list(minari_root.glob(f"{TEMP_PREFIX}*"))  # the dead process's temporary is gone
    assert [d.id for d in list_datasets()] == [dataset_id]


def test_ctrl_c_while_the_dataset_is_written_is_honoured_in_one_line_and_writes_nothing(minari_root):
    dataset_id = "test/int/i-v0"
    proc = subprocess.Popen(_collect_cmd(dataset_id, 30_000), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for_the_write(minari_root, dataset_id)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Exception ignored" not in err and "Traceback" not in err
    assert err.strip().count("\n") == 0 and "no dataset was written" in err
    assert not (minari_root / dataset_id).exists()
    assert not list(minari_root.glob(f"{TEMP_PREFIX}*"))


def test_a_damaged_dataset_is_one_line_naming_its_folder_and_is_listed_as_damaged(minari_root, tmp_path):
    dataset_id = "test/hopper/tiny-v0"
    assert tt("collect", "Hopper-v5", "--dataset-id", dataset_id, "--steps", "400", "--seed", "1").returncode == 0
    main = minari_root / dataset_id / "data" / "main_data.hdf5"
    main.write_bytes(main.read_bytes()[:3000])  # what a kill mid-write left before #19
    cfg = write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs")
    result = tt("train", cfg, "--headless")
    assert result.returncode == 3
    line = _one_error_line(result)
    assert f"dataset '{dataset_id}' at {minari_root / dataset_id} is damaged" in line and "rm -r" in line
    listing = tt("datasets")
    assert listing.returncode == 0 and f"{dataset_id}" in listing.stdout and "damaged:" in listing.stdout
    assert main.exists()  # reported, never deleted


# ------------------------------------------------------------------ runs


def _trained_run(tmp_path: Path, **train) -> Path:
    cfg = load_config(write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", **train))
    return Trainer(cfg, EventBus()).run()


def test_a_second_training_of_a_run_is_refused_naming_the_holder_and_a_kill_leaves_no_stale_lock(tmp_path):
    config = write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=100_000, checkpoint_every=5)
    first = subprocess.Popen([sys.executable, "-m", "tt_tui.cli", "train", str(config), "--headless"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "runs").glob("*/latest.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    (run,) = (tmp_path / "runs").iterdir()
    second = tt("train", "--resume", run, "--headless")
    assert second.returncode == 3
    line = _one_error_line(second)
    assert f"process {first.pid} on" in line and "is training this run" in line
    lines_before = (run / "metrics.jsonl").read_text().count("\n")
    assert lines_before > 0  # the refused resume cut nothing
    first.send_signal(signal.SIGKILL)
    first.wait()
    steps = [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
             if r.get("event") == "TrainStep"]
    assert steps == sorted(set(steps))  # one writer: no step twice
    resumed = tt("train", "--resume", run, f"train.max_steps={ckpt.load_run(run).step + 2}", "--headless")
    assert resumed.returncode == 0, resumed.stderr


def test_runs_shows_a_run_whose_newest_checkpoint_is_not_whole_as_damaged_with_the_reason(tmp_path):
    run = _trained_run(tmp_path, max_steps=10, checkpoint_every=5)
    assert summarize_run(run).state == FINISHED
    newest = run / json.loads((run / "latest.json").read_text())["checkpoint"]
    (newest / "trainer.pt").unlink()
    damaged = summarize_run(run)
    assert damaged.state == DAMAGED and "trainer.pt is missing" in damaged.why
    (run / "latest.json").write_text("{garbage")
    assert summarize_run(run).why == "latest.json is unreadable or names no checkpoint"
    listing = tt("runs", tmp_path / "runs")
    assert listing.returncode == 0 and "damaged" in listing.stdout


def test_a_truncated_weights_file_makes_a_run_damaged(tmp_path):
    run = _trained_run(tmp_path, max_steps=5, checkpoint_every=5)
    weights = run / "checkpoints" / "step_000000005" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    assert summarize_run(run).why == "checkpoints/step_000000005/model.safetensors is truncated"


def test_resuming_from_non_finite_weights_is_a_checkpoint_error_naming_the_newest_finite_one(tmp_path):
    run = _trained_run(tmp_path, max_steps=20, checkpoint_every=10)
    newest = run / "checkpoints" / "step_000000020" / "model.safetensors"
    state = load_file(str(newest))
    state["head"][0, 0, 0] = float("nan")
    save_file(state, str(newest))
    result = tt("train", "--resume", run, "--headless")
    assert result.returncode == 3
    line = _one_error_line(result)
    assert "weight 'head' holds NaN or inf" in line
    assert f"the newest finite checkpoint is {run / 'checkpoints' / 'step_000000010'}" in line


def test_a_batch_whose_step_cannot_fit_in_memory_is_refused_before_training(tmp_path):
    """The probe's batch of 100000000, on windows long enough that the step's attention
    alone is far beyond this machine (and any machine the suite runs on)."""
    cfg = write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs",
                            model="{embedding_dim: 16, n_layers: 64, n_heads: 16, dropout: 0.1}")
    start = time.monotonic()
    result = tt("train", cfg, "train.batch_size=100000000", "dataset.seq_len=100", "--headless")
    assert time.monotonic() - start < 120
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "train.batch_size=100000000: one step needs at least" in line and "GiB is free" in line
    assert not list((tmp_path / "runs").glob("*/checkpoints/step_*"))


def test_the_step_memory_bound_counts_the_attention_weights_and_logits_of_the_model_shapes():
    from tt_core.model.gpt import GPTConfig

    gpt = GPTConfig(observation_dim=17, action_dim=6, num_bins=100, seq_len=10, n_layers=4, n_heads=4)
    t, E, rows = 10 * 25 - 1, 128, 256
    logits = rows * t * 101 * 4
    assert step_memory_bytes(gpt, rows, "cuda") == logits + 4 * rows * t * 9 * E * 2
    assert step_memory_bytes(gpt, rows, "cpu") == logits + 4 * rows * t * 9 * E * 4 + 4 * rows * 4 * t * t * 8


def test_the_step_memory_bound_stays_below_what_a_real_cpu_step_holds():
    """A lower bound: refusing by it never refuses a step that would have fit. Measured
    in a fresh process: its peak resident memory during one training step over its
    resident memory before it (Linux: VmHWM, reset through /proc/self/clear_refs)."""
    script = """
import torch
from tt_core.jobs.machine import PeakMemory
from tt_core.model.gpt import GPTConfig, TrajectoryGPT
from tt_core.train.trainer import compute_gradients, step_memory_bytes, target_kinds
gpt = GPTConfig(observation_dim=11, action_dim=3, num_bins=50, seq_len=10, n_layers=2, n_heads=4, embedding_dim=64)
model = TrajectoryGPT(gpt).train()
rows, t = 96, gpt.block_size
x = torch.randint(0, 50, (rows, t))
kind, weights = target_kinds(t, 11, 3), torch.ones(4)
status = open("/proc/self/status").read()
before = int(next(l for l in status.splitlines() if l.startswith("VmRSS:")).split()[1]) * 1024
peak = PeakMemory(torch.device("cpu"))
peak.reset()  # the peak from here: this step alone
compute_gradients(model, list(model.parameters()), x, x, torch.ones(rows, t), kind, weights, 1.0, "fp32")
print(step_memory_bytes(gpt, rows, "cpu"), peak.read() - before)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    bound, grown = map(int, done.stdout.split())
    assert 0 < bound <= grown, (bound, grown)


# ------------------------------------------------------------------ one line, its code


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("make", [
    lambda cfg: ("train", cfg.with_name("deep.yaml"), "--headless"),
    lambda cfg: ("train", cfg, f"train.lr={_nested(5000)}", "--headless"),
])
def test_a_config_or_override_nested_thousands_deep_is_a_config_error(tiny_config, make):
    tiny_config.with_name("deep.yaml").write_text(tiny_config.read_text() + "extra: " + _nested(4000) + "\n")
    result = tt(*make(tiny_config))
    assert result.returncode == 2
    assert "nested too deeply" in _one_error_line(result)


def test_an_output_folder_that_is_a_device_is_an_output_error(tiny_config):
    result = tt("train", tiny_config, "train.out_dir=/dev/null", "--headless")
    assert result.returncode == 3
    assert "/dev/null" in _one_error_line(result) and "is a file, not a folder" in _one_error_line(result)


@pytest.mark.parametrize("args, key", [
    (("eval", "--episodes", "99999999999999999999"), "eval.episodes"),
    (("eval", "--max-steps", "99999999999999999999"), "eval.max_steps"),
    (("collect", "Hopper-v5", "--dataset-id", "local/x/y-v0", "--steps", "99999999999999999999"),
     "dataset.collect.steps"),
    (("collect", "Hopper-v5", "--dataset-id", "local/x/y-v0", "--seed", "99999999999999999999"),
     "dataset.collect.seed"),
])
def test_numbers_too_large_for_numpy_or_torch_are_refused_by_their_bounds(args, key):
    result = tt(*args)
    assert result.returncode == 2
    assert f"{key}: 99999999999999999999 must be in [" in _one_error_line(result)


def test_eval_json_to_a_full_device_is_refused_before_planning(tmp_path):
    start = time.monotonic()
    result = tt("eval", "--json", "/dev/full", "--episodes", "1")
    assert result.returncode == 3
    assert "--json /dev/full: not writable (No space left on device)" in _one_error_line(result)
    assert time.monotonic() - start < 60


def test_a_multi_line_reason_from_outside_is_printed_on_one_line():
    from tt_tui.cli.exits import one_line

    assert one_line("HTTP Error 308: loop\nThe last 30x error message was:\r\nPermanent Redirect") == \
        "HTTP Error 308: loop / The last 30x error message was: / Permanent Redirect"
    assert one_line("bell\x07 and\ttab") == "bell\\x07 and\\ttab"


def test_a_full_disk_under_an_atomic_write_or_the_metrics_names_the_file(small_disk):  # noqa: F811
    from tt_core.durable import atomic_write_bytes
    from tt_core.errors import as_user_error
    from tt_core.events import TrainStep
    from tt_core.runs.metrics import MetricsWriter

    disk = small_disk("full", "size=64k")
    with pytest.raises(OSError) as raised:
        atomic_write_bytes(disk / "big.bin", os.urandom(200_000))
    assert raised.value.filename == str(disk / "big.bin")
    assert str(disk) in str(as_user_error(raised.value))
    writer = MetricsWriter(disk / "metrics.jsonl")
    with pytest.raises(OSError) as raised:
        for step in range(10_000):
            writer(TrainStep(step, 0.0, 0, 1.0, 1.0, 1.0, 1.0, 1.0, 1e-3, 1.0))
    assert raised.value.filename == str(disk / "metrics.jsonl")
