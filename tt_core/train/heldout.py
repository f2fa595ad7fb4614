"""How well a trained model predicts a dataset it may never have seen: cross-entropy in
nats per token kind (observation, action, reward, value) over every window of whole
transitions inside one episode.

The learning check compares trainers by it (docs/learning-check.md). Both kinds of
model tt-tui loads (its runs and seed-format directories) go through the same forward
pass and the trainer's own loss (`weighted_loss`), dropout off. Only windows that lie
wholly inside an episode count, so every target is real data: a model with the stop
token and one without are scored on the same targets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from tt_core.data.minari_io import load_dataset
from tt_core.data.tokens import tokenize
from tt_core.data.trajectories import Trajectories, build_trajectories
from tt_core.errors import DataError
from tt_core.plan.agent import Agent, load_agent
from tt_core.train.trainer import target_kinds, weighted_loss

KINDS = ("obs", "act", "rew", "val")
KEEP = "keep"  # the termination penalty the model was trained with


@dataclass(frozen=True)
class HeldoutLoss:
    """One model's mean cross-entropy (nats) per token kind on one dataset."""

    model: str
    dataset: str
    windows: int
    termination_penalty: Optional[float]
    obs: float
    act: float
    rew: float
    val: float

    def as_dict(self) -> dict:
        return asdict(self)


def whole_windows(traj: Trajectories, seq_len: int) -> torch.Tensor:
    """First transition of every window of `seq_len` transitions inside one episode."""
    per_episode = [
        np.arange(start, start + length - seq_len + 1)
        for start, length in zip(traj.episode_starts, traj.episode_lengths)
        if length >= seq_len
    ]
    if not per_episode:
        return torch.zeros(0, dtype=torch.long)
    return torch.from_numpy(np.concatenate(per_episode).astype(np.int64))


@torch.no_grad()
def kind_losses(agent: Agent, traj: Trajectories, seq_len: int, batch: int = 256) -> tuple[list[float], int]:
    """Mean CE per kind of `agent`'s model over the whole windows of `traj`, and their count."""
    starts = whole_windows(traj, seq_len)
    if len(starts) == 0:
        raise DataError(f"no episode of the dataset has {seq_len} transitions (the model's window)")
    tokens = tokenize(traj, agent.discretizer)
    T = traj.transition_dim
    kind = target_kinds(seq_len * T - 1, traj.observation_dim, traj.action_dim)
    ones = torch.ones(4)
    sums, counts = torch.zeros(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    offsets = torch.arange(seq_len)
    agent.model.eval()
    for chunk in starts.split(batch):
        seq = tokens[chunk[:, None] + offsets].reshape(len(chunk), -1)
        logits = agent.model(seq[:, :-1])
        mask = torch.ones(seq.shape[0], seq.shape[1] - 1)
        _, kind_sum, kind_count = weighted_loss(logits, seq[:, 1:], mask, kind, ones)
        sums += kind_sum.double()
        counts += kind_count.double()
    return (sums / counts).tolist(), len(starts)


def heldout_loss(
    model_path: Path, dataset_id: str, termination_penalty: Optional[float] | str = KEEP,
    notify=None,
) -> HeldoutLoss:
    """The model at `model_path` (a run, a checkpoint or a seed-format directory) scored on
    `dataset_id`, its values made with the model's own discount and, unless given, its
    own termination penalty."""
    agent = load_agent(Path(model_path), torch.device("cpu"))
    data_cfg = agent.config.dataset
    penalty = data_cfg.termination_penalty if termination_penalty == KEEP else termination_penalty
    traj = build_trajectories(load_dataset(dataset_id, notify=notify), data_cfg.discount, penalty)
    model_dims = (agent.observation_dim, agent.action_dim)
    if (traj.observation_dim, traj.action_dim) != model_dims:
        raise DataError(
            f"{model_path} models observations/actions of {model_dims[0]}/{model_dims[1]} values; "
            f"dataset '{dataset_id}' has {traj.observation_dim}/{traj.action_dim}"
        )
    losses, windows = kind_losses(agent, traj, data_cfg.seq_len)
    return HeldoutLoss(str(model_path), dataset_id, windows, penalty, *losses)
