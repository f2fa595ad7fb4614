"""Writes that survive a crash (fsync of files and directory entries, atomic replace)
and locks that die with their process.

No torch here: commands that only move files (downloads, metrics) import this alone.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Optional

from tt_core.errors import OutputError


# what opening a lock file's path says when it is not a file: a folder, a symlink (O_NOFOLLOW),
# a socket, a device without a driver
_NOT_A_FILE = (errno.EISDIR, errno.ELOOP, errno.ENXIO, errno.ENODEV, errno.EINVAL, errno.EOPNOTSUPP)


class LockHeld(Exception):
    """Another process holds the lock; the message is what it wrote into the lock file."""


class FileLock:
    """An exclusive `flock` on a file, taken without waiting. The kernel drops it when
    the process ends, however it ends (SIGKILL included), so a lock is never stale; the
    file itself stays and holds the holder's `owner` text for whoever is refused."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._handle: Optional[Any] = None

    def acquire(self, owner: str = "") -> "FileLock":
        """Take the lock or raise LockHeld at once."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        refused = f"{self.path}: not a regular file, which a lock file must be; remove it"
        # O_NONBLOCK: a FIFO put where the lock file belongs must not block the open;
        # O_NOFOLLOW: a symlink must not make us create or lock a file elsewhere
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_NOFOLLOW, 0o644)
        except OSError as exc:  # a folder, a symlink, a socket or a device that cannot be opened
            if exc.errno in _NOT_A_FILE:
                raise OutputError(refused) from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OutputError(refused)
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "r+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read(500).strip()
            handle.close()
            raise LockHeld(holder) from None
        handle.seek(0)
        handle.truncate()
        handle.write(owner)
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the descriptor releases the flock
            self._handle = None

    def __enter__(self) -> "FileLock":
        return self if self._handle is not None else self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in `path` durable (the directory entry itself)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, mode: Optional[int] = None, sync: bool = True) -> None:
    """Write `data` to `path` so that readers see the old or the new file, never a part.
    A failed write names `path` (a full disk's error on an open file names no file).
    `mode`: the new file's permissions (default mkstemp's 0600, for the run's own files).
    `sync=False`: no fsync, for a cache rewritten often whose loss in a crash only costs
    a slower read (after a power cut it may be empty, never a mix of two versions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    if sync:
        fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def fsync_file(path: Path) -> None:
    """Flush a written file's content to the disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())
