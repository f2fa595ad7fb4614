"""The `tt-tui` command end to end, in real subprocesses: exit codes, messages, kills."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import write_tiny_config
from tt_core.runs import checkpoint as ckpt


def tt(*args, timeout=180, **env):
    return subprocess.run(
        [sys.executable, "-m", "tt_tui.cli", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **env},
    )


def _one_error_line(result) -> str:
    """The single `error:` line (progress messages may precede it; no traceback)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_config_error_exits_2_with_one_line_and_no_traceback(tiny_config):
    result = tt("train", tiny_config, "plan.beam_width=0", "--headless")
    assert result.returncode == 2
    assert "plan.beam_width: 0 must be in [1, 4096]" in _one_error_line(result)


def test_unknown_flag_is_a_usage_error():
    result = tt("train", "--beam-with", "3")
    assert result.returncode == 2
    assert "No such option: --beam-with" in _one_error_line(result)


def test_a_bad_flag_value_is_one_line_not_a_box():
    result = tt("eval", "--beam-width", "abc")
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "'--beam-width'" in line and "see `tt-tui eval --help`" in line
    assert "╭" not in result.stderr and "Usage:" not in result.stderr


def test_missing_dataset_offline_exits_3_and_says_how_to_fix(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("dataset: {id: mujoco/hopper/expert-v0}\n")
    start = time.monotonic()
    # HF_HUB_OFFLINE makes the hub client fail at once instead of retrying for ~20 s
    result = tt("train", config, "--headless", HF_HUB_OFFLINE="1")
    assert time.monotonic() - start < 60
    assert result.returncode == 3
    line = _one_error_line(result)
    assert "mujoco/hopper/expert-v0" in line and "tt-tui collect" in line


def test_collect_then_list_datasets():
    result = tt("collect", "Hopper-v5", "--dataset-id", "test/hopper/listed-v0", "--steps", 300)
    assert result.returncode == 0, result.stderr
    assert "wrote test/hopper/listed-v0" in result.stdout
    listing = tt("datasets")
    row = next(line for line in listing.stdout.splitlines() if "test/hopper/listed-v0" in line)
    assert "Hopper-v5" in row and "300" in row


def test_collect_unknown_env_exits_2():
    result = tt("collect", "NoSuchEnv-v9", "--dataset-id", "test/none/x-v0", "--steps", 10)
    assert result.returncode == 2
    assert "NoSuchEnv-v9" in _one_error_line(result)


def test_train_checkpoint_resume_through_the_cli(tmp_path):
    config = write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=200,
                               checkpoint_every=100)
    first = tt("train", config, "--headless", "--device", "cpu")
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert ckpt.load_run(run_dir).step == 200
    assert "training finished at step 200" in first.stderr

    more = tt("train", "--resume", run_dir, "train.max_steps=260", "--headless")
    assert more.returncode == 0, more.stderr
    assert f"resumed {run_dir} at step 200" in more.stderr
    assert ckpt.load_run(run_dir).step == 260
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [r["step"] for r in steps if r["event"] == "TrainStep"]
    assert logged[0] == 5 and logged[-1] == 260 and logged == sorted(logged)


def test_resume_of_a_missing_run_exits_3(tmp_path):
    result = tt("train", "--resume", tmp_path / "nope", "--headless")
    assert result.returncode == 3
    assert "no such run directory" in _one_error_line(result)


def test_resume_from_a_corrupt_checkpoint_exits_3(tmp_path):
    config = write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=10)
    assert tt("train", config, "--headless").returncode == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    weights = run_dir / "checkpoints" / "step_000000010" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    result = tt("train", "--resume", run_dir, "--headless")
    assert result.returncode == 3
    assert "model.safetensors: truncated or corrupt" in _one_error_line(result)


