"""How many intra-op threads a tt-tui process computes with, and a tuner that falls back
to fewer while the machine is oversubscribed.

A decode issues hundreds of small operations per token, each an OpenMP parallel region
whose threads wait for one another: when another process takes a core away, every region
waits for the thread that lost it (docs/benchmarks.md#shared-machines). So a process
uses the cores it may run on (its CPU affinity, and a cgroup CPU limit), divided by the
tt-tui processes started beside it (`--seeds --parallel N`, `--nproc N`: the launchers
set SHARE_ENV), unless `device.threads` names a count; and `LoadWatch` reads how many of
those cores other processes keep busy and computes with the ones they leave free.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Optional

SHARE_ENV = "TT_THREAD_SHARE"  # how many tt-tui processes share this machine's cores (set by launchers)
_reserved = 0  # cores kept for this process's own other work (the dashboard's thread)


def reserve_core() -> None:
    """Keep one core for the dashboard: torch's threads wait for each other at every op,
    and one of them preempted by the UI thread makes every op wait a scheduler tick."""
    global _reserved
    _reserved = 1


def usable_cores() -> tuple[int, str]:
    """(the cores this process may run on, how that was told)."""
    try:
        cores, source = len(os.sched_getaffinity(0)), "CPU affinity"
    except (AttributeError, OSError):  # no affinity on this OS
        cores, source = os.cpu_count() or 1, "cpu_count"
    quota = cgroup_cpu_limit()
    if quota is not None and quota < cores:
        cores, source = max(1, math.floor(quota)), f"cgroup limit of {quota:g} CPUs"
    return cores, source


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> Optional[float]:
    """CPUs the cgroup may use (its quota over its period), None when unlimited or unknown."""
    try:  # cgroup v2: "max 100000" or "200000 100000"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def share() -> int:
    """The tt-tui processes sharing the cores (SHARE_ENV; 1 when unset or not a count)."""
    value = os.environ.get(SHARE_ENV, "1")
    return int(value) if value.isascii() and value.isdigit() and int(value) >= 1 else 1


def choose_threads(requested: Optional[int] = None) -> tuple[int, str]:
    """(intra-op threads for this process, why), for the header line of a run."""
    if requested is not None:
        return requested, "device.threads"
    cores, source = usable_cores()
    sharers = share()
    threads = max(1, (cores - _reserved) // sharers)
    shared = f", shared by {sharers} tt-tui processes" if sharers > 1 else ""
    ui = ", one kept for the dashboard" if _reserved and cores > 1 else ""
    return threads, f"{cores} usable cores ({source}){shared}{ui}"


class CpuTimes(NamedTuple):
    """One reading of the CPU clocks: wall seconds, the core-seconds every process spent on
    the cores this one may use, and the core-seconds this process spent (all its threads)."""

    wall: float
    busy: float
    own: float
    cores: int


def read_cpu_times() -> Optional[CpuTimes]:
    """The clocks now (Linux /proc; None elsewhere or when unreadable). The busy time is
    summed over this process's affinity CPUs only: in a container pinned to a few cores of
    a large host, those are the cores its neighbours can take."""
    try:
        allowed = os.sched_getaffinity(0)
        tick = os.sysconf("SC_CLK_TCK")
        busy = 0
        with open("/proc/stat") as f:
            for line in f:
                name, *fields = line.split()
                if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in allowed:
                    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
                    busy += user + nice + system + irq + softirq + steal  # steal: a hypervisor's neighbours
        with open("/proc/self/stat") as f:
            after_name = f.read().rsplit(")", 1)[1].split()
        own = int(after_name[11]) + int(after_name[12])  # utime, stime: fields 14 and 15
        return CpuTimes(time.monotonic(), busy / tick, own / tick, len(allowed))
    except (AttributeError, OSError, ValueError, IndexError):
        return None


@dataclass
class LoadWatch:
    """Lowers the intra-op thread count while other processes keep this process's cores
    busy, and raises it back when they leave.

    Call `tick()` after each unit of work (a training step, a plan). Once every `interval`
    seconds it reads the CPU clocks: the cores the others kept busy in that window are the
    busy core-seconds of our cores less our own, over the window; when the cores were
    full, that is their fair share, and what they want is estimated from it. The count
    advised is the cores they leave free (between 1 and `threads`, half a core of others'
    use forgiven); it is applied when two windows in a row advise it, so one burst does
    not flip it. On a quiet machine the others use ~0 cores and the count never changes:
    nothing is probed or timed, so the quiet speed and a run's numbers (which depend on
    the thread count: docs/configs.md) stay as they were.
    """

    threads: int  # the count chosen for a quiet machine
    apply: Callable[[int], None]  # sets the count (torch.set_num_threads)
    interval: float = 0.5  # seconds of work between two readings (clock ticks are 10 ms)
    read: Callable[[], Optional[CpuTimes]] = read_cpu_times
    current: int = field(init=False)
    switches: int = field(init=False, default=0)
    readings: int = field(init=False, default=0)
    others: Optional[float] = field(init=False, default=None)  # cores the others used in the last window
    _last: Optional[CpuTimes] = field(init=False, default=None)
    _next_at: float = field(init=False, default=0.0)
    _pending: Optional[int] = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.current = self.threads

    def tick(self) -> None:
        """One unit of work is done: read the clocks if a window has passed, and follow them."""
        if self.threads <= 1 or time.monotonic() < self._next_at:
            return
        now = self.read()
        if now is None:
            return
        last, self._last = self._last, now
        self._next_at = now.wall + self.interval
        self.readings += 1
        if last is None or now.wall <= last.wall:
            return
        span = now.wall - last.wall
        self.others = others = max(0.0, (now.busy - last.busy) - (now.own - last.own)) / span
        wanted = others
        if (now.busy - last.busy) / span >= 0.9 * now.cores and others < now.cores - 0.05:
            # the cores were full, so each runnable thread got its share: the others' share
            # understates what they want, which is (their share x our threads / our share)
            wanted = others * self.current / (now.cores - others)
        # what they want, less half a core of noise (daemons, a shell), is theirs
        advised = min(self.threads, max(1, now.cores - math.ceil(wanted - 0.5)))
        if advised == self.current:
            self._pending = None
        elif advised == self._pending:
            self.current, self._pending = advised, None
            self.switches += 1
            self.apply(advised)
        else:
            self._pending = advised
