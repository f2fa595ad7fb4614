"""Process memory and the model's dimensions, without torch.

The TUI never imports torch, so memory comes from /proc (Linux) or `resource`, and
the model's dimensions come from the EvalStarted event (the cache size itself from
tt_core.model.cache_size).
"""

from __future__ import annotations

import os
import resource
import sys
from dataclasses import dataclass


def _proc_kib(path: str, key: str) -> int | None:
    """Bytes of a "Key:  N kB" line in a /proc file; None where there is no /proc."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def process_rss_bytes() -> int:
    """Resident memory of this process now (peak RSS where /proc is missing)."""
    rss = _proc_kib("/proc/self/status", "VmRSS:")
    if rss is not None:
        return rss
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def available_memory_bytes() -> int | None:
    """Memory the OS can still hand out (MemAvailable), None when unknown."""
    available = _proc_kib("/proc/meminfo", "MemAvailable:")
    if available is not None:
        return available
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def human_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


@dataclass(frozen=True)
class ModelDims:
    n_layers: int
    embedding_dim: int
    transition_dim: int  # tokens per transition: O + A + 2
    seq_len: int | None = None  # the model's window in transitions
    action_dim: int | None = None


def model_dims_from(info: object) -> ModelDims | None:
    """ModelDims from a dict/object with n_layers, embedding_dim and transition_dim
    (or observation_dim + action_dim); None when something is missing."""

    def get(name: str):
        if isinstance(info, dict):
            return info.get(name)
        return getattr(info, name, None)

    try:
        layers, emb = get("n_layers"), get("embedding_dim")
        t = get("transition_dim")
        if t is None and get("observation_dim") is not None and get("action_dim") is not None:
            t = int(get("observation_dim")) + int(get("action_dim")) + 2
        if layers is None or emb is None or t is None:
            return None
        seq_len, adim = get("seq_len"), get("action_dim")
        return ModelDims(int(layers), int(emb), int(t),
                         None if seq_len is None else int(seq_len),
                         None if adim is None else int(adim))
    except (TypeError, ValueError):
        return None
