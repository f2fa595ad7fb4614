"""Load a Stable-Baselines3 policy zip (the format RL Zoo and published SB3 agents use)
as an action function, without unpickling anything from the file.

An SB3 zip holds a JSON `data` file in which classes, spaces, schedules and buffers are
cloudpickled, and `.pth` tensors. SB3's own loader unpickles the JSON items, which runs
any code a hostile file carries. Here every pickled item is replaced before SB3 reads
it (`custom_objects`): the algorithm and policy classes are looked up by the module and
class names the JSON states in plain text, among the classes installed SB3 (and
sb3-contrib, when installed) define; the spaces come from the environment the policy
will act in (their shapes are checked against the file's plain-text shapes); schedules
and buffers, needed only to train, are dropped. SB3 reads the tensors with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tt_core.errors import ConfigError, DataError

# Pickled items that only training uses: harmless stand-ins are enough to act.
_TRAINING_ONLY = {"lr_schedule": lambda _: 0.0, "learning_rate": 0.0, "clip_range": lambda _: 0.0,
                  "clip_range_vf": None, "train_freq": 1, "replay_buffer_class": None,
                  "action_noise": None}
_DATA_LIMIT = 16 * 2**20  # the JSON of a real agent is a few tens of kB


def _algorithms() -> dict[str, type]:
    """'<package>.<algo>.policies' -> the algorithm class, for SB3 and sb3-contrib."""
    from tt_core.data.behaviour import require_sb3

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
                found[cls.__module__.rsplit(".", 1)[0] + ".policies"] = cls
    return found


def _read_data(path: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("data")
            if info.file_size > _DATA_LIMIT:
                raise DataError(f"{path}: its 'data' entry is {info.file_size} bytes; not an SB3 policy")
            raw = json.loads(archive.read("data").decode("utf-8"))
    except FileNotFoundError:
        raise DataError(f"policy file {path} does not exist") from None
    except KeyError:
        raise DataError(f"{path}: no 'data' entry; not a Stable-Baselines3 zip") from None
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not a readable Stable-Baselines3 zip ({type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: its 'data' entry is not a JSON object; not a Stable-Baselines3 zip")
    return raw


def _policy_classes(path: Path, data: dict[str, Any]) -> tuple[type, type]:
    """(algorithm class, policy class) named in plain text by the file's `policy_class`."""
    entry = data.get("policy_class")
    module = entry.get("__module__") if isinstance(entry, dict) else None
    algorithms = _algorithms()
    if module not in algorithms:
        known = ", ".join(sorted(c.__name__ for c in algorithms.values()))
        raise DataError(f"{path}: policy module {str(module)[:80]!r} is not one of an installed "
                        f"algorithm ({known})")
    algorithm = algorithms[module]
    # The class that defines __init__ names itself in the repr SB3 stores beside the pickle.
    match = re.match(r"<function (\w+)\.__init__ ", str(entry.get("__init__", "")))
    import importlib

    from stable_baselines3.common.policies import BasePolicy

    policies = importlib.import_module(module)
    policy = getattr(policies, match.group(1), None) if match else None
    if not (isinstance(policy, type) and issubclass(policy, BasePolicy)):
        policy = algorithm.policy_aliases.get("MlpPolicy")
    return algorithm, policy


def _check_space(path: Path, data: dict[str, Any], key: str, space: Any) -> None:
    entry = data.get(key)
    shape = entry.get("_shape") if isinstance(entry, dict) else None
    if shape is None:
        raise DataError(f"{path}: no plain-text {key} shape; not a policy for a Box space")
    try:
        file_shape = tuple(int(x) for x in shape)
    except (ValueError, TypeError):
        raise DataError(f"{path}: unreadable {key} shape {str(shape)[:40]!r}") from None
    if file_shape != tuple(space.shape):
        raise ConfigError(f"{path}: the policy's {key.replace('_', ' ')} has shape {file_shape}, "
                          f"the environment's {tuple(space.shape)}")


def load_sb3_policy(path: Path, env: Any, deterministic: bool = False,
                    seed: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """An action function for `env` from the SB3 zip at `path`. `deterministic`: the
    policy's mean action; else a sample from it (as D4RL recorded its datasets)."""
    path = Path(path)
    data = _read_data(path)
    algorithm, policy = _policy_classes(path, data)
    _check_space(path, data, "observation_space", env.observation_space)
    _check_space(path, data, "action_space", env.action_space)
    custom: dict[str, Any] = {"policy_class": policy, "observation_space": env.observation_space,
                              "action_space": env.action_space}
    for key, item in data.items():
        if key not in custom and isinstance(item, dict) and ":serialized:" in item:
            if key == "policy_kwargs":
                raise DataError(f"{path}: its policy_kwargs are pickled (a custom class?); "
                                "tt-tui does not unpickle policy files")
            custom[key] = _TRAINING_ONLY.get(key)
    try:
        model = algorithm.load(path, env=None, device="cpu", custom_objects=custom, print_system_info=False)
    except (RuntimeError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot be loaded as a {algorithm.__name__} policy "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''})") from None
    if seed is not None:
        model.set_random_seed(seed)
    return lambda obs: model.predict(obs, deterministic=deterministic)[0]
