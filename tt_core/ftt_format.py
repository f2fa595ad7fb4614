"""Import checkpoints of the seed project, faster-trajectory-transformer (Howuhh).

A seed checkpoint is a directory such as `pretrained/hopper/` holding

    config.yaml       OmegaConf dump: dataset / model / trainer sections (resolved)
    discretizer.pt    torch.save of a `trajectory.utils.discretization.KBinsDiscretizer`
    model_last.pt     torch.save(model.state_dict()) (or model_<epoch>.pt)

`load_ftt_checkpoint` turns it into the `LoadedRun` a tt-tui run directory gives, so
eval and planning need not know where the weights came from. What it maps, and why:

- Network: the seed's GPT is ours with other names. nn.MultiheadAttention's fused
  `in_proj_weight` [3E, E] is q, k, v stacked, the layout of our `c_attn`; heads are
  contiguous E/H slices in both. `out_proj` -> `c_proj`, `norm1/norm2` -> `ln1/ln2`,
  `norm` -> `ln_f`, the bias-free EinLinear head [T, N, E] -> `head`. MLP (GELU) and
  LayerNorm eps are the same. The seed's vocabulary is exactly N bins per dimension:
  its embedding has T*N rows (ours one spare row more, appended as zeros, never read)
  and its learned positions are [1, T*seq_len, E]; ours are [T*seq_len - 1, E] (the
  last token of a window is only ever a target), so the final row is dropped.
- Attention mask: the seed stores a boolean `attn_mask` buffer per block where True
  means *masked* (nn.MultiheadAttention's convention), causal plus every value column.
  It is checked to be exactly the negation of ours.
- Residual path (two eras): before upstream's fix (commit 213e58d) the blocks computed
  `h = norm1(x); h = h + attn(h); h + mlp(norm2(h))` -- the residual carries the
  *normalized* stream (upstream issue #3); after it, the ordinary pre-norm block
  `x + attn(norm1(x))`, and the pretrained models were retrained. The weights of the
  two eras have the same names and shapes, so the era is told from the git blob id of
  model_last.pt (`PUBLISHED_MODELS`, pinned in pretrained/*/manifest.json); a file that is not
  one of the published ones gets pre-norm, upstream's current code, unless
  `load_ftt_checkpoint(block=...)` says otherwise. The choice is recorded as
  `dataset_meta["ftt_block"]` (and why, as `dataset_meta["ftt_block_note"]`), and
  `adapt_model` turns a TrajectoryGPT's blocks into the matching kind.
- Discretizer: read with a restricted unpickler that can build only the seed's
  discretizer (as an inert state holder), numpy arrays and tensors; anything else is
  refused before it is called. The seed encodes with
  `digitize(x + 1e-8 + 1e-5*|x|, edges[1:])` clipped to N-1; since that shift is
  strictly increasing, moving each edge e to the x where the shifted x reaches e gives
  boundaries for which our plain `searchsorted` returns the same bins. Decoding and
  expectations use the seed's own bin centers (midpoints of its unshifted edges).
"""

from __future__ import annotations

import _compat_pickle
import collections
import math
import pickle
import reprlib
import zipfile
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from tt_core.checkpoint import LoadedRun, RunFiles, read_yaml_mapping
from tt_core.config import (
    Config,
    DatasetConfig,
    EvalConfig,
    ModelConfig,
    PlanConfig,
    TrainConfig,
    validate,
)
from tt_core.data.discretizer import Discretizer
from tt_core.errors import CheckpointError, ConfigError
from tt_core.model import Block, GPTConfig, TrajectoryGPT, attention_mask
from tt_core.pretrained import git_blob_id, published_models

CONFIG_FILE = "config.yaml"
DISCRETIZER_FILE = "discretizer.pt"
MODEL_FILE = "model_last.pt"

# dataset_meta["ftt_block"]: which residual path the seed weights were trained with;
# dataset_meta["ftt_block_note"]: one line saying how it was chosen.
FTT_BLOCK_KEY = "ftt_block"
FTT_BLOCK_NOTE_KEY = "ftt_block_note"
NORM_RESIDUAL = "norm-residual"  # the seed's block before its fix (upstream issue #3)
PRE_NORM = "pre-norm"  # upstream after its fix (commit 213e58d), and tt-tui's own block
BLOCK_KINDS = (NORM_RESIDUAL, PRE_NORM)

