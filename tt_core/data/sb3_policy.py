"""Load a Stable-Baselines3 policy zip (the format RL Zoo and published SB3 agents use)
as an action function, reading the file as data only.

An SB3 zip holds a JSON `data` file, in which classes, spaces and schedules are
cloudpickled, and `.pth` tensors. SB3's own `load` unpickles those items and hands every
plain JSON key to the algorithm (an `env` id it then makes, a device, buffer sizes), so
a hostile file runs code or imports modules. Here SB3's loader is not used: the zip is
read once into memory; the policy class is looked up by the module and class names the
JSON states in plain text, among the classes installed SB3 (and sb3-contrib, when
installed) define; it is built on the env's own spaces (their shapes checked against the
file's) with only plain, bounded `policy_kwargs`; its weights come from `policy.pth`
through `torch.load(weights_only=True)`. Nothing else in the file is used.

Not applied: VecNormalize statistics (RL Zoo keeps them beside the zip, in
`vecnormalize.pkl`, a pickle): a policy trained on normalized observations acts on raw
ones here.
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tt_core.errors import ConfigError, DataError

_ENTRY_LIMIT = 256 * 2**20  # a real agent's data is kB, its weights a few MB
# policy_kwargs a policy may carry: plain values only (a pickled activation or network
# class is refused); net_arch is checked for size below.
_PLAIN_KWARGS = {"net_arch", "log_std_init", "use_sde", "use_expln", "clip_mean", "n_critics",
                 "share_features_extractor", "ortho_init", "full_std", "squash_output",
                 "n_quantiles", "normalize_images"}
_MAX_LAYERS, _MAX_UNITS = 16, 8192


def require_sb3() -> Any:
    """The stable_baselines3 module, or one line saying how to install it."""
    try:
        import stable_baselines3
    except ImportError:
        raise ConfigError(
            "stable-baselines3 is not installed; install the extra: pip install -e \".[sb3]\""
        ) from None
    return stable_baselines3


def _algorithm_modules() -> dict[str, str]:
    """'<package>.<algo>.policies' -> the algorithm's name, for SB3 and sb3-contrib."""
    packages = [require_sb3()]
    try:
        import sb3_contrib

        packages.append(sb3_contrib)
    except ImportError:
        pass
    from stable_baselines3.common.base_class import BaseAlgorithm

    found = {}
    for package in packages:
        for name in dir(package):
            cls = getattr(package, name)
            if isinstance(cls, type) and issubclass(cls, BaseAlgorithm):
                found[cls.__module__.rsplit(".", 1)[0] + ".policies"] = cls.__name__
    return found


