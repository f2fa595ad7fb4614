"""How a seed (FTT) checkpoint directory is laid out, told from its file names alone.
Here, below pretrained/ftt (which loads such a folder), so that the torch-free listing
can tell such a folder from a tt-tui run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

CONFIG_FILE = "config.yaml"
DISCRETIZER_FILE = "discretizer.pt"
MODEL_FILE = "model_last.pt"


def model_file(path: Path) -> Optional[Path]:
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
            and model_file(path) is not None
        )
    except OSError:
        return False
