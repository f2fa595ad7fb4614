"""Shared fixtures: a private Minari root and token cache, a tiny real dataset and config."""

import os
from pathlib import Path

import pytest

from ftt_seed import seed_dir, seed_module  # noqa: F401  (fixtures for FTT-format tests)

TINY_ID = "test/hopper/tiny-v0"


@pytest.fixture(scope="session", autouse=True)
def private_dirs(tmp_path_factory):
    """Keep ~/.minari and ~/.cache untouched; subprocesses inherit these variables."""
    root = tmp_path_factory.mktemp("session")
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ["MINARI_DATASETS_PATH"] = str(root / "minari")
    os.environ["TT_CACHE_DIR"] = str(root / "cache")
    return root


def write_tiny_config(
    path: Path, out_dir: Path, model: str = "{embedding_dim: 16, n_layers: 1, n_heads: 2, dropout: 0.1}",
    threads: int | None = 1, **train,
) -> Path:
    """A config small enough to train in seconds, on a Hopper-v5 dataset it collects itself.
    One CPU thread unless `threads` says otherwise (None: the default policy): a run's
    numbers depend on the thread count, and the default one follows the machine's load
    (tt_core/threads.py), which the other test workers make."""
    settings = dict(batch_size=16, max_steps=30, checkpoint_every=10, log_every=5, epochs=50)
    settings.update(train)
    train_lines = "\n".join(f"  {k}: {v}" for k, v in settings.items())
    path.write_text(
        f"""dataset:
  id: {TINY_ID}
  num_bins: 20
  seq_len: 3
  termination_penalty: -100
  collect: {{env_id: Hopper-v5, steps: 400, seed: 1}}
model: {model}
train:
  out_dir: {out_dir}
{train_lines}
plan: {{beam_width: 4, beam_steps: 2, beam_context: 2, sample_expand: 2}}
eval: {{episodes: 2, max_steps: 20}}
"""
        + (f"device: {{threads: {threads}}}\n" if threads is not None else "")
    )
    return path


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    return write_tiny_config(tmp_path / "tiny.yaml", tmp_path / "runs")
