"""A seed config.yaml as a tt-tui Config, and the Gymnasium env its dataset name plays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from tt_core.config import (
    Config,
    DatasetConfig,
    EvalConfig,
    ModelConfig,
    PlanConfig,
    TrainConfig,
    validate,
)
from tt_core.errors import CheckpointError, ConfigError
from tt_core.mujoco_import import import_glfw_shielded

# Planning defaults of the seed's eval (configs/eval_base.yaml + README for hopper and
# walker2d); a checkpoint's own trainer.eval_* values take precedence.
FTT_PLAN_DEFAULTS = dict(
    beam_width=128, beam_steps=15, beam_context=5, sample_expand=2, k_obs=1, k_act=None,
    k_reward=1, cdf_obs=None, cdf_act=None, temperature=1.0, plan_every=1,
)


# The seed's evaluation (configs/eval_base.yaml num_episodes; --seed 42 in its README).
FTT_EVAL_EPISODES = 25
FTT_EVAL_SEED = 42


@dataclass(frozen=True)
class FttEnv:
    """The Gymnasium environment a seed config's `dataset.env_name` plays, and D4RL's
    reference returns where it names a D4RL dataset (normalized score =
    100 * (R - ref_min) / (ref_max - ref_min)); None for any other env."""

    env_id: str
    observation_dim: int
    action_dim: int
    ref_min_score: Optional[float] = None
    ref_max_score: Optional[float] = None


# D4RL's REF_MIN_SCORE / REF_MAX_SCORE: the same for every dataset of one task.
# Gymnasium's v5 environments keep the v2 observation and action spaces.
_D4RL_TASKS = {
    "halfcheetah": FttEnv("HalfCheetah-v5", 17, 6, -280.178953, 12135.0),
    "hopper": FttEnv("Hopper-v5", 11, 3, -20.272305, 3234.3),
    "walker2d": FttEnv("Walker2d-v5", 17, 6, 1.629008, 4592.3),
}
_D4RL_DATASETS = ("random", "medium", "medium-replay", "medium-expert", "expert", "full-replay")

D4RL_ENVS: dict[str, FttEnv] = {
    f"{task}-{data}-v{v}": env
    for task, env in _D4RL_TASKS.items()
    for data in _D4RL_DATASETS
    for v in (0, 1, 2)
}


def ftt_env(name: str) -> FttEnv:
    """The env of a seed config's `dataset.env_name`: a D4RL dataset name such as
    'hopper-medium-replay-v2' (its Gymnasium v5 env, with D4RL's reference scores), or
    any registered Gymnasium id with Box spaces, e.g. a model the seed's trainer made
    on another env's data (no reference scores: eval scores against nothing)."""
    key = str(name).strip()
    env = D4RL_ENVS.get(key.lower())
    if env is not None:
        return env
    import gymnasium as gym

    try:
        gym.spec(key)
    except gym.error.Error:
        tasks = ", ".join(_D4RL_TASKS)
        raise CheckpointError(
            f"unknown environment {name!r}: neither a D4RL dataset name "
            f"(<task>-<dataset>-v0|v1|v2, task one of {tasks}) nor a registered Gymnasium id"
        ) from None
    import_glfw_shielded()
    try:
        made = gym.make(key)
    except Exception as exc:  # a registered env that cannot start here (missing extra)
        raise CheckpointError(f"environment {key!r} cannot be made here ({exc})") from None
    try:
        obs, act = made.observation_space, made.action_space
    finally:
        made.close()
    if not (isinstance(obs, gym.spaces.Box) and isinstance(act, gym.spaces.Box)):
        raise CheckpointError(f"environment {key!r}: observations and actions must be Box spaces")
    return FttEnv(key, int(np.prod(obs.shape)), int(np.prod(act.shape)))


class Section:
    """Typed access to one section of the seed config with one-line errors."""

    def __init__(self, data: dict, name: str, where: Path, required: bool = True):
        sec = data.get(name)
        if sec is None and not required:
            sec = {}
        if not isinstance(sec, dict):
            raise CheckpointError(f"{where}: no '{name}' section")
        self.sec, self.name, self.where = sec, name, where

    def get(self, key: str, kind: type, default: Any = ..., optional: bool = False) -> Any:
        if key not in self.sec or (self.sec[key] is None and not optional):
            if default is ...:
                raise CheckpointError(f"{self.where}: {self.name}.{key} is missing")
            return default
        value = self.sec[key]
        if value is None:
            return None
        if isinstance(value, str) and "${" in value:
            raise CheckpointError(
                f"{self.where}: {self.name}.{key} is an unresolved interpolation {value!r}"
            )
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if kind is bool:
            ok = isinstance(value, bool)
        if not ok:
            raise CheckpointError(
                f"{self.where}: {self.name}.{key} should be {kind.__name__}, got {value!r}"
            )
        return value


@dataclass(frozen=True)
class FttModelSpec:
    """The seed model's dimensions (config.yaml `model` section)."""

    vocab_size: int
    transition_dim: int
    observation_dim: int
    action_dim: int
    seq_len_tokens: int
    embedding_dim: int
    num_layers: int
    num_heads: int

    @property
    def seq_len(self) -> int:  # in transitions
        return self.seq_len_tokens // self.transition_dim


def model_spec(data: dict, where: Path) -> FttModelSpec:
    m = Section(data, "model", where)
    spec = FttModelSpec(
        vocab_size=m.get("vocab_size", int),
        transition_dim=m.get("transition_dim", int),
        observation_dim=m.get("observation_dim", int),
        action_dim=m.get("action_dim", int),
        seq_len_tokens=m.get("seq_len", int),
        embedding_dim=m.get("embedding_dim", int, 32),  # the seed GPT's defaults
        num_layers=m.get("num_layers", int, 4),
        num_heads=m.get("num_heads", int, 4),
    )
    if not m.get("use_sep_heads", bool, False):
        raise CheckpointError(
            f"{where}: model.use_sep_heads is false; only per-dimension heads "
            "(use_sep_heads: true, as in every seed config) can be imported"
        )
    if spec.transition_dim != spec.observation_dim + spec.action_dim + 2:
        raise CheckpointError(
            f"{where}: model.transition_dim {spec.transition_dim} != observation_dim "
            f"{spec.observation_dim} + action_dim {spec.action_dim} + 2"
        )
    if spec.seq_len < 1:
        raise CheckpointError(
            f"{where}: model.seq_len {spec.seq_len_tokens} is shorter than one transition"
        )
    for key in ("vocab_size", "embedding_dim", "num_layers", "num_heads"):
        if getattr(spec, key) < 1:
            raise CheckpointError(f"{where}: model.{key} must be >= 1")
    return spec


def build_config(data: dict, spec: FttModelSpec, strategy: str, where: Path) -> Config:
    d = Section(data, "dataset", where)
    t = Section(data, "trainer", where, required=False)
    num_bins = d.get("num_bins", int, spec.vocab_size)
    if num_bins != spec.vocab_size:
        raise CheckpointError(
            f"{where}: dataset.num_bins {num_bins} != model.vocab_size {spec.vocab_size}"
        )
    discount = d.get("discount", float, 0.99)
    cfg_strategy = d.get("strategy", str, strategy)
    betas = t.get("betas", list, [0.9, 0.95])
    try:
        train = TrainConfig(
            lr=t.get("lr", float, 6e-4),
            betas=(float(betas[0]), float(betas[1])),
            weight_decay=t.get("weight_decay", float, 0.1),
            grad_clip=t.get("clip_grad", float, 1.0),
            batch_size=d.get("batch_size", int, 256),
            action_weight=t.get("action_weight", float, 5.0),
            reward_weight=t.get("reward_weight", float, 1.0),
            value_weight=t.get("value_weight", float, 1.0),
            schedule="ftt",  # the seed's own rule
        )
    except (IndexError, TypeError, ValueError):
        raise CheckpointError(
            f"{where}: trainer.betas should be two numbers, got {betas!r}"
        ) from None
    cfg = Config(
        dataset=DatasetConfig(
            id=d.get("env_name", str),
            discount=discount,
            num_bins=num_bins,
            strategy=cfg_strategy if cfg_strategy in ("uniform", "quantile") else "uniform",
            seq_len=spec.seq_len,
            termination_penalty=None,  # the seed adds none
        ),
        model=ModelConfig(
            embedding_dim=spec.embedding_dim, n_layers=spec.num_layers, n_heads=spec.num_heads,
            dropout=0.1,  # the seed GPT's default; inactive when planning
            stop_token=False,  # the seed's vocabulary is exactly N bins per dimension
        ),
        train=train,
        plan=_plan_config(t, discount),
        # the seed's scripts/eval.py with configs/eval_base.yaml: 25 episodes, seed 42
        eval=EvalConfig(episodes=FTT_EVAL_EPISODES,
                        seed=t.get("eval_seed", int, FTT_EVAL_SEED)),
    )
    try:
        validate(cfg, {})
    except ConfigError as exc:
        raise CheckpointError(f"{where}: cannot be used as a tt-tui config: {exc}") from None
    return cfg


def _plan_config(t: Section, discount: float) -> PlanConfig:
    """The seed's planning settings: its trainer.eval_* keys over FTT_PLAN_DEFAULTS."""
    plan = {}
    for key, default in FTT_PLAN_DEFAULTS.items():
        kind = float if isinstance(default, float) else int
        if key.startswith("cdf"):
            plan[key] = None  # the seed samples with top-k only
        elif key == "temperature":
            plan[key] = t.get("eval_temperature", float, default)
        else:
            plan[key] = t.get(f"eval_{key}", kind, default, optional=key.startswith("k_"))
    plan["discount"] = t.get("eval_discount", float, discount)
    return PlanConfig(**plan)