def test_sigkill_at_any_moment_leaves_a_loadable_checkpoint(tmp_path):
    """Checkpoint every step so most kills land inside a save; resume after each."""
    config = write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=100_000,
                               checkpoint_every=1, log_every=50)
    rng = random.Random(0)
    cmd = [sys.executable, "-m", "tt_tui.cli", "train", str(config), "--headless"]
    run_dir, last_step = None, None
    for _ in range(4):  # four kills, each at a random moment after a save began
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until this process has saved at least once
            runs = list((tmp_path / "runs").glob("*"))
            if runs and (runs[0] / "latest.json").exists():
                before = ckpt.latest_step(ckpt.RunFiles(runs[0]))
                if before != last_step:  # this process has written a checkpoint of its own
                    break
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        (run_dir,) = list((tmp_path / "runs").glob("*"))
        loaded = ckpt.load_run(run_dir)  # must never raise
        last_step = loaded.step
        cmd = [sys.executable, "-m", "tt_tui.cli", "train", "--resume", str(run_dir), "--headless"]
    assert last_step > 0
    finish = tt("train", "--resume", run_dir, f"train.max_steps={last_step + 3}", "--headless")
    assert finish.returncode == 0, finish.stderr
    assert ckpt.load_run(run_dir).step == last_step + 3


def test_sigint_stops_cleanly_and_saves(tmp_path):
    config = write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=100_000,
                               checkpoint_every=100_000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tt_tui.cli", "train", str(config), "--headless"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not list((tmp_path / "runs").glob("*/metrics.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "training stopped at step" in err
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert ckpt.load_run(run_dir).step > 0


def test_bench_train_reports_median_tokens_per_second_of_each_variant_side_by_side():
    result = tt("bench", "train", "--batch", "2", "--steps", "1", "--repeats", "2",
                "--variant", "fp32", "--variant", "bf16")
    assert result.returncode == 0, result.stderr
    assert "batch 2 x 249 tokens" in result.stdout and "tokens/s (median)" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("| fp32") or line.startswith("| bf16")]
    assert len(rows) == 2 and "| 1.00x |" in rows[0]
    bad = tt("bench", "train", "--variant", "fp16")
    assert bad.returncode == 2 and "--variant must be one of fp32, bf16, compile+fp32, compile+bf16" in bad.stderr


def test_bench_gpu_runs_its_whole_script_quickly_anywhere_and_refuses_a_non_cuda_device():
    """The GPU benchmark cannot be measured here; --quick runs every part of it tiny."""
    result = tt("bench", "gpu", "--device", "cpu", "--quick")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("training, device cpu") == 1 and "| compile" not in out
    assert "| 2 | 2 x 2 | 2 | tt-tui | bf16 |" in out  # planning rows, fp32 and bf16
    assert "headline, device cpu: 2 Walker2d-v5 envs x 3 env steps, 2 x 2 beams" in out
    refused = tt("bench", "gpu", "--device", "cpu")
    assert refused.returncode == 2 and "bench gpu measures a CUDA device" in refused.stderr


def test_a_diverging_run_stops_at_the_first_bad_step_and_keeps_only_finite_checkpoints(tmp_path):
    """lr 1e30 with a checkpoint every step: before, checkpoints full of NaN replaced and
    pruned the good ones and `eval` scored them. Now the run stops (exit 4) before the
    bad step is applied, names it, and every checkpoint on disk is finite."""
    from safetensors.torch import load_file

    cfg = write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=40)
    result = tt("train", str(cfg), "train.lr=1e30", "train.log_every=10", "train.checkpoint_every=1",
                "--headless")
    assert result.returncode == 4
    line = _one_error_line(result)
    assert "training diverged at step" in line and "the newest checkpoint is step" in line
    (run,) = (tmp_path / "runs").iterdir()
    saved = sorted((run / "checkpoints").glob("step_*"))
    assert saved, "the steps before the divergence were checkpointed"
    for step_dir in saved:
        weights = load_file(str(step_dir / "model.safetensors"))
        assert ckpt.non_finite_key(weights) is None
        assert ckpt.non_finite_key(torch.load(step_dir / "trainer.pt", weights_only=True)) is None
    bad_step = int(line.split("training diverged at step ")[1].split()[0])
    assert ckpt.latest_step(ckpt.RunFiles(run)) == bad_step - 1


