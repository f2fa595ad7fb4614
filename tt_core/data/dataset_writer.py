"""The child process that writes a collected dataset (minari_io.write_dataset starts it).

h5py does not survive a full disk: it reports every object it then fails to release
(thousands of lines of `Can't decrement id ref count ... errno = 28`) and can crash the
interpreter afterwards (SIGSEGV). In a child process all of that stays in the child; the
parent captures its stderr and turns its end into one error line.

Protocol: `python -m tt_core.data.dataset_writer <parent pid>`, a pickled job on stdin
(`root`: the Minari root to write under; the collecting env's `spec` and spaces; `kwargs`
for minari.create_dataset_from_buffers, the buffers included). Exit 0: the dataset is
written. Else one JSON line on stdout and exit 1: {"errno", "filename"} of the OS error
behind the failure (null when none) and "error", the exception.

It imports no other module of tt_core (no torch): it is ready in about 0.3 s, started
while the parent still records the episodes.
"""

from __future__ import annotations

import ctypes
import json
import os
import pickle
import re
import signal
import sys
import warnings
from typing import Any

import gymnasium as gym

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class _Described(gym.Env):
    """What Minari reads of the collecting env, its spec and spaces, without making the
    env again (a MuJoCo env would cost the child a simulator it never steps)."""

    def __init__(self, spec: Any, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.spec, self.observation_space, self.action_space = spec, observation_space, action_space


def os_error_of(exc: BaseException | None) -> tuple[int, str | None] | None:
    """The OS error behind `exc` or what led to it, as (errno, file name). h5py names it
    only in its text (`... errno = 28, error message = 'No space left on device' ...`)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno:
            return exc.errno, exc.filename
        found = re.search(r"errno = (\d+)", str(exc))
        if found:
            return int(found.group(1)), None
        exc = exc.__cause__ or exc.__context__
    return None


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux), so a collection
    killed mid-write leaves no writer behind: its temporary root is then free to remove."""
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # no prctl (not Linux): an orphan ends with its write
        return
    if os.getppid() != parent:  # the parent died before the call above
        os._exit(1)


def _write(job: dict[str, Any]) -> None:
    import minari

    os.environ["MINARI_DATASETS_PATH"] = job["root"]  # Minari reads it at every call
    env = _Described(job["spec"], job["observation_space"], job["action_space"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Minari warns about every optional metadata field
        minari.create_dataset_from_buffers(env=env, **job["kwargs"])


def main() -> None:
    _die_with(int(sys.argv[1]))
    try:
        _write(pickle.load(sys.stdin.buffer))
    except BaseException as exc:  # noqa: BLE001 - every failure is reported, as one line
        code, filename = os_error_of(exc) or (None, None)
        print(json.dumps({"errno": code, "filename": filename, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
        os._exit(1)  # no interpreter teardown: releasing h5py's broken objects is what crashes


if __name__ == "__main__":
    main()
