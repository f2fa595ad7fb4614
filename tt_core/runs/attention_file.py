"""attention.safetensors: the model's attention maps over one plan of a run's latest evaluation.

Every training evaluation sends the maps of its first plan (env 0's window: past
transitions, the current observation and the plan; tt_core/plan/rollout.py), and
`AttentionWriter` keeps them as <run>/attention.safetensors (atomically; safetensors:
tensors and string metadata, never pickle). `tt-tui report --plots` draws them
(`read_attention`), one figure per row of the report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tt_core import events as ev
from tt_core.durable import atomic_write_bytes
from tt_core.files import SNAPSHOTS_CAP, RunFileError, read_bytes

ATTENTION_FILE = "attention.safetensors"
_FIELDS = ("env_index", "step", "observation_dim", "action_dim", "context", "train_step")
_MAX_SIDE = 1 << 14  # tokens of a window; a run's file beyond it is not one tt-tui wrote


class AttentionWriter:
    """Event listener holding the first maps of an evaluation; at its end they are
    written to <run>/attention.safetensors with the training step they were taken at."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / ATTENTION_FILE
        self._first: ev.AttentionMaps | None = None

    def __call__(self, event: Any) -> None:
        from safetensors.numpy import save

        if isinstance(event, ev.EvalStarted):
            self._first = None
        elif isinstance(event, ev.AttentionMaps) and self._first is None:
            self._first = event
        elif isinstance(event, ev.EvalFinished) and self._first is not None:
            maps = self._first
            meta = {name: str(getattr(maps, name)) for name in _FIELDS[:-1]} | {"train_step": str(event.step)}
            atomic_write_bytes(self.path, save({"weights": np.ascontiguousarray(maps.weights, np.float32)}, meta))


def read_attention(run_dir: Path) -> tuple[ev.AttentionMaps, int] | None:
    """(the maps, the training step) of the run's latest evaluation; None when there are
    none or the file is not what tt-tui writes (unreadable, damaged, a FIFO or a device:
    read bounded, a regular file only), so a report goes on without them."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        data = read_bytes(Path(run_dir) / ATTENTION_FILE, SNAPSHOTS_CAP)
        weights = load(data)["weights"]
        meta = _metadata(data)
        values = {name: int(meta[name]) for name in _FIELDS}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError, RunFileError, SafetensorError):
        return None
    if weights.dtype != np.float32 or weights.ndim != 4 or weights.shape[2] != weights.shape[3]:
        return None
    t = weights.shape[2]
    if not 0 < t <= _MAX_SIDE or not 0 < values["context"] <= t or min(values.values()) < 0 \
            or values["observation_dim"] < 1 or values["action_dim"] < 1 or not np.isfinite(weights).all():
        return None
    train_step = values.pop("train_step")
    return ev.AttentionMaps(weights=weights, **values), train_step


def _metadata(data: bytes) -> dict:
    """The string metadata of safetensors `data` (its JSON header's __metadata__)."""
    size = int.from_bytes(data[:8], "little")
    if not 0 < size <= len(data) - 8:
        raise ValueError("bad safetensors header")
    meta = json.loads(data[8 : 8 + size]).get("__metadata__")
    if not isinstance(meta, dict):
        raise ValueError("no metadata")
    return meta
