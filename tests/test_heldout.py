"""`tt-tui loss`: held-out cross-entropy per token kind, for tt-tui runs and seed-format models.

The expected numbers are transcribed here window by window, token by token (log-softmax of
each target), from the definition: every window of whole transitions inside one episode,
target j predicting transition dimension (j + 1) % T.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import TINY_ID, write_tiny_config
from ftt_seed import SEQ
from tt_core.config import load_config
from tt_core.data.minari_io import collect_dataset, load_dataset
from tt_core.data.trajectories import Trajectories, build_trajectories
from tt_core.errors import ConfigError
from tt_core.events import EventBus
from tt_core.plan.agent import load_agent
from tt_core.train.heldout import KEEP, heldout_loss, whole_windows
from tt_core.train.trainer import Trainer
from tt_tui.cli.loss import _penalty

ONE_WORKER = pytest.mark.xdist_group("heldout")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real run on the tiny Hopper dataset (which its config collects)."""
    root = tmp_path_factory.mktemp("heldout")
    return Trainer(load_config(write_tiny_config(root / "c.yaml", root / "runs", max_steps=40)), EventBus()).run()


@torch.no_grad()
def transcribed(logits_of, tokens: np.ndarray, traj: Trajectories, seq_len: int) -> dict:
    """Mean -log p(target) per kind over every whole window, one window at a time."""
    O, A, width = traj.observation_dim, traj.action_dim, traj.transition_dim
    sums, counts = dict.fromkeys(("obs", "act", "rew", "val"), 0.0), dict.fromkeys(("obs", "act", "rew", "val"), 0)
    for start, length in zip(traj.episode_starts, traj.episode_lengths):
        for s in range(start, start + length - seq_len + 1):
            seq = torch.as_tensor(tokens[s : s + seq_len].reshape(-1), dtype=torch.long)
            logp = torch.log_softmax(logits_of(seq[None, :-1])[0].double(), dim=-1)
            for j in range(len(seq) - 1):
                d = (j + 1) % width
                kind = "obs" if d < O else "act" if d < O + A else "rew" if d == O + A else "val"
                sums[kind] -= float(logp[j, seq[j + 1]])
                counts[kind] += 1
    return {k: sums[k] / counts[k] for k in sums}


@ONE_WORKER
def test_a_runs_loss_is_the_mean_cross_entropy_of_each_kind_over_whole_windows(tiny_run):
    agent = load_agent(tiny_run, torch.device("cpu"))
    cfg = agent.config.dataset
    traj = build_trajectories(load_dataset(TINY_ID), cfg.discount, cfg.termination_penalty)
    expected = transcribed(agent.model, agent.discretizer.encode(traj.joined()), traj, cfg.seq_len)
    got = heldout_loss(tiny_run, TINY_ID)
    assert got.termination_penalty == -100 and got.windows == len(whole_windows(traj, cfg.seq_len))
    for kind, value in expected.items():
        assert getattr(got, kind) == pytest.approx(value, rel=1e-5), kind


@ONE_WORKER
def test_a_seed_format_model_is_scored_by_its_own_forward_pass_and_bins(tiny_run, seed_dir):
    path, seed_model, seed_disc = seed_dir  # an unpublished file: the pre-norm block
    traj = build_trajectories(load_dataset(TINY_ID), 0.99, None)  # the seed adds no penalty
    expected = transcribed(lambda x: seed_model(x, norm_residual=False), seed_disc.encode(traj.joined().astype(np.float64)),
                           traj, SEQ)
    got = heldout_loss(path, TINY_ID)
    assert got.termination_penalty is None
    for kind, value in expected.items():
        assert getattr(got, kind) == pytest.approx(value, rel=1e-4), kind
    # the data's terminal rewards can be replaced, as the model's trainer may have done
    penalised = heldout_loss(path, TINY_ID, termination_penalty=-100.0)
    assert penalised.termination_penalty == -100.0 and penalised.rew != got.rew


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(1, 12), min_size=1, max_size=8), seq_len=st.integers(1, 6))
def test_whole_windows_are_exactly_those_inside_one_episode(lengths, seq_len):
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    episode_of = np.repeat(np.arange(len(lengths)), lengths)
    n = sum(lengths)
    traj = Trajectories(np.zeros((n, 1), np.float32), np.zeros((n, 1), np.float32), np.zeros(n, np.float32),
                        np.zeros(n, np.float32), np.zeros(n, bool), starts, np.asarray(lengths, np.int64))
    brute = [s for s in range(n) if s + seq_len <= n and episode_of[s] == episode_of[s + seq_len - 1]]
    assert whole_windows(traj, seq_len).tolist() == brute


@given(st.text(max_size=12))
def test_the_penalty_flag_is_keep_none_a_finite_number_or_one_clear_error(text):
    try:
        value = _penalty(text)
    except ConfigError as exc:
        assert "\n" not in str(exc) and "--termination-penalty" in str(exc)
        return
    assert value in (KEEP, None) or (isinstance(value, float) and np.isfinite(value))


def tt(*args):
    return subprocess.run([sys.executable, "-m", "tt_tui.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@ONE_WORKER
def test_loss_cli_prints_each_models_losses_and_refuses_a_dataset_of_other_shapes(tiny_run):
    done = tt("loss", tiny_run, "--dataset", TINY_ID, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [heldout_loss(tiny_run, TINY_ID).as_dict() | {"model": str(tiny_run)}]
    table = tt("loss", tiny_run, "--dataset", TINY_ID)
    assert table.returncode == 0 and "obs" in table.stdout and "-100" in table.stdout
    collect_dataset("InvertedPendulum-v5", "test/pendulum/heldout-v0", 60, seed=0)
    other = tt("loss", tiny_run, "--dataset", "test/pendulum/heldout-v0")
    assert other.returncode == 3 and other.stderr.count("\n") == 1
    assert "11/3" in other.stderr and "4/1" in other.stderr
