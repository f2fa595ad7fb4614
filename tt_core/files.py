"""Bounded reads of the files a command reads: a run directory's, and a config.

Every command that reads a run or a config goes through here: only regular files are read (a FIFO
would block, a device such as /dev/zero never ends, and a symlink to either is refused
the same way), and never more than a cap of bytes per file, so one hand-made or hostile
file costs one line, not the machine's memory. Failures are `RunFileError`: one line
naming the file and what is wrong with it.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from tt_core.errors import CheckpointError

KIB, MIB = 1 << 10, 1 << 20
METRICS_CAP = 256 * MIB  # a metrics.jsonl: years of logging at the default rate, not a runaway file
SMALL_CAP = 4 * MIB  # a config, dataset.json, latest.json, heartbeat.json
SNAPSHOTS_CAP = 64 * MIB  # the beam trees of one evaluation's envs

try:  # libyaml's loader when PyYAML was built with it: the same documents, ten times faster
    _YamlLoader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - pure-Python PyYAML
    _YamlLoader = yaml.SafeLoader


class RunFileError(CheckpointError):
    """A run file cannot be read: not a regular file, too large, unreadable or malformed."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _size_text(n: int) -> str:
    return f"{n / MIB:.0f} MiB" if n >= MIB else f"{n / KIB:.0f} KiB" if n >= KIB else f"{n} bytes"


def _open_regular(path: Path) -> tuple[int, os.stat_result]:
    """An open descriptor of `path` and its stat, when it is a regular file (checked on the
    descriptor itself, so a file swapped after the check is not read)."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of hanging
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        why = {errno.ELOOP: "a symlink loop", errno.EACCES: "permission denied", errno.EPERM: "permission denied",
               errno.ENOTDIR: "a path through a file", errno.EISDIR: "a directory"}.get(exc.errno, exc.strerror)
        raise RunFileError(f"{path}: unreadable ({why})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise RunFileError(f"{path}: {_kind(info.st_mode)}, not a regular file; refused")
    return fd, info


def check_regular(path: Path) -> Path:
    """`path`, after checking it is a regular file (RunFileError otherwise: a FIFO or a
    device would block or never end a library's own read); FileNotFoundError passes
    through. For files a library opens itself by name (safetensors maps its file)."""
    fd, _ = _open_regular(Path(path))
    os.close(fd)
    return Path(path)


def open_regular(path: Path) -> BinaryIO:
    """`path` opened for binary reading, when it is a regular file (RunFileError
    otherwise); FileNotFoundError passes through, a missing file is the caller's case."""
    fd, _ = _open_regular(Path(path))
    return os.fdopen(fd, "rb")


def read_bytes(path: Path, cap: int) -> bytes:
    """The whole of regular file `path`, refused when it holds more than `cap` bytes."""
    with open_regular(path) as f:
        try:
            size = os.fstat(f.fileno()).st_size
            if size > cap:
                raise RunFileError(f"{path}: {_size_text(size)}, over the {_size_text(cap)} this file may hold")
            data = f.read(cap + 1)
        except OSError as exc:
            raise RunFileError(f"{path}: unreadable ({exc.strerror})") from None
    if len(data) > cap:  # it grew while being read
        raise RunFileError(f"{path}: over the {_size_text(cap)} this file may hold")
    return data


def read_head(path: Path, size: int) -> bytes:
    """The first `size` bytes of regular file `path` (fewer when it is smaller)."""
    with open_regular(path) as f:
        try:
            return f.read(size)
        except OSError as exc:
            raise RunFileError(f"{path}: unreadable ({exc.strerror})") from None


def read_text(path: Path, cap: int = SMALL_CAP) -> str:
    """A bounded read decoded as UTF-8 (a damaged byte becomes U+FFFD, never an error)."""
    return read_bytes(path, cap).decode("utf-8", errors="replace")


def read_json_object(path: Path, cap: int = SMALL_CAP) -> dict:
    """A small JSON file holding one object (latest.json, dataset.json, heartbeat.json)."""
    try:
        data = json.loads(read_bytes(path, cap))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise RunFileError(f"{path}: unreadable or corrupt (not valid JSON)") from None
    if not isinstance(data, dict):
        raise RunFileError(f"{path}: holds a JSON {type(data).__name__}, not an object")
    return data


def read_yaml_mapping(path: Path, cap: int = SMALL_CAP) -> dict:
    """A YAML file holding one mapping (a run's config.yaml)."""
    try:
        data = yaml.load(read_text(path, cap), Loader=_YamlLoader)  # noqa: S506 - a safe loader
    except (yaml.YAMLError, RecursionError, ValueError):
        raise RunFileError(f"{path}: unreadable or corrupt (not valid YAML)") from None
    if not isinstance(data, dict):
        raise RunFileError(f"{path}: holds no mapping")
    return data
