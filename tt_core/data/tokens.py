"""Token ids for the whole dataset, training windows over them, and a disk cache.

The dataset is discretized once into `tokens [N, T]` (per-dimension bin ids; the
model adds per-dimension offsets). `TokenWindows` cuts training windows of `seq_len`
transitions out of it, by one of two rules (see its docstring).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from tt_core.config import DatasetConfig
from tt_core.data.discretizer import Discretizer
from tt_core.data.trajectories import Trajectories, build_trajectories

# Bump when the cached arrays change meaning, so old caches are rebuilt.
# 2: quantile bins follow the original TT's rule.
CACHE_FORMAT = 2
_TRAJ_FIELDS = ("observations", "actions", "rewards", "values", "terminals",
                "episode_starts", "episode_lengths")
# The original's SequenceDataset(max_path_length=1000), used when the dataset's env
# names no time limit.
ORIGINAL_MAX_PATH_LENGTH = 1000


def default_cache_dir() -> Path:
    return Path(os.environ.get("TT_CACHE_DIR", "~/.cache/tt-tui")).expanduser()


class TokenWindows:
    """The whole dataset tokenized once; windows of seq_len transitions for training.

    With a stop token (`stop_id` = N, the original TT's `datasets/sequence.py`): a window
    starts at every transition of an episode but its last (`range(length - 1)`); every
    position after the episode's end holds the stop token and is trained; a target is
    masked only when the token it follows (the mask is aligned to the inputs, as the
    original's `mask[:-1]`) lies at or past `max_path_length` steps into its episode.

    Without one (`stop_id` None: runs made before the stop token, so that they resume on
    exactly the windows they started with): a window starts at every transition, positions
    past the episode's end are id 0 and a target is trained on only when the token it
    predicts is real data.
    """

    def __init__(
        self,
        tokens: torch.Tensor,
        episode_starts: np.ndarray | torch.Tensor,
        episode_lengths: np.ndarray | torch.Tensor,
        seq_len: int,
        stop_id: Optional[int] = None,
        max_path_length: int = ORIGINAL_MAX_PATH_LENGTH,
    ):
        self.tokens = tokens.long()
        self.seq_len = seq_len
        self.stop_id = stop_id
        self.max_path_length = max_path_length
        dev = tokens.device
        starts = torch.as_tensor(episode_starts, dtype=torch.long, device=dev)
        lengths = torch.as_tensor(episode_lengths, dtype=torch.long, device=dev)
        self._episode_starts, self._episode_lengths = starts, lengths
        # Per transition: the first and (exclusive) last index of its episode.
        self.episode_begin = torch.repeat_interleave(starts, lengths)
        self.episode_end = torch.repeat_interleave(starts + lengths, lengths)
        every = torch.arange(self.tokens.shape[0], device=dev)
        self.window_starts = every if stop_id is None else every[every + 1 < self.episode_end]
        self._offsets = torch.arange(seq_len, device=dev)

    def __len__(self) -> int:
        return self.window_starts.shape[0]

    def to(self, device: torch.device | str) -> "TokenWindows":
        """Move the token table next to the model so batches gather on-device."""
        return TokenWindows(
            self.tokens.to(device), self._episode_starts, self._episode_lengths, self.seq_len,
            self.stop_id, self.max_path_length,
        )

    def real_transitions(self) -> np.ndarray:
        """Per window (host int64): how many of its seq_len transitions are data."""
        start = self.window_starts
        return (self.episode_end[start] - start).clamp(max=self.seq_len).cpu().numpy()

    def batch(self, window_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Windows -> (x, y, mask), each [B, seq_len*T - 1]; y is x shifted by one token."""
        start = self.window_starts[window_ids.to(self.tokens.device).long()]
        rows = start[:, None] + self._offsets  # [B, S] transition indices
        valid = rows < self.episode_end[start][:, None]
        seq = self.tokens[torch.where(valid, rows, torch.zeros_like(rows))]  # [B, S, T]
        batch, transition_dim = seq.shape[0], seq.shape[2]
        if self.stop_id is None:
            seq = (seq * valid[..., None]).reshape(batch, -1)  # padding -> id 0
            mask = valid[..., None].expand(-1, -1, transition_dim).reshape(batch, -1)
            # A target is trained on only when the token it predicts is real data.
            return seq[:, :-1], seq[:, 1:], mask[:, 1:].float()
        seq = torch.where(valid[..., None], seq, self.stop_id).reshape(batch, -1)
        in_path = (rows - self.episode_begin[start][:, None]) < self.max_path_length
        mask = in_path[..., None].expand(-1, -1, transition_dim).reshape(batch, -1)
        return seq[:, :-1], seq[:, 1:], mask[:, :-1].float()


def tokenize(traj: Trajectories, disc: Discretizer) -> torch.Tensor:
    """[N, T] int64 bin ids of every transition."""
    return torch.from_numpy(disc.encode(traj.joined()))


def _dataset_fingerprint(data_path: Path) -> list[Any]:
    """Name, size, mtime and sampled bytes of every file under the dataset folder.

    Hashing every byte of a large HDF5 file would slow each start; size + mtime
    change on any rewrite, and the sampled bytes catch copies that keep mtimes.
    """
    parts: list[Any] = []
    for f in sorted(p for p in data_path.rglob("*") if p.is_file()):
        st = f.stat()
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for pos in (0, st.st_size // 2, max(st.st_size - 65536, 0)):
                fh.seek(pos)
                h.update(fh.read(65536))
        parts.append([f.relative_to(data_path).as_posix(), st.st_size, st.st_mtime_ns, h.hexdigest()])
    return parts


def _cache_key(dataset_id: str, ds: Any, cfg: DatasetConfig) -> str:
    desc = {
        "format": CACHE_FORMAT,
        "dataset": dataset_id,
        "num_bins": cfg.num_bins,
        "strategy": cfg.strategy,
        "discount": cfg.discount,
        "termination_penalty": cfg.termination_penalty,
        "files": _dataset_fingerprint(Path(ds.storage.data_path)),
    }
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()


def _read_cache(path: Path, key: str) -> tuple[Trajectories, Discretizer, torch.Tensor] | None:
    """The cached arrays, or None when the file is missing, stale or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            traj = Trajectories(**{name: z[name] for name in _TRAJ_FIELDS})
            disc = Discretizer.from_arrays({"boundaries": z["boundaries"]})
            tokens = torch.from_numpy(z["tokens"].astype(np.int64))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    n, t = tokens.shape
    if n != traj.num_transitions or t != traj.transition_dim or t != disc.dim:
        return None
    if int(traj.episode_lengths.sum()) != n:
        return None
    return traj, disc, tokens


def _write_cache(path: Path, key: str, traj: Trajectories, disc: Discretizer, tokens: torch.Tensor) -> None:
    """Write atomically: a reader sees the old file or the whole new one."""
    # Bin ids fit in 16 bits for any sane bin count: a quarter of the disk of int64.
    small = np.uint16 if disc.num_bins <= np.iinfo(np.uint16).max + 1 else np.int64
    arrays = {name: getattr(traj, name) for name in _TRAJ_FIELDS}
    arrays.update(key=np.array(key), tokens=tokens.numpy().astype(small), **disc.to_arrays())
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as fh:
            tmp_name = fh.name
            np.savez(fh, **arrays)
        os.replace(tmp_name, path)
    except OSError as exc:
        # A cache we cannot write only costs time on the next start.
        warnings.warn(f"could not write token cache {path}: {exc}")
        if tmp_name is not None and os.path.exists(tmp_name):
            os.unlink(tmp_name)


def load_or_build_tokens(
    dataset_id: str, ds: Any, cfg: DatasetConfig, cache_dir: Path
) -> tuple[Trajectories, Discretizer, torch.Tensor, bool]:
    """Trajectories, fitted discretizer and tokens [N, T]; the bool says they came from cache."""
    key = _cache_key(dataset_id, ds, cfg)
    safe_id = dataset_id.replace("/", "__")
    path = Path(cache_dir) / f"{safe_id}-{key[:16]}.npz"
    cached = _read_cache(path, key)
    if cached is not None:
        traj, disc, tokens = cached
        from_cache = True
    else:
        traj = build_trajectories(ds, cfg.discount, cfg.termination_penalty)
        disc = Discretizer.fit(traj.joined(), cfg.num_bins, cfg.strategy)
        tokens = tokenize(traj, disc)
        _write_cache(path, key, traj, disc, tokens)
        from_cache = False
    return traj, disc, tokens, from_cache
