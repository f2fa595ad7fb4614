"""Typed run configuration: YAML files + dotted command-line overrides.

A config is five sections (dataset, model, train, plan, eval). Every value a user
can set lives here, with its default, so the hyperparameters are in one place.
Errors a user can cause raise `ConfigError`, whose message is one line naming the
key and where the bad value came from (a file or a command-line override).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import yaml

from tt_core.errors import ConfigError
from tt_core.files import SMALL_CAP, RunFileError, read_bytes


@dataclass
class CollectConfig:
    """How to build the dataset locally when it is missing (offline quickstart)."""

    env_id: str = "Hopper-v5"
    policy: str = "random"  # or the path of a Stable-Baselines3 policy zip
    steps: int = 20_000
    seed: int = 0
    deterministic: bool = False  # an SB3 policy's mean action instead of a sample from it


@dataclass
class DatasetConfig:
    id: str = "mujoco/walker2d/medium-v0"
    discount: float = 0.99
    num_bins: int = 100
    strategy: Literal["uniform", "quantile"] = "uniform"
    seq_len: int = 10  # context window, in transitions
    # Replaces the reward of a terminal transition: the original TT's default -100
    # (config/offline.py); null = off (the seed project's).
    termination_penalty: Optional[float] = -100.0
    # When set and the dataset is missing locally, it is collected with this recipe.
    collect: Optional[CollectConfig] = None


@dataclass
class ModelConfig:
    embedding_dim: int = 128
    n_layers: int = 4
    n_heads: int = 4
    dropout: float = 0.1
    # The original TT's stop token: one more output per dimension, trained on every
    # position after an episode's end. false: runs made before it and FTT imports.
    stop_token: bool = True
    # Initial weights (tt_core/model/gpt.py): "original" = the original TT's GPT (N(0, 0.02)
    # attention projections, zero positions); "ftt" = the seed project's (PyTorch's
    # MultiheadAttention init: xavier-uniform in-projection; positions N(0, 0.02)).
    init: Literal["original", "ftt"] = "ftt"


@dataclass
class WandbConfig:
    """Weights & Biases logging (the `wandb` package, an optional extra)."""

    project: Optional[str] = None  # None: the dataset id, slashes as dashes
    entity: Optional[str] = None
    mode: Literal["online", "offline", "disabled"] = "online"


@dataclass
class TrainConfig:
    lr: float = 6e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    batch_size: int = 256
    # None = 50 x 1M / training windows (both sources' rule), at least 1.
    epochs: Optional[int] = None
    # Hard cap on optimizer steps; it only stops training (the schedule is the epochs').
    max_steps: Optional[int] = None
    # The learning-rate schedule (tt_core/train/schedule.py): "original" = the original TT's
    # (warmup one epoch of tokens, cosine to 20 epochs, counted in non-stop targets, floor 10 %);
    # "ftt" = the seed project's (warmup one epoch, cosine over the whole run).
    schedule: Literal["original", "ftt"] = "original"
    # None = one epoch of tokens, as each schedule counts them.
    warmup_tokens: Optional[int] = None
    action_weight: float = 5.0
    reward_weight: float = 1.0
    value_weight: float = 1.0
    seed: int = 42
    device: str = "auto"
    out_dir: str = "runs"
    # Runs of one experiment (e.g. the seeds of `tt-tui train --seeds`): `tt-tui report
    # GROUP` and `tt-tui runs --group` find them together; their directories are named
    # <group>-seed<seed>.
    group: Optional[str] = None
    checkpoint_every: int = 1000  # optimizer steps between checkpoints
    log_every: int = 10
    # Evaluate (plan eval.episodes episodes) every N steps and at the end; None = never.
    eval_every: Optional[int] = None
    # Mixed precision: auto = bf16 autocast on CUDA, fp32 elsewhere; bf16 = autocast on
    # any device (worth it on CPUs with bf16 matrix units, AMX-BF16); fp32 = none.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # torch.compile the network for training (the first steps compile: a slower start).
    compile: bool = False
    # TensorBoard event files in the run directory (the `tensorboard` package, an extra).
    tensorboard: bool = False
    # Weights & Biases: null = off; a section (project, entity, mode) = on.
    wandb: Optional[WandbConfig] = None


@dataclass
class PlanConfig:
    beam_width: int = 128
    beam_steps: int = 15
    beam_context: int = 5
    sample_expand: int = 2
    k_obs: Optional[int] = 1
    k_act: Optional[int] = None
    k_reward: Optional[int] = 1  # reward and value tokens greedy, as beam_plan(k_rew=1)
    cdf_obs: Optional[float] = None
    cdf_act: Optional[float] = 0.6
    temperature: float = 1.0
    discount: float = 0.99
    # What a stop token's probability counts for in E[r] and E[V] (models with a stop
    # token): "renormalize" the expectation given no end (the default, measured in
    # docs/learning-check.md), "zero" the original's value_expectation (an ended episode
    # earns 0 more), "lowest" an end scored as the dimension's lowest bin.
    stop_mass: Literal["zero", "renormalize", "lowest"] = "renormalize"
    # What beam search ranks candidates by: "reward", the discounted expected rewards plus
    # the terminal value (the paper's offline RL planner, the original's beam_plan), or
    # "likelihood", the log-probability of every token the plan sampled (observations,
    # actions, rewards, values; the paper's imitation planner, the original's beam_search).
    objective: Literal["reward", "likelihood"] = "reward"
    plan_every: int = 1
    # fp32 equals the naive planner up to float reassociation; bf16 runs the network in
    # bfloat16 (the KV cache too on GPUs; scores stay fp32): faster on GPUs and CPUs with
    # AMX/AVX512-BF16; auto picks bf16 where the device has bf16 units, else fp32.
    dtype: Literal["fp32", "bf16", "auto"] = "fp32"
    # CUDA graphs for the one-token decodes (CUDA only; a failure falls back to eager).
    cuda_graphs: bool = True


@dataclass
class EvalConfig:
    episodes: int = 10
    max_steps: int = 1000
    seed: int = 0
    vector: Literal["sync", "async"] = "sync"


@dataclass
class DeviceConfig:
    # CPU compute threads of each process: null = the usable cores (affinity, cgroup limit)
    # divided among the tt-tui processes started together (--seeds --parallel, --nproc),
    # and one while the machine is oversubscribed (tt_core/threads.py); a count fixes it.
    threads: Optional[int] = None


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)


@dataclass(frozen=True)
class Range:
    """The values a numeric key may take: lo..hi, each end open or closed."""

    lo: float
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value: Any) -> bool:
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def __str__(self) -> str:
        lo = _bound(self.lo)
        if self.hi == math.inf:
            return f"{'>' if self.lo_open else '>='} {lo}"
        return f"in {'(' if self.lo_open else '['}{lo}, {_bound(self.hi)}{')' if self.hi_open else ']'}"


def _bound(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class Check:
    """A rule that is not a plain range: `ok(value)`, else the value must be `what`."""

    ok: Callable[[Any], bool]
    what: str

    def __contains__(self, value: Any) -> bool:
        return self.ok(value)

    def __str__(self) -> str:
        return self.what


AT_LEAST_1 = Range(1)
POSITIVE = Range(0, lo_open=True)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1, lo_open=True)  # (0, 1]: discounts and probability masses
SEED = Range(0, 2**32 - 1)  # what numpy's seeding takes

# What each key may hold, beyond its type: the one place the bounds live (the config
# file, command-line flags, live edits in the app and its edit panel all read them).
# The upper bounds are far beyond any useful value (the original plans 15 steps ahead
# with a context of 5; papers evaluate tens of episodes): they catch typos such as
# 100000000 before a plan starts, and numbers too large for numpy or torch.
LIMITS: dict[str, Range | Check] = {
    "dataset.discount": FRACTION,
    "dataset.num_bins": Range(2),
    "dataset.seq_len": Check(lambda v: v >= 1, ">= 1 transition"),
    "dataset.collect.steps": Range(1, 10**9),
    "dataset.collect.seed": SEED,
    "dataset.collect.policy": Check(lambda v: v == "random" or v.endswith(".zip"),
                                    "'random' or the path of a Stable-Baselines3 policy .zip"),
    "dataset.id": Check(lambda v: 0 < len(v) and all(0 < len(part.encode()) <= 200 for part in v.split("/")),
                        "non-empty, each /-separated part at most 200 bytes (it names directories)"),
    "train.seed": SEED,
    "eval.seed": SEED,
    "model.embedding_dim": AT_LEAST_1,
    "model.n_layers": AT_LEAST_1,
    "model.n_heads": AT_LEAST_1,
    "model.dropout": Range(0, 1, hi_open=True),
    "train.lr": POSITIVE,
    "train.betas": Check(lambda v: all(0.0 <= b < 1.0 for b in v), "two numbers in [0, 1)"),
    "train.weight_decay": NON_NEGATIVE,
    "train.grad_clip": POSITIVE,
    "train.batch_size": AT_LEAST_1,
    "train.epochs": AT_LEAST_1,
    "train.max_steps": AT_LEAST_1,
    "train.warmup_tokens": NON_NEGATIVE,
    "train.action_weight": NON_NEGATIVE,
    "train.reward_weight": NON_NEGATIVE,
    "train.value_weight": NON_NEGATIVE,
    "train.device": Check(lambda v: v.split(":")[0] in ("auto", "cpu", "cuda", "mps"),
                          "one of auto, cpu, cuda, cuda:N, mps"),
    "train.group": Check(lambda v: 0 < len(v) <= 100 and all(c.isalnum() or c in "._-" for c in v)
                         and v[0] not in ".-", "1-100 letters, digits, '.', '_' or '-', not starting with '.' or '-'"),
    "train.checkpoint_every": AT_LEAST_1,
    "train.log_every": AT_LEAST_1,
    "train.eval_every": AT_LEAST_1,
    "plan.beam_width": Range(1, 4096),
    "plan.beam_steps": Range(1, 1000),
    "plan.beam_context": Range(1, 1000),
    "plan.sample_expand": Range(1, 256),
    "plan.k_obs": AT_LEAST_1,
    "plan.k_act": AT_LEAST_1,
    "plan.k_reward": AT_LEAST_1,
    "plan.cdf_obs": FRACTION,
    "plan.cdf_act": FRACTION,
    "plan.temperature": POSITIVE,
    "plan.discount": FRACTION,
    "plan.plan_every": AT_LEAST_1,
    "eval.episodes": Range(1, 100_000),
    "eval.max_steps": Range(1, 10**8),
    "device.threads": Range(1, 1024),
}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp: Any, key: str, where: Callable[[str], str]) -> Any:
    """Check `value` against the annotation `tp`; return it in canonical form.

    `where(key)` names the place (file or override) that set `key`.
    """
    source = where(key)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key, where)
    if origin is Literal:
        if value not in args:
            choices = ", ".join(map(str, args))
            raise ConfigError(f"{key}: {value!r} is not one of {choices} (from {source})")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(
                f"{key}: expected a list of {len(args)} numbers, got {value!r} (from {source})"
            )
        return tuple(_coerce(v, a, key, where) for v, a in zip(value, args))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r} (from {source})")
        return _build(tp, value, key, where)
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads "3e-4" (no dot) as a string; accept numeric text.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r} (from {source})")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r} (from {source})")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r} (from {source})")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r} (from {source})")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r} (from {source})")
        return value
    raise TypeError(f"unsupported config annotation {_type_name(tp)} for {key}")


@functools.cache
def _fields_of(cls: type) -> tuple[dict[str, Any], frozenset[str]]:
    """(type hints, field names) of a config dataclass: evaluated once (the annotations are
    strings; evaluating them per record made reading a folder of runs slow)."""
    return typing.get_type_hints(cls), frozenset(f.name for f in dataclasses.fields(cls))


def _build(cls: type, data: dict, prefix: str, where: Callable[[str], str]) -> Any:
    """Build dataclass `cls` from `data`, refusing unknown keys."""
    hints, names = _fields_of(cls)
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"unknown key '{key}' (from {where(key)}); known keys here: {known}")
        kwargs[name] = _coerce(value, hints[name], key, where)
    return cls(**kwargs)


def _get(cfg: Config, dotted: str) -> Any:
    obj: Any = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
        if obj is None:
            return None
    return obj


def check_limit(key: str, value: Any, source: str | None) -> None:
    """Refuse `value` for dotted `key` when LIMITS says it cannot hold it (None: unset)."""
    limit = LIMITS.get(key)
    if value is not None and limit is not None and value not in limit:
        where = f" (from {source})" if source else ""
        raise ConfigError(f"{key}: {value!r} must be {limit}{where}")


def checked_value(key: str, value: Any, source: str) -> Any:
    """`value` for dotted `key` (a flag's, say) coerced to the key's type and checked
    against LIMITS, as a config file's would be: a bad one raises ConfigError naming `source`."""
    cls: Any = Config
    *sections, name = key.split(".")
    for part in sections:
        cls = typing.get_type_hints(cls).get(part)
        if not dataclasses.is_dataclass(cls):
            raise ConfigError(f"unknown key '{key}' (from {source})")
    hints = typing.get_type_hints(cls)
    if name not in hints:
        raise ConfigError(f"unknown key '{key}' (from {source})")
    typed = _coerce(value, hints[name], key, lambda _: source)
    check_limit(key, typed, source)
    return typed


def validate(cfg: Config, sources: dict[str, str]) -> None:
    """Apply the range checks; `sources` maps dotted keys to where they were set."""
    for key in LIMITS:
        check_limit(key, _get(cfg, key), _source_of(key, sources))
    if cfg.model.embedding_dim % cfg.model.n_heads:
        src = _source_of("model.n_heads", sources)
        raise ConfigError(
            f"model.n_heads: {cfg.model.n_heads} must divide model.embedding_dim "
            f"{cfg.model.embedding_dim} (from {src})"
        )


def apply_plan_update(current: PlanConfig, update: dict[str, Any]) -> PlanConfig:
    """A live edit of the planning parameters, checked like the config file would be."""
    new = _build(PlanConfig, {**to_dict(current), **update}, "plan", lambda key: "live edit")
    for name in update:
        check_limit(f"plan.{name}", getattr(new, name), None)
    return new


def plan_from_record(data: dict) -> PlanConfig:
    """The PlanConfig a metrics record holds; keys it predates take the value such runs
    planned with (LEGACY_RUN_VALUES) or today's default, and keys since dropped are
    ignored (a run written by any version reads back)."""
    names = {f.name for f in dataclasses.fields(PlanConfig)}
    legacy = {key: value for (section, key), value in LEGACY_RUN_VALUES.items() if section == "plan"}
    return _build(PlanConfig, {**legacy, **{k: v for k, v in data.items() if k in names}}, "plan",
                  lambda key: "metrics.jsonl")


@dataclass(frozen=True)
class PlanningPatch:
    """Planning settings given for one eval or record (command-line flags), typed and
    checked where they are given; `apply` lays them over a run's own config once the
    run is loaded. `values` maps dotted keys (plan.*, eval.* and device.* only) to typed values;
    `sources` says where each was set, for error lines."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    @classmethod
    def checked(cls, given: dict[str, Any], sources: dict[str, str] | None = None) -> "PlanningPatch":
        """The patch of `given` (dotted key -> value), each value checked against its
        field's type and LIMITS: a bad one raises ConfigError naming its source."""
        sources = dict(sources or {})
        values = {}
        for key, value in given.items():
            source = sources.get(key, "command line")
            section, _, name = key.partition(".")
            cls_ = {"plan": PlanConfig, "eval": EvalConfig, "device": DeviceConfig}.get(section)
            if cls_ is None or name not in typing.get_type_hints(cls_):
                raise ConfigError(f"unknown planning key '{key}' (from {source})")
            values[key] = checked_value(key, value, source)
        return cls(values, sources)

    def apply(self, cfg: Config) -> Config:
        """`cfg` with these settings in place of its own (a new Config; `cfg` is kept)."""
        sections = {}
        for section in ("plan", "eval", "device"):
            changes = {k.split(".", 1)[1]: v for k, v in self.values.items() if k.startswith(section + ".")}
            sections[section] = dataclasses.replace(getattr(cfg, section), **changes)
        return dataclasses.replace(cfg, **sections)


def _source_of(key: str, sources: dict[str, str]) -> str:
    # The most specific place that set the key or one of its parents.
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        k = ".".join(parts[:n])
        if k in sources:
            return sources[k]
    return "defaults"


def _merge(base: dict, update: dict, prefix: str, sources: dict[str, str], source: str) -> None:
    for name, value in update.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if isinstance(value, dict) and isinstance(base.get(name), dict):
            _merge(base[name], value, key, sources, source)
        else:
            base[name] = value
            sources[key] = source


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    dotted, raw = text.split("=", 1)
    dotted = dotted.strip()
    if not dotted or any(not p for p in dotted.split(".")):
        raise ConfigError(f"override {text!r} must look like section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML: keep the literal text, type checks will judge it
    return dotted.split("."), value


class DuplicateKey(yaml.YAMLError):
    """A mapping names the same key twice (YAML keeps the last silently)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        self.flatten_mapping(node)  # merge keys (<<: *anchor) first, as SafeLoader does
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                break
            if repeated:
                raise DuplicateKey(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(text: str):
    """yaml.safe_load that refuses a key given twice in one mapping."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def _not_too_deep(fn: Callable) -> Callable:
    """A config or override nested thousands of levels deep is one ConfigError, not
    Python's RecursionError from the YAML parser or the merge."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RecursionError:
            raise ConfigError("config or override nested too deeply (a config is a few sections of keys)") from None

    return wrapper


@_not_too_deep
def load_config(
    path: str | Path | None, overrides: list[str] | tuple[str, ...] = (), saved_run: bool = False
) -> Config:
    """Load a YAML config (or the defaults when `path` is None) and apply overrides.
    `saved_run`: the file is a run directory's config.yaml (keys it predates are filled
    with the values that run had, `LEGACY_RUN_VALUES`)."""
    data: dict = {}
    sources: dict[str, str] = {}
    if path is not None:
        p = Path(path)
        try:
            text = read_bytes(p, SMALL_CAP).decode("utf-8")  # a device or a runaway file is refused
        except RunFileError as exc:
            raise ConfigError(str(exc)) from None
        except OSError as exc:
            raise ConfigError(f"cannot read config {p}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start}); a config is a YAML file") from None
        try:
            loaded = load_yaml(text)
        except DuplicateKey as exc:
            raise ConfigError(f"{p} {exc}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{p}{where}: not valid YAML") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections")
        if saved_run:
            fill_legacy_keys(loaded)
        _merge(data, loaded, "", sources, str(p))
    _merge_overrides(data, overrides, sources)
    cfg = _build(Config, data, "", lambda key: _source_of(key, sources))
    validate(cfg, sources)
    return cfg


def _merge_overrides(data: dict, overrides: list[str] | tuple[str, ...], sources: dict[str, str]) -> None:
    for text in overrides:
        parts, value = _parse_override(text)
        update: Any = value
        for part in reversed(parts):
            update = {part: update}
        _merge(data, update, "", sources, f"command line '{text}'")


@_not_too_deep
def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """`cfg` with dotted overrides applied and checked (e.g. eval flags on a saved run)."""
    data = to_dict(cfg)
    sources: dict[str, str] = {}
    _merge_overrides(data, overrides, sources)
    new = _build(Config, data, "", lambda key: _source_of(key, sources))
    validate(new, sources)
    return new


def to_dict(cfg: Any) -> dict:
    """Plain-data form (tuples as lists) for YAML / JSON."""
    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v
    return plain(cfg)


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


# Keys added after runs were first saved, with the value a run saved without them had:
# no stop output, and a schedule that decays over the whole run (the seed's rule).
LEGACY_RUN_VALUES = {("model", "stop_token"): False, ("train", "schedule"): "ftt",
                     ("dataset", "termination_penalty"): None, ("plan", "stop_mass"): "zero"}


def fill_legacy_keys(data: dict) -> dict:
    """A saved run config (plain data) with the keys it predates filled in."""
    for (section, key), value in LEGACY_RUN_VALUES.items():
        part = data.get(section)
        if isinstance(part, dict) and key not in part:
            part[key] = value
        elif part is None:
            data[section] = {key: value}
    return data


def config_from_dict(data: dict, source: str) -> Config:
    """Rebuild a Config from plain data (a run directory's config.yaml)."""
    cfg = _build(Config, fill_legacy_keys(data), "", lambda key: source)
    validate(cfg, {k: source for k in data})
    return cfg
