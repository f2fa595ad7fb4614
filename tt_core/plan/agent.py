"""A trained model ready to plan: loaded from a tt-tui run or a FTT-format directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from tt_core.runs import checkpoint as ckpt
from tt_core.config import Config
from tt_core.data.discretizer import Discretizer
from tt_core.errors import CheckpointError
from tt_core.model.gpt import GPTConfig, TrajectoryGPT
from tt_core.pretrained.ftt.weights import adapt_model
from tt_core.runs.ftt_layout import is_ftt_checkpoint
from tt_core.pretrained.ftt.loader import load_ftt_checkpoint


@dataclass
class Agent:
    model: TrajectoryGPT
    discretizer: Discretizer
    config: Config
    dataset_meta: dict
    source: Path
    step: int

    @property
    def env_id(self) -> str:
        env_id = self.dataset_meta.get("env_id")
        if not env_id:
            raise CheckpointError(f"{self.source}: no environment id recorded for this dataset")
        return env_id

    @property
    def observation_dim(self) -> int:
        return int(self.dataset_meta["observation_dim"])

    @property
    def action_dim(self) -> int:
        return int(self.dataset_meta["action_dim"])


def load_agent(path: Path, device: torch.device, ftt_block: Optional[str] = None) -> Agent:
    """Load weights for inference from a run dir, a checkpoint dir or a FTT-format dir.

    `ftt_block` only matters for FTT-format dirs (None: told from the model file, see
    tt_core/pretrained/ftt/loader.py).
    """
    path = Path(path)
    if is_ftt_checkpoint(path):
        loaded = load_ftt_checkpoint(path, block=ftt_block)
    else:
        loaded = ckpt.load_run(path, with_trainer=False)
    meta = loaded.dataset_meta
    try:
        gpt = GPTConfig.from_config(loaded.config, int(meta["observation_dim"]), int(meta["action_dim"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: dataset.json lacks the model dimensions ({exc})") from None
    bad = ckpt.non_finite_key(loaded.model_state)
    if bad is not None:
        raise CheckpointError(f"{path}: weight '{bad}' holds NaN or inf; plan with an earlier checkpoint")
    model = adapt_model(TrajectoryGPT(gpt), meta)  # FTT weights keep their residual path
    ckpt.load_weights(model, loaded.model_state, path)
    model.to(device).eval()
    return Agent(model, loaded.discretizer, loaded.config, meta, loaded.run.root, loaded.step)