# Git blob id -> (model, block kind) of upstream's published pretrained/<env>/model_last.pt
# files, both eras: read from the manifests in this repository's pretrained/ folder.
PUBLISHED_MODELS: dict[str, tuple[str, str]] = published_models()

# The seed's KBinsDiscretizer.encode: x + atol + rtol * |x| is binned.
FTT_ENCODE_ATOL = 1.0e-8
FTT_ENCODE_RTOL = 1.0e-5

# Planning defaults of the seed's eval (configs/eval_base.yaml + README for hopper and
# walker2d); a checkpoint's own trainer.eval_* values take precedence.
FTT_PLAN_DEFAULTS = dict(
    beam_width=128, beam_steps=15, beam_context=5, sample_expand=2, k_obs=1, k_act=None,
    k_reward=1, cdf_obs=None, cdf_act=None, temperature=1.0, plan_every=1,
)


# The seed's evaluation (configs/eval_base.yaml num_episodes; --seed 42 in its README).
FTT_EVAL_EPISODES = 25
FTT_EVAL_SEED = 42


# ----------------------------------------------------------------- environments


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


# ----------------------------------------------------------------- detection


def _model_file(path: Path) -> Optional[Path]:
    """model_last.pt, else the model_<epoch>.pt with the highest epoch."""
    last = path / MODEL_FILE
    if last.is_file():
        return last
    epochs = []
    for p in path.glob("model_*.pt"):
        m = re.fullmatch(r"model_(\d+)\.pt", p.name)
        if m and p.is_file():
            epochs.append((int(m.group(1)), p))
    return max(epochs)[1] if epochs else None


def is_ftt_checkpoint(path: Path) -> bool:
    """True for a directory laid out like the seed's `pretrained/<env>` (cheap; never raises)."""
    try:
        path = Path(path)
        return (
            path.is_dir()
            and (path / CONFIG_FILE).is_file()
            and (path / DISCRETIZER_FILE).is_file()
            and _model_file(path) is not None
        )
    except OSError:
        return False


def detect_block(model_path: Path) -> tuple[str, str]:
    """(block kind, one line saying why) for a seed model file, from its git blob id."""
    blob = git_blob_id(model_path)
    known = PUBLISHED_MODELS.get(blob)
    if known is not None:
        env, kind = known
        era = "before" if kind == NORM_RESIDUAL else "after"
        return kind, (
            f"{model_path.name} is upstream's published {env} model from {era} its block fix "
            f"(blob {blob[:7]}): planning with the {kind} block"
        )
    if not PUBLISHED_MODELS:  # an install without this clone's pretrained/ manifests
        return PRE_NORM, (
            f"cannot tell the era of {model_path.name} (blob {blob[:7]}): the pretrained/ "
            f"manifests are not installed; planning with the {PRE_NORM} block; pass --ftt-block "
            f"{NORM_RESIDUAL} for a model trained before upstream's fix"
        )
    return PRE_NORM, (
        f"{model_path.name} is not one of upstream's published files (blob {blob[:7]}): planning "
        f"with the {PRE_NORM} block of its current code; pass --ftt-block {NORM_RESIDUAL} for "
        "a model trained before its fix"
    )


# ------------------------------------------------------ restricted unpickling