def test_eval_refuses_weights_holding_nan_with_one_line_and_exit_3(tmp_path):
    from safetensors.torch import load_file, save_file

    from tt_core.config import load_config
    from tt_core.events import EventBus
    from tt_core.train.trainer import Trainer

    cfg = load_config(write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=10))
    run = Trainer(cfg, EventBus()).run()
    (step_dir,) = (run / "checkpoints").glob("step_*")
    weights = load_file(str(step_dir / "model.safetensors"))
    weights["head"][0, 0, 0] = float("nan")
    save_file(weights, str(step_dir / "model.safetensors"))
    result = tt("eval", str(run), "--episodes", "1", "--headless")
    assert result.returncode == 3
    assert "weight 'head' holds NaN or inf" in _one_error_line(result)


# ------------------------------------------- user and environment errors: one line, a code


def test_a_config_that_is_not_utf8_text_is_a_config_error(tmp_path):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)))
    result = tt("train", binary, "--headless")
    assert result.returncode == 2
    assert "binary.yaml: not UTF-8 text" in _one_error_line(result)


def test_a_key_given_twice_in_a_config_is_a_config_error(tmp_path, tiny_config):
    doubled = tmp_path / "doubled.yaml"
    doubled.write_text(tiny_config.read_text().replace("  num_bins: 20\n", "  num_bins: 20\n  num_bins: 30\n"))
    result = tt("train", doubled, "--headless")
    assert result.returncode == 2
    assert "duplicate key 'num_bins'" in _one_error_line(result)


@pytest.mark.parametrize("args", [
    ("train", "{cfg}", "train.seed=-1"),
    ("train", "{cfg}", "dataset.collect.seed=-1"),
    ("train", "{cfg}", "eval.seed=-1"),
    ("train", "{cfg}", "dataset.id=" + "x" * 300),
    ("collect", "Hopper-v5", "--dataset-id", "local/x/y-v0", "--steps", "5", "--seed", "-1"),
    ("collect", "Hopper-v5", "--dataset-id", "local/x/" + "a" * 300 + "-v0", "--steps", "5"),
])
def test_negative_seeds_and_over_long_dataset_ids_are_refused_like_any_bad_value(tiny_config, args):
    extra = ["--headless"] if args[0] == "train" else []
    result = tt(*[a.format(cfg=tiny_config) for a in args], *extra)
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "in [0, 4294967295]" in line or "at most 200 bytes" in line or "too long for the file system" in line


def test_a_run_config_of_random_bytes_is_a_checkpoint_error(tmp_path):
    from tt_core.config import load_config
    from tt_core.events import EventBus
    from tt_core.train.trainer import Trainer

    cfg = load_config(write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=10))
    run = Trainer(cfg, EventBus()).run()
    (run / "config.yaml").write_bytes(bytes(range(256)) * 4)
    result = tt("eval", run, "--episodes", "1", "--headless")
    assert result.returncode == 3
    assert "config.yaml: unreadable or corrupt" in _one_error_line(result)


def test_latest_json_pointing_outside_the_run_and_a_run_without_checkpoints_are_named(tmp_path):
    from tt_core.config import load_config
    from tt_core.events import EventBus
    from tt_core.train.trainer import Trainer

    cfg = load_config(write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=10))
    run = Trainer(cfg, EventBus()).run()
    (run / "latest.json").write_text(json.dumps({"checkpoint": "../../elsewhere", "step": 10}))
    result = tt("eval", run, "--episodes", "1", "--headless")
    assert result.returncode == 3 and "points outside the run's checkpoints/" in _one_error_line(result)
    (run / "latest.json").unlink()  # lost while its checkpoints stay: the one to resume from is named
    result = tt("train", "--resume", run, "--headless")
    assert result.returncode == 3 and f"--resume {run}/checkpoints/step_000000010" in _one_error_line(result)
    shutil.rmtree(run / "checkpoints")  # as a run killed before its first checkpoint leaves it
    result = tt("train", "--resume", run, "--headless")
    assert result.returncode == 3 and "no checkpoint yet" in _one_error_line(result)


