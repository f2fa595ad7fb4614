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
from tt_core.errors import DataError
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


def test_a_collection_killed_while_it_writes_leaves_no_dataset_and_the_next_one_collects_it(minari_root):
    outcomes = []
    for k, delay in enumerate((0.0, 0.05, 0.2)):  # kills at three moments of the write
        dataset_id = f"test/kill/k{k}-v0"
        proc = subprocess.Popen(_collect_cmd(dataset_id, 8_000), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        _wait_for_the_write(minari_root, dataset_id)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        whole = (minari_root / dataset_id).exists()  # the kill came after the rename
        outcomes.append(whole)
        assert [d.damaged for d in list_datasets() if d.id == dataset_id] == ([None] if whole else [])
    assert not all(outcomes)  # at least one kill landed inside the write
    again = tt("collect", "Hopper-v5", "--dataset-id", "test/kill/k0-v0", "--steps", "300")
    assert again.returncode in (0, 3), again.stderr  # 3: k0 was whole already
    assert not list(minari_root.glob(f"{TEMP_PREFIX}*"))  # the dead processes' temporaries are gone


def test_the_temporary_root_of_a_live_collection_is_left_alone(minari_root):
    from tt_core.data.minari_io import LOCK_FILE, remove_stale_temporaries
    from tt_core.durable import FileLock

    live, dead = minari_root / f"{TEMP_PREFIX}1-live", minari_root / f"{TEMP_PREFIX}2-dead"
    for folder in (live, dead):
        folder.mkdir(parents=True)
    held = FileLock(live / LOCK_FILE).acquire("pid 1")  # as a collection holds it while it writes
    remove_stale_temporaries(minari_root)
    assert live.exists() and not dead.exists()
    held.release()
    remove_stale_temporaries(minari_root)
    assert not live.exists()


def test_ctrl_c_while_the_dataset_is_written_is_honoured_in_one_line_and_writes_nothing(minari_root):
    dataset_id = "test/int/i-v0"
    proc = subprocess.Popen(_collect_cmd(dataset_id, 8_000), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
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


def test_a_dataset_of_another_minari_version_is_unreadable_here_not_damaged(minari_root, tmp_path):
    dataset_id = "test/hopper/tiny-v0"
    assert tt("collect", "Hopper-v5", "--dataset-id", dataset_id, "--steps", "400", "--seed", "1").returncode == 0
    meta = minari_root / dataset_id / "data" / "metadata.json"
    meta.write_text(meta.read_text().replace(json.loads(meta.read_text())["minari_version"], "==99.0"))
    result = tt("train", write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs"), "--headless")
    assert result.returncode == 3
    line = _one_error_line(result)
    assert "cannot be read by this install" in line and "rm -r" not in line
    assert "cannot be read by this install" in tt("datasets").stdout


def _files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))  # hidden ones included: `.tt-collect-*` temporaries


# the estimate of a dataset's size set to nothing: the check passes, the disk fills mid-write
# (as when another process fills it meanwhile)
_NO_ESTIMATE = ("import tt_core.data.minari_io as m; m.ARRAY_RATIO = m.EPISODE_BYTES = m.FILE_BYTES = 0; "
                "from tt_tui.cli import main; main()")


def test_a_dataset_the_disk_has_no_room_for_is_refused_before_anything_is_written(small_disk):  # noqa: F811
    disk = small_disk("minari", "size=2m")
    (disk / "there-before.txt").write_text("kept")
    before = _files(disk)
    result = tt("collect", "Hopper-v5", "--dataset-id", "local/x/y-v0", "--steps", "4000",
                MINARI_DATASETS_PATH=str(disk))
    assert result.returncode == 3, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"no space left on {disk}: dataset 'local/x/y-v0' needs ~" in result.stderr and "MiB free" in result.stderr
    assert _files(disk) == before


def test_a_disk_that_fills_while_the_dataset_is_written_is_one_line_and_leaves_nothing(small_disk):  # noqa: F811
    disk = small_disk("minari", "size=2m")
    (disk / "there-before.txt").write_text("kept")
    before = _files(disk)
    result = subprocess.run([sys.executable, "-c", _NO_ESTIMATE, "collect", "Hopper-v5", "--dataset-id",
                             "local/x/y-v0", "--steps", "4000"], capture_output=True, text=True, timeout=180,
                            env={**os.environ, "MINARI_DATASETS_PATH": str(disk)})
    assert result.returncode == 3, result.stderr  # h5py's thousands of lines and its crash stay in the writer
    assert result.stderr == f"error: no space left on {disk} (No space left on device)\n"
    assert _files(disk) == before


def test_a_training_that_collects_its_dataset_on_a_full_disk_ends_in_one_line(small_disk, tmp_path):  # noqa: F811
    disk = small_disk("minari", "size=2m")
    cfg = write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs")
    cfg.write_text(cfg.read_text().replace("steps: 400", "steps: 4000"))
    result = tt("train", cfg, "--headless", MINARI_DATASETS_PATH=str(disk))
    assert result.returncode == 3
    assert f"no space left on {disk}: dataset 'test/hopper/tiny-v0' needs ~" in _one_error_line(result)
    assert _files(disk) == []


def test_a_writer_process_that_dies_is_one_error_and_leaves_nothing(minari_root):
    from tt_core.data.minari_io import WriterProcess, make_env, policy_actor, record_episodes, write_dataset

    env = make_env("Hopper-v5", None)
    buffers = record_episodes(env, policy_actor("random", env, 0), 50, 0, lambda: False)
    writer = WriterProcess()
    os.kill(writer._proc.pid, signal.SIGSEGV)  # as h5py's crash on a full disk
    with pytest.raises(DataError, match="writing the dataset was killed by SIGSEGV.*; no dataset was written"):
        write_dataset("test/dies/d-v0", buffers, env, algorithm="random", description="d", writer=writer)
    env.close()
    assert list(minari_root.iterdir()) == []


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
    first.send_signal(signal.SIGSTOP)  # frozen: the files stay as the refused resume found them
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    refused = tt("train", "--resume", run, "--headless")
    assert refused.returncode == 3 and "is training this run" in _one_error_line(refused)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # it touched nothing
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
    assert summarize_run(run).why == "latest.json: unreadable or corrupt (not valid JSON)"
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


def test_the_step_memory_bound_counts_what_the_model_shapes_say():
    from tt_core.model.gpt import GPTConfig

    gpt = GPTConfig(observation_dim=17, action_dim=6, num_bins=100, seq_len=10, n_layers=4, n_heads=4)
    t, E, rows = 10 * 25 - 1, 128, 256
    logits = rows * t * 101 * 4
    blocks = [(0, 63), (63, 126), (126, 189), (189, 249)]  # attention.py's 4 causal query blocks
    kept = sum((b - a) * b for a, b in blocks)
    assert step_memory_bytes(gpt, rows, "cuda") == logits + 4 * rows * t * 9 * E * 2
    assert step_memory_bytes(gpt, rows, "cpu") == logits + 4 * rows * t * 9 * E * 4 + 4 * rows * 4 * kept * 8
    assert step_memory_bytes(gpt, rows, "cpu", compiled=True) == logits + 4 * rows * t * 9 * E * 4


@pytest.mark.parametrize("shape", [
    dict(seq_len=10, embedding_dim=64, n_heads=4, n_layers=2, dropout=0.1, rows=96),
    dict(seq_len=40, embedding_dim=32, n_heads=8, n_layers=2, dropout=0.1, rows=8),
    dict(seq_len=40, embedding_dim=32, n_heads=8, n_layers=2, dropout=0.0, rows=8),
    dict(seq_len=5, embedding_dim=128, n_heads=2, n_layers=3, dropout=0.1, rows=256),
])
def test_the_step_memory_bound_stays_below_what_a_real_cpu_step_holds(shape):
    """A lower bound: refusing by it never refuses a step that would have fit. Measured
    in a fresh process: its peak resident memory during one training step over its
    resident memory before it (Linux: VmHWM, reset through /proc/self/clear_refs)."""
    script = f"""
import torch
from tt_core.jobs.machine import PeakMemory
from tt_core.model.gpt import GPTConfig, TrajectoryGPT
from tt_core.train.trainer import compute_gradients, step_memory_bytes, target_kinds
s = {shape!r}
rows = s.pop("rows")
gpt = GPTConfig(observation_dim=11, action_dim=3, num_bins=50, **s)
model = TrajectoryGPT(gpt).train()
t = gpt.block_size
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


def test_show_skips_metrics_lines_that_are_not_json_objects_and_the_listing_names_the_first(tmp_path):
    from tt_core.controls import Controls
    from tt_core.events import TrainFinished
    from tt_core.jobs.show import show_job

    run = _trained_run(tmp_path, max_steps=5, checkpoint_every=5)
    with open(run / "metrics.jsonl", "a") as f:
        f.write("[1, 2]\n7\n" + _nested(100_000) + "\n")
    events: list = []
    bus = EventBus()
    bus.subscribe(events.append)
    controls = Controls()
    controls.request_stop()  # one pass over the file, then return
    show_job(run)(bus, controls)
    assert [e.step for e in events if isinstance(e, TrainFinished)] == [5]
    damaged = summarize_run(run)  # the view shows what checks; the listing names the first bad line
    assert damaged.state == DAMAGED and damaged.why.startswith("metrics.jsonl line ")


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