class FttKBinsState:
    """Inert stand-in for the seed's KBinsDiscretizer: unpickling fills __dict__ only."""


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Pickle protocol 2 (torch.save's) stores bytes as _codecs.encode(text, "latin1").
    if not isinstance(obj, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError("refused _codecs.encode other than str -> latin1 bytes")
    return obj.encode("latin1", errors)


# numpy dtypes a discretizer file may hold: plain numbers only. Anything else (object,
# structured, void, subarray dtypes) could make numpy read raw bytes as pointers.
_SAFE_DTYPE_KINDS = "biuf"


def _describe(obj: Any) -> str:
    """A short one-line description of an object from a file (messages stay one line)."""
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return f"{type(obj).__name__} {tuple(obj.shape)} {obj.dtype}"
    short = reprlib.Repr()
    short.maxstring = short.maxother = 40
    return " ".join(short.repr(obj).split())


def _safe_dtype(dtype: Any) -> np.dtype:
    """`dtype` if it is a plain numeric numpy dtype, else refused."""
    if not (
        isinstance(dtype, np.dtype)
        and dtype.kind in _SAFE_DTYPE_KINDS
        and dtype.fields is None
        and dtype.subdtype is None
        and not dtype.hasobject
        and dtype == np.dtype(dtype.str)  # nothing but its type code describes it
    ):
        raise _Refused(f"numpy dtype {_describe(dtype)} (only plain numeric dtypes are accepted)")
    return dtype


def _make_dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    """numpy.dtype(spec, ...) for a numeric type code only, e.g. 'f8' or '<f4'."""
    if not isinstance(spec, str) or len(spec) > 4:
        raise _Refused(f"numpy dtype {_describe(spec)}")
    try:
        dtype = np.dtype(spec)
    except TypeError:
        raise _Refused(f"numpy dtype {_describe(spec)}") from None
    return _safe_dtype(dtype)


class _NdarrayType:
    """What the global numpy.ndarray resolves to: only `_reconstruct` accepts it."""


def _make_reconstruct(reconstruct):
    def make(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        # numpy pickles an array as _reconstruct(ndarray, (0,), b'b') + BUILD(state)
        if subtype is not _NdarrayType or shape != (0,) or dtype not in (b"b", "b"):
            raise _Refused("numpy _reconstruct with arguments numpy never pickles")
        return reconstruct(np.ndarray, (0,), b"b")

    return make


def _make_scalar(scalar):
    def make(dtype: Any, data: Any = None) -> Any:
        dtype = _safe_dtype(dtype)
        if not isinstance(data, bytes) or len(data) != dtype.itemsize:
            raise _Refused(f"numpy scalar of {dtype} from {type(data).__name__}")
        return scalar(dtype, data)

    return make


def _allowed_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray  # numpy >= 2; files of numpy 1 name numpy.core
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray

    allowed: dict[tuple[str, str], Any] = {
        ("trajectory.utils.discretization", "KBinsDiscretizer"): FttKBinsState,
        ("numpy", "ndarray"): _NdarrayType,
        ("numpy", "dtype"): _make_dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_plain_tensor,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = _make_reconstruct(multiarray._reconstruct)
        allowed[(mod, "scalar")] = _make_scalar(multiarray.scalar)
    # numpy >= 1.25 may pickle a dtype through its class, e.g. numpy.dtypes.Float64DType.
    for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType"):
        cls = getattr(getattr(np, "dtypes", None), name, None)
        if cls is not None:
            allowed[("numpy.dtypes", name)] = lambda *args, _cls=cls: _safe_dtype(_cls(*args))
    return allowed


def _rebuild_plain_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    """torch's _rebuild_tensor_v2 for a plain tensor only: no grad, hooks or metadata."""
    if requires_grad or hooks or metadata is not None:
        raise _Refused("a tensor with autograd state, hooks or metadata")
    return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, collections.OrderedDict())


class _Refused(Exception):
    """Content outside what a discretizer file holds; carries a short description."""


class _RestrictedUnpickler(pickle._Unpickler):
    """Resolves only allow-listed globals, and lets BUILD (the opcode that sets an
    object's state) touch only what numpy and the seed's discretizer need, checked
    first. Everything else is refused, never imported or called.

    The pure-Python unpickler is used because BUILD must be intercepted: numpy's own
    `__setstate__` would accept a dtype with object fields and an array over raw bytes,
    which numpy then reads as pointers (a crash, or worse). Discretizer files are small.
    """

    _allowed: Optional[dict] = None
    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        if _RestrictedUnpickler._allowed is None:
            _RestrictedUnpickler._allowed = _allowed_globals()
        # Protocol-2 pickles (torch.save's) may carry Python 2 names, e.g. __builtin__.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        try:
            target = _RestrictedUnpickler._allowed[(module, name)]
        except (KeyError, TypeError):
            raise _Refused(f"{module}.{name}") from None
        if target is FttKBinsState:  # a fresh stand-in class per file
            return type("KBinsDiscretizer", (FttKBinsState,), {})
        return target

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, FttKBinsState) and isinstance(state, dict):
            inst.__dict__.update({str(k): v for k, v in state.items()})
        elif isinstance(inst, np.dtype):
            # A dtype's state may only restate what its type code already says.
            if state != inst.__reduce__()[2]:
                raise _Refused(f"numpy dtype state {_describe(state)}")
        elif isinstance(inst, np.ndarray) and inst.shape == (0,) and inst.base is None:
            _check_array_state(state)
            inst.__setstate__(state)
        else:
            raise _Refused(f"setting the state of {type(inst).__name__}")

    dispatch[pickle.BUILD[0]] = load_build

    def _container(self, depth: int, kinds: tuple) -> None:
        """SETITEM(S)/APPEND(S)/ADDITEMS may only fill plain containers (not, say, the
        bytes an array was built over)."""
        target = self.stack[depth] if depth < 0 else self.metastack[-1][-1]
        if type(target) not in kinds:
            raise _Refused(f"adding items to {type(target).__name__}")

    def load_setitem(self) -> None:
        self._container(-3, (dict, collections.OrderedDict))
        super().load_setitem()

    def load_setitems(self) -> None:
        self._container(0, (dict, collections.OrderedDict))
        super().load_setitems()

    def load_append(self) -> None:
        self._container(-2, (list,))
        super().load_append()

    def load_appends(self) -> None:
        self._container(0, (list,))
        super().load_appends()

    def load_additems(self) -> None:
        self._container(0, (set,))
        super().load_additems()

    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.APPEND[0]] = load_append
    dispatch[pickle.APPENDS[0]] = load_appends
    dispatch[pickle.ADDITEMS[0]] = load_additems


def _check_array_state(state: Any) -> None:
    """numpy's ndarray state (version, shape, dtype, fortran, raw bytes), checked."""
    if not (isinstance(state, tuple) and len(state) == 5):
        raise _Refused("numpy array state")
    _version, shape, dtype, _fortran, data = state
    dtype = _safe_dtype(dtype)
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise _Refused(f"numpy array shape {_describe(shape)}")
    if not isinstance(data, bytes) or len(data) != math.prod(shape) * dtype.itemsize:
        raise _Refused("numpy array data that does not match its shape")


def _restricted_load(file, **kwargs) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


# What torch.load(pickle_module=...) needs: an Unpickler class and a load function.
_restricted_pickle = types.ModuleType("tt_core_ftt_restricted_pickle")
_restricted_pickle.Unpickler = _RestrictedUnpickler  # type: ignore[attr-defined]
_restricted_pickle.load = _restricted_load  # type: ignore[attr-defined]


def read_ftt_discretizer(path: Path) -> dict[str, Any]:
    """The pickled KBinsDiscretizer's attributes (bin_edges, bin_centers, n_bins, ...)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    if not zipfile.is_zipfile(path):  # torch's legacy tar/pickle reader trusts its sizes
        raise CheckpointError(f"{path}: unreadable or corrupt (not a torch.save zip archive)")
    try:
        obj = torch.load(
            path, map_location="cpu", pickle_module=_restricted_pickle, weights_only=False
        )
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except _Refused as exc:
        raise CheckpointError(
            f"{path}: refused to unpickle {exc} (an FTT discretizer file holds only its "
            "KBinsDiscretizer, plain numeric numpy arrays and tensors)"
        ) from None
    except Exception as exc:  # zip, pickle and torch errors all mean a damaged file
        raise CheckpointError(f"{path}: unreadable or corrupt ({type(exc).__name__})") from None
    if not isinstance(obj, FttKBinsState):
        raise CheckpointError(f"{path}: not a seed KBinsDiscretizer (found {type(obj).__name__})")
    return dict(vars(obj))


# ------------------------------------------------------------ discretizer


class FttDiscretizer(Discretizer):
    """A Discretizer whose boundaries reproduce the seed's encode and whose centers are
    the seed's bin centers exactly (decode / expectation)."""

    def __init__(self, boundaries: np.ndarray, centers: np.ndarray):
        super().__init__(boundaries)
        c = np.asarray(centers, dtype=np.float64)
        if c.shape != self.centers.shape or not np.isfinite(c).all():
            raise ValueError(
                f"centers must be finite with shape {self.centers.shape}, got {c.shape}"
            )
        self.centers = c


def ftt_encode_threshold(edges: np.ndarray) -> np.ndarray:
    """The x at which the seed's shifted value x + atol + rtol*|x| reaches each edge.

    The shift is strictly increasing in x (slope 1 +- rtol), so "shifted x >= e" is
    exactly "x >= threshold(e)".
    """
    e = np.asarray(edges, dtype=np.float64) - FTT_ENCODE_ATOL
    return np.where(e >= 0, e / (1.0 + FTT_ENCODE_RTOL), e / (1.0 - FTT_ENCODE_RTOL))


def _rising_from_the_top(b: np.ndarray) -> np.ndarray:
    """Make each row strictly increasing by lowering repeated edges below their run.

    Repeated edges (constant dimensions, quantiles of point masses) are zero-width bins
    the seed can never encode into; it sends a value equal to the repeated edge to the
    bin above the whole run. Keeping the highest copy of a run and moving the others
    down by tiny steps preserves that for the value itself.
    """
    if (np.diff(b, axis=1) > 0).all():
        return b
    span = b[:, -1] - b[:, 0]
    scale = np.maximum(np.abs(b).max(axis=1), 1.0)
    delta = np.where(span > 0, span * 1e-6, scale * 1e-6)
    delta = np.maximum(delta, np.spacing(scale) * 64)[:, None]
    ramp = np.arange(b.shape[1]) * delta
    # out_i = min_{m >= i}(b_m - m*delta) + i*delta: <= b_i, rises by >= delta per step.
    return np.minimum.accumulate((b - ramp)[:, ::-1], axis=1)[:, ::-1] + ramp


def discretizer_from_ftt(state: dict[str, Any], where: str = DISCRETIZER_FILE) -> FttDiscretizer:
    """Map the seed discretizer's state onto a Discretizer that bins like the seed."""
    edges = state.get("bin_edges")
    if (
        not isinstance(edges, np.ndarray)
        or edges.dtype.kind not in _SAFE_DTYPE_KINDS
        or edges.ndim != 2
        or edges.shape[1] < 3
    ):
        raise CheckpointError(f"{where}: bin_edges missing or not a numeric [dims, bins + 1] array")
    edges = edges.astype(np.float64)
    if not np.isfinite(edges).all() or (np.diff(edges, axis=1) < 0).any():
        raise CheckpointError(f"{where}: bin_edges are not finite and ascending")
    n_bins = state.get("n_bins", edges.shape[1] - 1)
    if type(n_bins) is not int or n_bins != edges.shape[1] - 1:
        raise CheckpointError(f"{where}: n_bins {_describe(n_bins)} does not match bin_edges {edges.shape}")
    centers = state.get("bin_centers")
    if centers is None:
        centers = (edges[:, 1:] + edges[:, :-1]) * 0.5
    elif not isinstance(centers, np.ndarray) or centers.dtype.kind not in _SAFE_DTYPE_KINDS:
        raise CheckpointError(f"{where}: bin_centers is not a numeric array ({_describe(centers)})")
    centers = np.asarray(centers, dtype=np.float64)
    try:
        return FttDiscretizer(_rising_from_the_top(ftt_encode_threshold(edges)), centers)
    except ValueError as exc:
        raise CheckpointError(f"{where}: {exc}") from None


# ------------------------------------------------------------------ config


class _Section:
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


def _model_spec(data: dict, where: Path) -> FttModelSpec:
    m = _Section(data, "model", where)
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


def _build_config(data: dict, spec: FttModelSpec, strategy: str, where: Path) -> Config:
    d = _Section(data, "dataset", where)
    t = _Section(data, "trainer", where, required=False)
    num_bins = d.get("num_bins", int, spec.vocab_size)
    if num_bins != spec.vocab_size:
        raise CheckpointError(
            f"{where}: dataset.num_bins {num_bins} != model.vocab_size {spec.vocab_size}"
        )
    discount = d.get("discount", float, 0.99)
    cfg_strategy = d.get("strategy", str, strategy)
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
        plan=PlanConfig(**plan),
        # the seed's scripts/eval.py with configs/eval_base.yaml: 25 episodes, seed 42
        eval=EvalConfig(episodes=FTT_EVAL_EPISODES,
                        seed=t.get("eval_seed", int, FTT_EVAL_SEED)),
    )
    try:
        validate(cfg, {})
    except ConfigError as exc:
        raise CheckpointError(f"{where}: cannot be used as a tt-tui config: {exc}") from None
    return cfg


