"""Training and evaluation across processes: torch.distributed (gloo on loopback), real
processes started by `tt-tui ... --nproc N` (torch.distributed.run) or by `torchrun`.

Every comparison is against the same command in one process. Models have no dropout
here: dropout masks are drawn per rank, so with dropout the runs agree in distribution
only (README: Scaling out).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import write_tiny_config
from tt_core.runs import checkpoint as ckpt

NO_DROPOUT = "{embedding_dim: 16, n_layers: 1, n_heads: 2, dropout: 0.0}"
LOSS_KEYS = ("loss", "loss_obs", "loss_action", "loss_reward", "loss_value")


def tt(*args, cwd: Path, timeout=300, **kw):
    return subprocess.run([sys.executable, "-m", "tt_tui.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"}, **kw)


def config(tmp_path: Path, name: str, **train) -> Path:
    settings = dict(batch_size=16, max_steps=50, checkpoint_every=25, log_every=5, eval_every="null")
    settings.update(train)
    return write_tiny_config(tmp_path / f"{name}.yaml", tmp_path / name, model=NO_DROPOUT, **settings)


def the_run(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir()]  # rank 0 alone made a run directory
    return run


def logged(run: Path) -> dict[int, tuple[float, ...]]:
    steps = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["event"] == "TrainStep":
            assert record["step"] not in steps  # one writer: every step is logged once
            steps[record["step"]] = tuple(record[k] for k in LOSS_KEYS)
    return steps


def assert_same_losses(a: dict, b: dict, steps) -> None:
    for step in steps:
        assert max(abs(x - y) for x, y in zip(a[step], b[step])) <= 1e-4, step


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference: 50 steps in one process (losses logged every 5)."""
    tmp = tmp_path_factory.mktemp("one")
    result = tt("train", config(tmp, "one"), "--headless", cwd=tmp)
    assert result.returncode == 0, result.stderr
    return logged(the_run(tmp / "one"))


