"""`tt-tui runs`: every run under a folder, its progress and evaluations, and its state
told from its files (a heartbeat tells a running run from a crashed one)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import write_tiny_config
from tt_core.runs.listing import HEARTBEAT_FILE, STALE_AFTER_S, list_runs, summarize_run


def tt(*args, cwd: Path, timeout=300):
    return subprocess.run([sys.executable, "-m", "tt_tui.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def _wait_for(predicate, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_runs_lists_finished_stopped_running_and_crashed_runs_newest_first(tmp_path):
    out = tmp_path / "runs"
    finished_cfg = write_tiny_config(tmp_path / "f.yaml", out, max_steps=20, eval_every=10, log_every=5)
    assert tt("train", finished_cfg, "--headless", cwd=tmp_path).returncode == 0

    long_cfg = write_tiny_config(tmp_path / "l.yaml", out, max_steps=100000, epochs=10000, checkpoint_every=20)
    procs = []
    for _ in range(3):  # to be stopped by Ctrl+C, killed, and left running
        time.sleep(1.1)  # run directories are named by the second they start
        procs.append(subprocess.Popen([sys.executable, "-m", "tt_tui.cli", "train", str(long_cfg), "--headless"],
                                      cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    _wait_for(lambda: len([p for p in out.glob("*/latest.json")]) == 4, "three runs to checkpoint")
    stopped, killed, running = procs
    stopped.send_signal(signal.SIGINT)
    stopped.wait(60)
    killed.send_signal(signal.SIGKILL)
    killed.wait(60)
    try:
        rows = list_runs(out)
        assert [r.state for r in rows] == ["running", "crashed", "stopped", "finished"]  # newest first
        assert "is gone" in rows[1].why
        done = rows[3]
        assert (done.dataset, done.env, done.step, done.total_steps) == ("test/hopper/tiny-v0", "Hopper-v5", 20, 20)
        assert done.last_loss is not None and done.last_eval["step"] == 20 and done.best_eval is not None
        listed = tt("runs", out, cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0].split() == ["started", "state", "steps", "loss", "last", "eval", "best", "eval", "dataset", "env", "run"]
        assert [line.split()[2] for line in lines[1:]] == ["running", "crashed", "stopped", "finished"]
        as_json = json.loads(tt("runs", out, "--json", cwd=tmp_path).stdout)
        assert [r["state"] for r in as_json] == ["running", "crashed", "stopped", "finished"]
        assert as_json[3]["path"] == done.path
    finally:
        running.kill()
        running.wait(60)


def test_a_run_whose_heartbeat_went_stale_reads_as_crashed(tmp_path):
    out = tmp_path / "runs"
    cfg = write_tiny_config(tmp_path / "c.yaml", out, max_steps=10)
    assert tt("train", cfg, "--headless", cwd=tmp_path).returncode == 0
    (run,) = out.iterdir()
    # the same files as a run that died on another host mid-training: no TrainFinished
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(l for l in lines if '"TrainFinished"' not in l) + "\n")
    beat = json.loads((run / HEARTBEAT_FILE).read_text())
    (run / HEARTBEAT_FILE).write_text(json.dumps({**beat, "host": "another-host"}))
    assert summarize_run(run, now=beat["time"] + 5).state == "running"
    late = summarize_run(run, now=beat["time"] + STALE_AFTER_S + 120)
    assert late.state == "crashed" and late.why == "no heartbeat for 3 min"


def test_runs_of_an_empty_folder_says_how_to_make_one(tmp_path):
    result = tt("runs", tmp_path / "nothing", cwd=tmp_path)
    assert result.returncode == 0 and "no runs under" in result.stdout and "tt-tui train" in result.stdout
    assert os.listdir(tmp_path) == []


def test_a_run_that_failed_headless_says_why_and_a_nan_evaluation_is_never_the_best(tmp_path):
    out = tmp_path / "runs"
    cfg = write_tiny_config(tmp_path / "c.yaml", out, max_steps=40, checkpoint_every=1)
    diverged = tt("train", cfg, "train.lr=1e30", "--headless", cwd=tmp_path)
    assert diverged.returncode == 4
    assert diverged.stderr.count("training diverged") == 1  # on record, and printed once
    (run,) = out.iterdir()
    summary = summarize_run(run)
    assert summary.state == "crashed" and summary.why.startswith("failed: training diverged at step")
    # an evaluation whose every episode failed has a NaN mean: it is no one's best
    with open(run / "metrics.jsonl", "a") as f:
        for step, mean in ((10, float("nan")), (20, 50.0)):
            f.write(json.dumps({"event": "EvalFinished", "results": [], "step": step,
                                "summary": {"return_mean": mean, "score_mean": None}}) + "\n")
    summary = summarize_run(run)
    assert summary.best_eval == {"step": 20, "return": 50.0, "score": None}
    listed = tt("runs", out, "--json", cwd=tmp_path)
    assert listed.returncode == 0 and "NaN" not in listed.stdout


def test_an_evaluation_record_written_before_a_plan_key_existed_reads_back_typed():
    """metrics.jsonl is read by every later version: an EvalStarted record of a run made
    before `plan.discount` and `plan.dtype` existed comes back as a PlanConfig, the
    missing keys at today's defaults and a key since dropped ignored."""
    from tt_core.config import PlanConfig
    from tt_core.events import EvalStarted
    from tt_core.runs.records import BadRecord, check_record

    record = {"event": "EvalStarted", "time": 0.0, "env_id": "Hopper-v5", "episodes": 4, "source": "runs/x",
              "device": "cpu", "model": {}, "memory_available": None, "cache_bytes": 1024,
              "plan": {"beam_width": 8, "beam_steps": 3, "beam_context": 2, "sample_expand": 2, "k_obs": 1,
                       "k_act": None, "k_reward": 1, "cdf_obs": None, "cdf_act": 0.6, "temperature": 1.0,
                       "plan_every": 1, "percentile": "mean"}}
    event = check_record(record).event
    assert isinstance(event, EvalStarted) and isinstance(event.plan, PlanConfig)
    assert (event.plan.beam_width, event.plan.discount, event.plan.dtype) == (8, PlanConfig().discount, "fp32")
    assert event.plan.stop_mass == "zero"  # what runs before plan.stop_mass planned with
    with pytest.raises(BadRecord, match="beam_width"):  # a damaged record is refused, naming the field
        check_record({**record, "plan": {"beam_width": "wide"}})