def test_unwritable_eval_json_and_record_out_fail_before_any_planning(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for args in (("eval", "no-such-run", "--json", blocker / "out.json"),
                 ("eval", "no-such-run", "--json", tmp_path),
                 ("record", "no-such-run", "--out", blocker / "gifs")):
        result = tt(*args, "--headless")
        assert result.returncode == 3, args
        line = _one_error_line(result)
        assert ("not writable" in line or "is a folder, not a file" in line or "is not a folder" in line), line
        assert "no such run" not in line  # checked before the run is even loaded


def test_a_model_too_large_to_allocate_says_how_much_memory_it_asked_for(tiny_config):
    result = tt("train", tiny_config, "model.embedding_dim=1000000000000", "model.n_heads=1", "--headless")
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "parameters need" in line and "GiB" in line and "could not be allocated" in line


def test_no_command_shows_the_help_once_and_exits_0():
    result = tt()
    assert result.returncode == 0
    assert (result.stdout + result.stderr).count("Usage: tt-tui") == 1


# ------------------------------------------- full and read-only disks (a real tmpfs)


@pytest.fixture
def small_disk(tmp_path):
    """A real tmpfs mount; its options are set by the test. Skipped where mounting is
    not allowed (not root, or a sandbox without CAP_SYS_ADMIN)."""
    mounts = []

    def mount(name: str, options: str):
        where = tmp_path / name
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounts.append(where)
        return where

    yield mount
    for where in mounts:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_full_disk_while_checkpointing_says_no_space_and_keeps_earlier_files(small_disk, tmp_path):
    disk = small_disk("full", "size=120k")
    cfg = write_tiny_config(tmp_path / "c.yaml", disk / "runs", max_steps=20, checkpoint_every=5)
    result = tt("train", cfg, "--headless")
    assert result.returncode == 3
    line = _one_error_line(result)
    assert "no space left on" in line and str(disk) in line, line
    (run,) = (disk / "runs").iterdir()
    assert (run / "config.yaml").exists() and not list((run / "checkpoints").glob(".step_*"))


def test_a_read_only_run_folder_or_dataset_folder_says_it_is_not_writable(small_disk, tmp_path):
    disk = small_disk("ro", "ro,size=1m")
    cfg = write_tiny_config(tmp_path / "c.yaml", disk / "runs", max_steps=5)
    result = tt("train", cfg, "--headless")
    assert result.returncode == 3 and "is not writable (Read-only file system)" in _one_error_line(result)
    result = tt("collect", "Hopper-v5", "--dataset-id", "local/ro/test-v0", "--steps", "20",
                MINARI_DATASETS_PATH=str(disk / "minari"))
    assert result.returncode == 3 and "is not writable" in _one_error_line(result)


# ------------------------------------------------------------------ Ctrl+C


def test_ctrl_c_while_training_collects_its_dataset_stops_at_once_and_writes_no_dataset(tmp_path):
    minari_root = tmp_path / "minari"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(write_tiny_config(tmp_path / "t.yaml", tmp_path / "runs").read_text()
                   .replace("test/hopper/tiny-v0", "test/hopper/big-v0").replace("steps: 400", "steps: 2000000"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tt_tui.cli", "train", str(cfg), "--headless"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "MINARI_DATASETS_PATH": str(minari_root)},
    )
    for line in proc.stdout:  # wait until collection has started
        if "collecting" in line:
            break
    time.sleep(1.0)
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=60)[0]
    assert time.monotonic() - start < 20  # not after the 2M steps
    assert proc.returncode == 130, rest
    assert "stopped while collecting" in rest
    assert not (minari_root / "test" / "hopper" / "big-v0").exists()


def test_once_a_job_has_ended_a_further_ctrl_c_changes_nothing():
    from tt_tui.cli.foreground import run_job

    stops = []

    def job(bus, controls):
        os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl+C: a clean stop is requested
        stops.append(controls.stop_requested)

    class Reporter:
        def __call__(self, event):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    try:
        run_job(job, Reporter())
        os.kill(os.getpid(), signal.SIGINT)  # a second press after the stop completed
        time.sleep(0.1)
        assert stops == [True]
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_an_immutable_output_folder_is_found_before_planning(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        result = tt("record", "no-such-run", "--out", folder, "--headless")
        assert result.returncode == 3
        assert "locked: not writable (Operation not permitted)" in _one_error_line(result)
    finally:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)


def test_eval_and_record_take_the_same_planning_flags():
    """One definition: every planning flag of eval is a flag of record too."""
    from tt_tui.cli.planning import PLANNING_FLAGS

    for command in ("eval", "record"):
        help_text = tt(command, "--help").stdout
        missing = [f.name for f in PLANNING_FLAGS if f.name.split("/")[0] not in help_text]
        assert missing == [], (command, missing)


def test_bench_plan_prints_one_table_and_how_to_run_the_full_matrix():
    result = tt("bench", "plan", "--envs", "1", "--width", "2", "--steps", "2", "--repeats", "1")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "| 1 | 2 x 2 | 2 | tt-tui | fp32 |" in out and "| 1 | 2 x 2 | 2 | naive | fp32 |" in out
    assert "tt-tui bench plan --full" in out
    bad = tt("bench", "plan", "--width", "2", "--width", "3", "--steps", "2")
    assert bad.returncode == 2 and "must be given the same number of times" in bad.stderr


def test_show_says_in_one_line_when_there_is_no_terminal_or_no_run(tiny_config, tmp_path):
    missing = tt("show", tmp_path / "nope")
    assert missing.returncode == 3 and _one_error_line(missing) == f"error: {tmp_path / 'nope'}: no such run directory"
    assert tt("train", tiny_config, "train.max_steps=5", "--headless").returncode == 0
    (run,) = (tmp_path / "runs").iterdir()
    piped = tt("show", run)
    assert piped.returncode == 2 and "needs a terminal" in _one_error_line(piped)


def test_bench_tables_report_gflops_the_share_of_the_machine_and_peak_memory():
    """Each row's GFLOP/s is its tokens/s times the network's FLOP formula, its % is that
    over the matrix speed measured in the same run, and its peak memory is in MiB."""
    import re

    from tt_core.jobs.bench import WALKER2D

    train = tt("bench", "train", "--batch", "4", "--steps", "1", "--repeats", "1", "--variant", "fp32")
    assert train.returncode == 0, train.stderr
    header = next(line for line in train.stdout.splitlines() if line.startswith("| variant |"))
    row = next(line for line in train.stdout.splitlines() if line.startswith("| fp32 |"))
    cell = dict(zip([c.strip() for c in header.strip("|").split("|")], [c.strip() for c in row.strip("|").split("|")]))
    tokens_per_s, gflops = float(cell["tokens/s (median)"].replace(",", "")), float(cell["GFLOP/s"].replace(",", ""))
    share, peak = cell["% of machine"], cell["peak memory"]
    flops = 3 * WALKER2D.token_flops((WALKER2D.block_size + 1) / 2)
    assert gflops == pytest.approx(tokens_per_s * flops / 1e9, rel=0.01, abs=0.06)
    machine = float(re.search(r"([\d,]+) GFLOP/s in fp32", train.stdout).group(1).replace(",", ""))
    # the table prints GFLOP/s to 0.1, the machine to 1 and the share to 1 %: their rounding, no more
    rounding = 100 * (0.05 / machine + gflops * 0.5 / machine**2) + 0.5
    assert int(share.rstrip(" %")) == pytest.approx(100 * gflops / machine, abs=rounding + 1e-9)
    assert re.fullmatch(r"[\d,]+ MiB", peak) and int(peak.split()[0].replace(",", "")) > 0

    plan = tt("bench", "plan", "--envs", "1", "--width", "2", "--steps", "2", "--repeats", "1", "--no-naive")
    assert plan.returncode == 0, plan.stderr
    row = next(line for line in plan.stdout.splitlines() if line.startswith("| 1 | 2 x 2 |"))
    assert re.search(r"\| [\d,.]+ \| \d+ % \| [\d,]+ MiB \|$", row), row