# ------------------------------------------------------------------ weights


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except Exception as exc:  # damaged zip / refused pickle content
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise CheckpointError(
            f"{path}: unreadable, corrupt or not a state dict ({first})"
        ) from None
    if isinstance(state, dict) and not all(isinstance(v, torch.Tensor) for v in state.values()):
        state = None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return state


def map_ftt_state(
    seed: dict[str, torch.Tensor], spec: FttModelSpec, gpt: GPTConfig, where: str = MODEL_FILE
) -> dict[str, torch.Tensor]:
    """Rename and reshape the seed GPT's state dict onto TrajectoryGPT's names."""
    T, N, E, L = spec.transition_dim, spec.vocab_size, spec.embedding_dim, spec.seq_len_tokens
    used: set[str] = set()

    def take(key: str, *shapes: tuple[int, ...]) -> torch.Tensor:
        if key not in seed:
            raise CheckpointError(f"{where}: missing key '{key}'")
        value = seed[key]
        if tuple(value.shape) not in shapes:
            raise CheckpointError(
                f"{where}: '{key}' has shape {tuple(value.shape)}, expected "
                f"{' or '.join(str(s) for s in shapes)} from config.yaml"
            )
        used.add(key)
        return value.detach().to(torch.float32)

    out: dict[str, torch.Tensor] = {}
    tok = take("tok_emb.weight", (T * N, E))
    out["tok_emb.weight"] = torch.cat([tok, tok.new_zeros(1, E)])  # our spare row, never read
    out["pos_emb"] = take("pos_emb", (1, L, E), (L, E)).reshape(L, E)[: gpt.block_size]
    blocked = ~attention_mask(L, T)  # the seed's convention: True = masked
    for i in range(spec.num_layers):
        s, o = f"blocks.{i}.", f"blocks.{i}."
        for ours, theirs in (("ln1", "norm1"), ("ln2", "norm2")):
            out[f"{o}{ours}.weight"] = take(f"{s}{theirs}.weight", (E,))
            out[f"{o}{ours}.bias"] = take(f"{s}{theirs}.bias", (E,))
        out[f"{o}attn.c_attn.weight"] = take(f"{s}attention.in_proj_weight", (3 * E, E))
        out[f"{o}attn.c_attn.bias"] = take(f"{s}attention.in_proj_bias", (3 * E,))
        out[f"{o}attn.c_proj.weight"] = take(f"{s}attention.out_proj.weight", (E, E))
        out[f"{o}attn.c_proj.bias"] = take(f"{s}attention.out_proj.bias", (E,))
        out[f"{o}mlp.0.weight"] = take(f"{s}mlp.0.weight", (4 * E, E))
        out[f"{o}mlp.0.bias"] = take(f"{s}mlp.0.bias", (4 * E,))
        out[f"{o}mlp.2.weight"] = take(f"{s}mlp.2.weight", (E, 4 * E))
        out[f"{o}mlp.2.bias"] = take(f"{s}mlp.2.bias", (E,))
        mask_key = f"{s}attn_mask"
        if mask_key in seed:  # a persistent buffer in the seed; not a weight of ours
            mask = seed[mask_key]
            used.add(mask_key)
            if tuple(mask.shape) != (L, L) or not torch.equal(mask.to(torch.bool), blocked):
                raise CheckpointError(
                    f"{where}: '{mask_key}' is not the causal + value-column mask "
                    "this importer maps onto tt-tui's attention"
                )
    out["ln_f.weight"] = take("norm.weight", (E,))
    out["ln_f.bias"] = take("norm.bias", (E,))
    out["head"] = take("head.weight", (T, N, E))
    extra = sorted(set(seed) - used)
    if extra:
        raise CheckpointError(
            f"{where}: unexpected key '{extra[0]}' (not part of the seed GPT this importer knows)"
        )

    # The target model's own names and shapes: any drift in TrajectoryGPT shows here.
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in TrajectoryGPT(gpt).state_dict().items()}
    for key, shape in expected.items():
        if key not in out:
            raise CheckpointError(f"{where}: no seed weight maps onto '{key}'")
        if tuple(out[key].shape) != shape:
            raise CheckpointError(
                f"{where}: '{key}' maps to shape {tuple(out[key].shape)}, model needs {shape}"
            )
    return {k: out[k].contiguous().clone() for k in expected}


