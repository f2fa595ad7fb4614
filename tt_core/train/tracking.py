"""Experiment tracking: the run's scalars in TensorBoard and Weights & Biases.

Both are event listeners on rank 0's bus, like metrics.jsonl: training losses per kind,
learning rate and tokens/s at every logged step, each evaluation's mean return and score
(and, in W&B, its per-episode table), and the resolved config as hyperparameters. The
packages are optional extras; a run asked to log to one that is not installed says so
in one line and trains on.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable, Optional

from tt_core.config import Config, WandbConfig, to_dict
from tt_core.events import EvalFinished, Message, TrainFinished, TrainStep

TRAIN_SCALARS = ("loss", "loss_obs", "loss_action", "loss_reward", "loss_value", "lr", "tokens_per_s")
TENSORBOARD_DIR = "tensorboard"
WANDB_INIT_TIMEOUT_S = 30  # online without a network: give up and train on


def _flat(data: dict, prefix: str = "") -> dict[str, Any]:
    """{"train.lr": 6e-4, ...}: hyperparameters as TensorBoard and W&B take them."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def _scalars(event: Any) -> dict[str, Any]:
    """The scalars an event contributes, by their tag."""
    if isinstance(event, TrainStep):
        return {f"train/{k}": float(getattr(event, k)) for k in TRAIN_SCALARS}
    if isinstance(event, EvalFinished):
        s = event.summary
        keys = ("return_mean", "return_std", "score_mean", "score_std", "planning_tokens_per_s")
        return {f"eval/{k}": float(s[k]) for k in keys if s.get(k) is not None}
    return {}


def _step_of(event: Any, last: int) -> int:
    """The training step an event belongs to: its own, else the last one seen."""
    step = getattr(event, "step", None)
    return step if isinstance(event, (TrainStep, EvalFinished)) and isinstance(step, int) else last


class TensorBoardLogger:
    """Writes TensorBoard event files under <run>/tensorboard (torch.utils.tensorboard)."""

    def __init__(self, run_dir: Path, cfg: Config, start_step: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # a resumed run drops what the killed one logged past its checkpoint, as metrics.jsonl does
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR),
                                    purge_step=start_step or None)
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in _flat(to_dict(cfg)).items()))
        self.step = start_step

    def __call__(self, event: Any) -> None:
        self.step = _step_of(event, self.step)
        for tag, value in _scalars(event).items():
            self.writer.add_scalar(tag, value, self.step)
        if isinstance(event, (EvalFinished, TrainFinished)):
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    """Logs the same scalars, the evaluation table and the config to a W&B run."""

    def __init__(self, run_dir: Path, cfg: Config, settings: WandbConfig, start_step: int = 0) -> None:
        import wandb

        self.wandb = wandb
        self.run = wandb.init(
            project=settings.project or cfg.dataset.id.replace("/", "-"), entity=settings.entity,
            mode=settings.mode, name=Path(run_dir).name, dir=str(run_dir), config=_flat(to_dict(cfg)),
            settings=wandb.Settings(silent=True, init_timeout=WANDB_INIT_TIMEOUT_S),
            id=Path(run_dir).name, resume="allow",  # a resumed run continues its W&B run
        )
        self.step = start_step

    def __call__(self, event: Any) -> None:
        self.step = _step_of(event, self.step)
        scalars = _scalars(event)
        if isinstance(event, EvalFinished):
            columns = ["episode", "seed", "return", "length", "status", "score"]
            rows = [[r["env_index"], r["seed"], r["episode_return"], r["length"], r["status"], r["score"]]
                    for r in event.results]
            scalars["eval/episodes"] = self.wandb.Table(columns=columns, data=rows)
        if scalars:
            self.run.log(scalars, step=self.step)

    def close(self) -> None:
        self.run.finish()


def trackers(run_dir: Path, cfg: Config, say: Callable[[Message], None], start_step: int = 0) -> list[Any]:
    """The loggers `cfg.train` asks for that can run here; one line for each that cannot."""
    out: list[Any] = []
    if cfg.train.tensorboard:
        if importlib.util.find_spec("tensorboard") is None:
            say(Message("train.tensorboard: the tensorboard package is not installed "
                        "(pip install 'tt-tui[tensorboard]'); not writing TensorBoard files", "warning"))
        else:
            out.append(TensorBoardLogger(run_dir, cfg, start_step))
    settings: Optional[WandbConfig] = cfg.train.wandb
    if settings is not None and settings.mode != "disabled":
        if importlib.util.find_spec("wandb") is None:
            say(Message("train.wandb: the wandb package is not installed (pip install 'tt-tui[wandb]'); "
                        "not logging to Weights & Biases", "warning"))
        else:
            try:
                out.append(WandbLogger(run_dir, cfg, settings, start_step))
            except Exception as exc:  # no network, no login: the run itself goes on
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                say(Message(f"train.wandb: could not start a W&B run ({first}); not logging to it "
                            "(mode: offline logs locally and syncs later)", "warning"))
    return out