def test_two_processes_log_the_losses_of_one_process_at_every_step(one_process, tmp_path):
    result = tt("train", config(tmp_path, "two"), "--headless", "--nproc", 2, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    two = logged(the_run(tmp_path / "two"))
    assert sorted(two) == sorted(one_process) == list(range(5, 51, 5))
    assert_same_losses(one_process, two, two)
    # rank 0 alone reports: one start line, and nothing from the launcher
    lines = result.stderr.splitlines()
    assert sum(line.startswith("run ") for line in lines) == 1 and "OMP_NUM_THREADS" not in result.stderr


@pytest.mark.parametrize("first, then", [(2, 1), (1, 2)])
def test_a_run_resumes_on_another_number_of_processes(one_process, tmp_path, first, then):
    cfg = config(tmp_path, "run", max_steps=25)
    nproc = lambda n: ["--nproc", n] if n > 1 else []
    assert tt("train", cfg, "--headless", *nproc(first), cwd=tmp_path).returncode == 0
    run = the_run(tmp_path / "run")
    assert ckpt.latest_step(ckpt.RunFiles(run)) == 25
    resumed = tt("train", "--resume", run, "train.max_steps=50", "--headless", *nproc(then), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_losses(one_process, logged(run), range(5, 51, 5))


def test_a_global_batch_that_does_not_split_over_the_processes_is_a_config_error(tmp_path):
    result = tt("train", config(tmp_path, "odd", batch_size=15), "--headless", "--nproc", 2, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: train.batch_size: 15 does not split evenly over 2 "
                                     "processes (it is the global batch)")


def _ranks(launcher: subprocess.Popen) -> dict[int, int]:
    """rank -> pid of the launcher's worker processes (read from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        rank = [v for v in env if v.startswith(b"RANK=")]
        if parent == launcher.pid and rank:
            found[int(rank[0][5:])] = int(entry.name)
    return found


def _start_long_run(tmp_path: Path, name: str) -> tuple[subprocess.Popen, Path]:
    cfg = config(tmp_path, name, max_steps=100000, epochs=10000, checkpoint_every=20, log_every=50)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "tt_tui.cli", "train", str(cfg), "--headless", "--nproc", "2"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until a checkpoint is on disk and both ranks run
        runs = [p for p in (tmp_path / name).glob("*") if (p / "latest.json").exists()]
        if runs and len(_ranks(launcher)) == 2:
            return launcher, runs[0]
        time.sleep(0.2)
    launcher.kill()
    pytest.fail("the 2-process run did not checkpoint within 120 s")


def test_a_killed_rank_stops_the_job_in_one_line_and_the_last_checkpoint_loads(tmp_path):
    launcher, run = _start_long_run(tmp_path, "killed")
    os.kill(_ranks(launcher)[1], signal.SIGKILL)
    killed_at = time.monotonic()
    out, err = launcher.communicate(timeout=120)
    assert time.monotonic() - killed_at < 60
    assert launcher.returncode == 5
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("error: rank 1 (pid ") and "killed by SIGKILL" in lines[-1]
    assert not any("Traceback" in line or "internal error" in line for line in lines)
    loaded = ckpt.load_run(run)  # the newest checkpoint is complete and resumable
    assert loaded.step == ckpt.latest_step(ckpt.RunFiles(run)) > 0


def test_ctrl_c_on_the_launcher_stops_every_rank_after_a_checkpoint(tmp_path):
    launcher, run = _start_long_run(tmp_path, "stopped")
    launcher.send_signal(signal.SIGINT)
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 0, err
    assert "training stopped at step" in out + err
    stopped_at = int((out + err).split("training stopped at step ")[1].split(";")[0])
    assert ckpt.latest_step(ckpt.RunFiles(run)) == stopped_at  # saved where every rank stopped
    assert err.count("stopping after this step") == 1  # rank 0 alone says so


def test_sigterm_on_the_launcher_stops_every_rank_after_a_checkpoint_with_143(tmp_path):
    from tt_core.runs.listing import STOPPED, summarize_run

    launcher, run = _start_long_run(tmp_path, "terminated")
    ranks = _ranks(launcher)
    launcher.send_signal(signal.SIGTERM)  # torchrun passes it on to every rank
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 143, err
    assert "training stopped at step" in out + err, out + err
    stopped_at = int((out + err).split("training stopped at step ")[1].split(";")[0])
    assert ckpt.latest_step(ckpt.RunFiles(run)) == stopped_at  # saved where every rank stopped
    assert summarize_run(run).state == STOPPED
    assert err.count("SIGTERM: stopping after this step") == 1  # rank 0 alone says so
    assert "Traceback" not in err and not any(Path(f"/proc/{pid}").exists() for pid in ranks.values())


def test_evaluation_split_over_two_processes_equals_one_process(one_process, tmp_path):
    cfg = config(tmp_path, "eval", max_steps=10)
    assert tt("train", cfg, "--headless", cwd=tmp_path).returncode == 0
    run = the_run(tmp_path / "eval")
    args = ["eval", run, "--episodes", 5, "--max-steps", 12, "--headless"]
    one = tt(*args, "--json", tmp_path / "one.json", cwd=tmp_path)
    two = tt(*args, "--nproc", 2, "--json", tmp_path / "two.json", cwd=tmp_path)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert [e["env_index"] for e in b["episodes"]] == list(range(5))  # rank 0: 0-2, rank 1: 3-4
    assert a["episodes"] == b["episodes"]
    assert a["summary"]["return_mean"] == b["summary"]["return_mean"]


def test_two_nodes_meet_by_c10d_rendezvous_on_loopback_and_train_like_one_process(one_process, tmp_path):
    cfg = config(tmp_path, "nodes")
    port = free_port()
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
             "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "tt-test",
             "--module", "tt_tui.cli", "train", str(cfg), "--headless"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        for _ in range(2)
    ]
    for node in nodes:
        out, err = node.communicate(timeout=300)
        assert node.returncode == 0, err
    assert_same_losses(one_process, logged(the_run(tmp_path / "nodes")), range(5, 51, 5))
