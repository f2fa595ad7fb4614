"""User-facing errors and their exit codes (documented in the README).

Each error's message is one line that names what is wrong; the CLI prints it and
exits with the code below. Anything else is a bug: exit code 1.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path


class TTError(Exception):
    """Base class for errors a user can cause and fix."""

    exit_code = 1


class ConfigError(TTError):
    """Bad config file, override, CLI flag or live setting."""

    exit_code = 2


class DataError(TTError):
    """Missing, unreachable or malformed dataset."""

    exit_code = 3


class CheckpointError(TTError):
    """Missing, truncated or corrupt run directory / checkpoint."""

    exit_code = 3


class DownloadError(TTError):
    """A pinned file could not be fetched, or its content is not the pinned one."""

    exit_code = 3


class OutputError(TTError):
    """A file or folder the command must write cannot be written."""

    exit_code = 3


class Interrupted(TTError):
    """Stopped by the user where nothing can be saved (e.g. while collecting a dataset)."""

    exit_code = 130


class PeerLost(TTError):
    """Another process of this torchrun job died; this one stops with it. The launcher
    names the rank that died, so this error prints nothing of its own."""

    exit_code = 5


_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe",
              "remote process exited", "NCCL communicator was aborted")


def _is_peer_lost(exc: BaseException) -> bool:
    """A collective failed because a peer process went away (gloo and nccl say so in
    their message); other backend errors stay errors of their own."""
    if "torch.distributed" not in sys.modules:  # no job, no peers: do not import torch for it
        return False
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in _PEER_GONE)


def no_space_message(where: Path, what: str, needed: int, free: int) -> str:
    """Why a write does not fit: what it needs and what is free on `where`."""
    return f"no space left on {where}: {what} needs ~{needed / 2**20:.1f} MiB, {free / 2**20:.1f} MiB free"


def as_user_error(exc: BaseException) -> TTError | None:
    """The user error an OS error stands for (a full or read-only disk, a folder the
    user may not write, a lost peer of a distributed job), or None when it is not one."""
    if not isinstance(exc, OSError) and _is_peer_lost(exc):
        return PeerLost(f"another process of this distributed job stopped ({exc.__class__.__name__})")
    if not isinstance(exc, OSError):
        return None
    where = Path(exc.filename).parent if exc.filename else None
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"no space left on {where or 'the disk'} ({exc.strerror})")
    if exc.errno == errno.EROFS:
        return OutputError(f"{exc.filename or 'a file'} is not writable ({exc.strerror})")
    if exc.errno in (errno.EACCES, errno.EPERM):  # reading or writing
        return OutputError(f"{exc.filename or 'a file'}: permission denied ({exc.strerror})")
    if exc.errno == errno.ENOTDIR:  # e.g. train.out_dir=/dev/null
        return OutputError(f"{exc.filename or 'a path'}: part of this path is a file, not a folder")
    if exc.errno == errno.ENAMETOOLONG:  # e.g. a dataset id: ids name directories
        name = max(Path(exc.filename).parts, key=len) if exc.filename else "a name"
        return ConfigError(f"{name[:40]}...: name or path too long for the file system ({len(name.encode())} bytes)")
    return None


def caused_by_interrupt(exc: BaseException) -> bool:
    """Whether `exc` is a Ctrl+C, or an error that stands for one. A KeyboardInterrupt
    raised while a compiled module initialises comes out as that import's ImportError
    (pybind11's "initialization failed": mujoco, torch), which libraries wrap again
    (gymnasium: "MuJoCo is not installed"); one raised in a ctypes call comes out as a
    ctypes.ArgumentError naming it. Wrapping keeps it in the chain (`from None` too)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        if type(current).__module__ == "ctypes" and "KeyboardInterrupt" in str(current):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class TrainingDiverged(TTError):
    """Non-finite loss, gradients or weights: the step is not applied and nothing
    non-finite is saved; the last checkpoint stays the newest."""

    exit_code = 4
