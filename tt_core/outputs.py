"""Files and folders the user names for a command's output (`--out`, `--json`, `--plots`).

Every output path is checked before the command does any work (`output_file`,
`output_folder`), so a typo costs one line, not an evaluation. Writing
(`OutputFile.write`) follows symlinks and replaces only a regular file, atomically, in
the folder that holds it: the symlink stays a symlink. A character device, a FIFO, a
socket and an open descriptor (`/dev/stdout`, `/proc/self/fd/1`, `/dev/fd/2`) are
written straight into, never renamed over: `--out /dev/stdout` with stdout redirected to a
file adds the table to that file. No torch here.
"""

from __future__ import annotations

import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tt_core.durable import atomic_write_bytes
from tt_core.errors import OutputError

_OPEN_DESCRIPTOR = re.compile(r"^/(?:proc/(?:self|thread-self|\d+)|dev)/fd/(\d+)$")
_MAX_LINKS = 40  # as the kernel's own limit on a path's symlinks


@dataclass(frozen=True)
class OutputFile:
    """A checked output file: where the bytes go and how."""

    given: Path  # the path as the user gave it (for messages)
    target: Path  # symlinks followed
    kind: str  # "file" (replaced atomically), "device" (written into) or "descriptor"
    descriptor: Optional[int] = None  # this process's descriptor, for kind "descriptor"

    def write(self, text: str) -> None:
        """Write `text` as the whole output."""
        data = text.encode()
        try:
            if self.kind == "file":
                atomic_write_bytes(self.target, data, mode=_default_mode())
            elif self.kind == "descriptor" and _ours(self.descriptor, self.target):
                sys.stdout.flush()
                sys.stderr.flush()
                with os.fdopen(self.descriptor, "wb", closefd=False) as f:
                    f.write(data)
            else:
                with open(self.target, "wb") as f:
                    f.write(data)
        except OSError as exc:
            raise OutputError(f"{self.given}: cannot write it ({exc.strerror or exc})") from None


def _default_mode() -> int:
    """The mode a new file gets here (0666 less the umask), not mkstemp's private 0600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _ours(fd: Optional[int], link: Path) -> bool:
    """Whether `link` (/proc/self/fd/N, /proc/PID/fd/N, /dev/fd/N) is this process's own descriptor."""
    m = re.match(r"^/proc/(\d+)/fd/", str(link))
    return fd is not None and (m is None or int(m.group(1)) == os.getpid())


def _follow(path: Path) -> tuple[Path, Optional[int]]:
    """`path` with its symlinks followed, stopping at an open descriptor's link (whose
    target, `pipe:[…]` or a deleted file, is no path to rename over)."""
    current = Path(os.path.abspath(path))
    for _ in range(_MAX_LINKS):
        m = _OPEN_DESCRIPTOR.match(str(current))
        if m:
            return current, int(m.group(1))
        parent = Path(os.path.realpath(current.parent))  # the folders on the way, resolved
        current = parent / current.name
        m = _OPEN_DESCRIPTOR.match(str(current))
        if m:
            return current, int(m.group(1))
        if not current.is_symlink():
            return current, None
        current = Path(os.path.normpath(parent / os.readlink(current)))
    raise OutputError(f"{path}: a symlink loop")


def _folder_problem(folder: Path, what: str, path: Path) -> Optional[str]:
    """Why new files cannot be made in `folder` (made with its parents when missing), as
    the error line of option `what` given `path`, or None."""
    ancestor = folder
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    subject, why = ancestor, "not a folder"
    if ancestor.is_dir():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".tt-tui-probe-"):
                pass
            return None
        except OSError as exc:
            subject, why = folder, f"not writable ({exc.strerror or exc})"
    return f"{what} {path}: {why}" if subject == path else f"{what} {path}: {subject} is {why}"


def output_file(path: Path, what: str) -> OutputFile:
    """Check output file `path` of option `what` before any work; OutputError otherwise."""
    path = Path(path)
    try:
        target, fd = _follow(path)
        if fd is not None:
            try:
                os.fstat(fd) if _ours(fd, target) else target.stat()
            except OSError:
                raise OutputError(f"{what} {path}: descriptor {fd} is not open") from None
            return OutputFile(path, target, "descriptor", fd)
        if target.exists():
            mode = target.stat().st_mode
            if stat.S_ISDIR(mode):
                raise OutputError(f"{what} {path}: is a folder, not a file")
            if stat.S_ISCHR(mode):  # /dev/null, /dev/tty, /dev/full: written into; a newline tries it now
                try:
                    with open(target, "w") as device:
                        device.write("\n")
                except OSError as exc:
                    raise OutputError(f"{what} {path}: not writable ({exc.strerror or exc})") from None
            if not stat.S_ISREG(mode):  # a character device, a FIFO, a socket: written into
                return OutputFile(path, target, "device")
            if not os.access(target, os.W_OK):
                raise OutputError(f"{what} {path}: not writable (permission denied)")
        problem = _folder_problem(target.parent, what, path)
    except OSError as exc:
        raise OutputError(f"{what} {path}: {exc.strerror or exc}") from None
    if problem is not None:
        raise OutputError(problem)
    return OutputFile(path, target, "file")


def output_folder(path: Path, what: str) -> Path:
    """Check output folder `path` of option `what` before any work (made when missing);
    the folder, or OutputError."""
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise OutputError(f"{what} {path}: is not a folder")
        problem = _folder_problem(path, what, path)
    except OSError as exc:
        raise OutputError(f"{what} {path}: {exc.strerror or exc}") from None
    if problem is not None:
        raise OutputError(problem)
    return path