def _read_zip(path: Path) -> tuple[dict[str, Any], bytes]:
    """(the parsed `data` JSON, the bytes of `policy.pth`), read once."""
    try:
        with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as archive:
            entries = {}
            for name in ("data", "policy.pth"):
                info = archive.getinfo(name)
                if info.file_size > _ENTRY_LIMIT:
                    raise DataError(f"{path}: its '{name}' entry is {info.file_size} bytes; not an SB3 policy")
                entries[name] = archive.read(name)
        data = json.loads(entries["data"].decode("utf-8"))
    except FileNotFoundError:
        raise DataError(f"policy file {path} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"policy file {path} is a folder") from None
    except KeyError as exc:
        raise DataError(f"{path}: no {exc} entry; not a Stable-Baselines3 zip") from None
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DataError(f"{path}: not a readable Stable-Baselines3 zip ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: its 'data' entry is not a JSON object; not a Stable-Baselines3 zip")
    return data, entries["policy.pth"]


def _policy_class(path: Path, data: dict[str, Any]) -> type:
    """The policy class the file's `policy_class` names in plain text."""
    entry = data.get("policy_class")
    module = entry.get("__module__") if isinstance(entry, dict) else None
    modules = _algorithm_modules()
    if not isinstance(module, str) or module not in modules:
        known = ", ".join(sorted(modules.values()))
        raise DataError(f"{path}: its policy module {str(module)[:80]!r} is not one of an installed "
                        f"algorithm ({known})")
    from stable_baselines3.common.policies import BasePolicy

    # The class that defines __init__ names itself in the repr SB3 stores beside the pickle.
    match = re.match(r"<function (\w+)\.__init__ ", str(entry.get("__init__", "")))
    policy = getattr(importlib.import_module(module), match.group(1), None) if match else None
    if not (isinstance(policy, type) and issubclass(policy, BasePolicy)):
        raise DataError(f"{path}: no policy class of {module} is named in its data")
    return policy


def _check_space(path: Path, data: dict[str, Any], key: str, space: Any) -> None:
    entry = data.get(key)
    shape = entry.get("_shape") if isinstance(entry, dict) else None
    try:
        file_shape = tuple(int(x) for x in shape)
    except (ValueError, TypeError, OverflowError):
        raise DataError(f"{path}: no readable {key} shape ({str(shape)[:40]!r}); "
                        "only policies for Box spaces are supported") from None
    if file_shape != tuple(space.shape):
        raise ConfigError(f"{path}: the policy's {key.replace('_', ' ')} has shape {file_shape}, "
                          f"the environment's {tuple(space.shape)}")


def _layers(value: Any) -> bool:
    return (isinstance(value, list) and len(value) <= _MAX_LAYERS
            and all(isinstance(u, int) and not isinstance(u, bool) and 0 < u <= _MAX_UNITS for u in value))


def _policy_kwargs(path: Path, data: dict[str, Any], policy: type) -> dict[str, Any]:
    """The file's plain policy_kwargs (and use_sde, which algorithms pass themselves)."""
    given = data.get("policy_kwargs") or {}
    if not isinstance(given, dict) or ":serialized:" in given:
        raise DataError(f"{path}: its policy_kwargs are pickled or not a mapping (a custom class?); "
                        "tt-tui reads only plain policy settings")
    unknown = sorted(set(given) - _PLAIN_KWARGS)
    if unknown:
        raise DataError(f"{path}: policy_kwargs {unknown[0]!r} is not a plain setting tt-tui reads")
    arch = given.get("net_arch")
    if arch is not None and not (_layers(arch) or (isinstance(arch, dict) and all(
            k in ("pi", "vf", "qf") and _layers(v) for k, v in arch.items()))):
        raise DataError(f"{path}: net_arch {str(arch)[:60]!r} is not a list of layer sizes "
                        f"(at most {_MAX_LAYERS} layers of {_MAX_UNITS} units)")
    for key, value in given.items():
        if key != "net_arch" and not isinstance(value, (bool, int, float)):
            raise DataError(f"{path}: policy_kwargs {key!r} must be a number or true/false")
    kwargs = dict(given)
    if "use_sde" in inspect.signature(policy.__init__).parameters and isinstance(data.get("use_sde"), bool):
        kwargs.setdefault("use_sde", data["use_sde"])
    return kwargs


def load_sb3_policy(path: Path, env: Any, deterministic: bool = False,
                    seed: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """An action function for `env` from the SB3 zip at `path`. `deterministic`: the
    policy's mean action; else a sample from it (as D4RL recorded its datasets), drawn
    from a generator of its own seeded with `seed` (torch's global one is left alone)."""
    import torch

    path = Path(path)
    data, weights = _read_zip(path)
    policy_cls = _policy_class(path, data)
    _check_space(path, data, "observation_space", env.observation_space)
    _check_space(path, data, "action_space", env.action_space)
    kwargs = _policy_kwargs(path, data, policy_cls)
    try:
        policy = policy_cls(env.observation_space, env.action_space, lambda _: 0.0, **kwargs)
        policy.load_state_dict(torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True))
    except Exception as exc:  # any malformed weight file or setting: the file is at fault
        reason = str(exc).splitlines()[0][:100] if str(exc) else ""
        raise DataError(f"{path}: cannot be loaded as a {policy_cls.__name__} "
                        f"({type(exc).__name__}: {reason})") from None
    policy.set_training_mode(False)
    return sb3_actor(policy, deterministic, seed)


def sb3_actor(policy: Any, deterministic: bool, seed: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """One observation -> one action of an SB3 policy (or algorithm: both `predict`).
    Sampled actions draw from their own torch generator state, so collection is
    reproducible from `seed` and leaves the caller's random streams untouched."""
    import torch

    if deterministic:
        return lambda obs: policy.predict(obs, deterministic=True)[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0 if seed is None else seed)
        state = [torch.get_rng_state()]

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(state[0])
            action = policy.predict(obs, deterministic=False)[0]
            state[0] = torch.get_rng_state()
        return action

    return act