# ------------------------------------------------------------ block variant


class NormResidualBlock(Block):
    """The seed snapshot's block: the residual stream is the *normalized* input,
    h = ln1(x); h = h + attn(h); h + mlp(ln2(h)). Same parameters as Block."""

    def forward(self, x, mask, cache=None):
        h = self.ln1(x)
        h = h + self.attn(h, mask, cache)
        return h + self.feed_forward(self.ln2(h))


def adapt_model(model: TrajectoryGPT, dataset_meta: dict) -> TrajectoryGPT:
    """Give `model` the residual path its seed weights were trained with (in place).

    A no-op for tt-tui runs and "pre-norm" seed checkpoints. Works before or after
    load_state_dict: the block classes share every parameter and buffer.
    """
    kind = dataset_meta.get(FTT_BLOCK_KEY)
    if kind == NORM_RESIDUAL:
        for block in model.blocks:
            if type(block) is Block:
                block.__class__ = NormResidualBlock
    elif kind not in (None, PRE_NORM):
        kinds = ", ".join(BLOCK_KINDS)
        raise CheckpointError(f"unknown {FTT_BLOCK_KEY} {kind!r}; expected one of {kinds}")
    return model


# -------------------------------------------------------------------- load


def load_ftt_checkpoint(path: Path, block: Optional[str] = None) -> LoadedRun:
    """Load a FTT-format directory as a LoadedRun (step 0, no trainer state).

    `block`: "norm-residual" for models trained before upstream's block fix, "pre-norm"
    for ones trained after it; None tells them apart by the model file's blob id
    (`detect_block`). Build the model with `adapt_model(TrajectoryGPT(...), meta)`.
    """
    path = Path(path)
    if block is not None and block not in BLOCK_KINDS:
        kinds = ", ".join(BLOCK_KINDS)
        raise CheckpointError(f"FTT block kind {block!r}: expected one of {kinds}")
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such FTT checkpoint directory")
    cfg_path = path / CONFIG_FILE
    data = read_yaml_mapping(cfg_path)
    spec = _model_spec(data, cfg_path)
    env_name = _Section(data, "dataset", cfg_path).get("env_name", str)
    try:
        env = ftt_env(env_name)
    except CheckpointError as exc:
        raise CheckpointError(f"{cfg_path}: {exc}") from None
    if (spec.observation_dim, spec.action_dim) != (env.observation_dim, env.action_dim):
        raise CheckpointError(
            f"{cfg_path}: observation/action dims {spec.observation_dim}/{spec.action_dim} do not "
            f"match {env_name} ({env.observation_dim}/{env.action_dim})"
        )

    disc_path = path / DISCRETIZER_FILE
    disc_state = read_ftt_discretizer(disc_path)
    disc = discretizer_from_ftt(disc_state, str(disc_path))
    if disc.dim != spec.transition_dim or disc.num_bins != spec.vocab_size:
        raise CheckpointError(
            f"{disc_path}: {disc.dim} dims x {disc.num_bins} bins, config.yaml says "
            f"{spec.transition_dim} x {spec.vocab_size}"
        )
    strategy = disc_state.get("strategy")
    cfg = _build_config(data, spec, strategy if isinstance(strategy, str) else "uniform", cfg_path)

    model_path = _model_file(path)
    if model_path is None:
        raise CheckpointError(f"{path / MODEL_FILE}: missing (nor any model_<epoch>.pt)")
    gpt = GPTConfig.from_config(cfg, spec.observation_dim, spec.action_dim)
    state = map_ftt_state(_load_state_dict(model_path), spec, gpt, str(model_path))
    if block is None:
        block, note = detect_block(model_path)
    else:
        note = f"planning with the {block} block (--ftt-block)"

    meta = {
        "dataset_id": env_name,
        "env_id": env.env_id,
        "observation_dim": spec.observation_dim,
        "action_dim": spec.action_dim,
        "behaviour_mean_return": None,
        "ref_min_score": env.ref_min_score,
        "ref_max_score": env.ref_max_score,
        "source": "faster-trajectory-transformer",
        "ftt_weights": model_path.name,
        FTT_BLOCK_KEY: block,
        FTT_BLOCK_NOTE_KEY: note,
    }
    return LoadedRun(
        run=RunFiles(path), config=cfg, discretizer=disc, dataset_meta=meta,
        step=0, model_state=state, trainer_state=None,
    )
