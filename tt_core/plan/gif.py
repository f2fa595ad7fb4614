"""Frames -> GIF: collects rendered frames per env and writes one GIF per recording."""

from __future__ import annotations

import re
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from tt_core.durable import atomic_write_bytes


def gif_name(run_name: str, env_id: str, episode: int, part: int = 0) -> str:
    """File name that says run, env and episode (and the part, for toggled recordings)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{run_name}-{env_id}-episode{episode:03d}")
    return f"{safe}.gif" if part == 0 else f"{safe}-part{part}.gif"


def write_gif(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    """Write `frames` ([H, W, 3] uint8) as a looping GIF; the write is atomic."""
    return _write_image(path, iio.imwrite("<bytes>", np.stack(frames), extension=".gif", duration=1000 / fps, loop=0))


def _write_image(path: Path, data: bytes) -> Path:
    """An encoded image at `path`, atomically (a viewer never opens half a file);
    readable by all, as files a user shares; no fsync: a lost recording is re-made."""
    atomic_write_bytes(path, data, mode=0o644, sync=False)
    return path


class GifRecorder:
    """Frames of the envs being recorded; `stop` writes the GIF and forgets them."""

    def __init__(self, out_dir: Path, run_name: str, env_id: str, fps: int) -> None:
        self.out_dir = Path(out_dir)
        self.run_name = run_name
        self.env_id = env_id
        self.fps = fps
        self._frames: dict[int, list[np.ndarray]] = {}
        self._parts: dict[int, int] = {}

    @property
    def recording(self) -> list[int]:
        return sorted(self._frames)

    def start(self, env_index: int) -> None:
        self._frames.setdefault(env_index, [])

    def add(self, env_index: int, frame: np.ndarray) -> None:
        self._frames[env_index].append(frame)

    def _beside(self, env_index: int, what: str, step: int, extension: str) -> Path:
        """The path of a file about env `env_index`'s plan at env step `step`, named after
        its episode's GIF: <run>-<env>-episode000-<what>-step0025.<extension>."""
        episode = gif_name(self.run_name, self.env_id, env_index).removesuffix(".gif")
        return self.out_dir / f"{episode}-{what}-step{step:04d}.{extension}"

    def write_plan(self, env_index: int, step: int, frames: list[np.ndarray]) -> Path:
        """A plan GIF of env `env_index` made at env step `step`, beside its episode's."""
        return write_gif(self._beside(env_index, "plan", step, "gif"), frames, self.fps)

    def write_attention(self, env_index: int, step: int, image: np.ndarray) -> Path:
        """A PNG of env `env_index`'s attention maps at env step `step`, beside its
        episode's GIF."""
        png = iio.imwrite("<bytes>", image, extension=".png")
        return _write_image(self._beside(env_index, "attention", step, "png"), png)

    def stop(self, env_index: int) -> Path | None:
        """Write env `env_index`'s GIF; None when it recorded no frame."""
        frames = self._frames.pop(env_index, None)
        if not frames:
            return None
        part = self._parts.get(env_index, 0)
        self._parts[env_index] = part + 1
        name = gif_name(self.run_name, self.env_id, env_index, part)
        return write_gif(self.out_dir / name, frames, self.fps)
