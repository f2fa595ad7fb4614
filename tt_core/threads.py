"""How many intra-op threads a tt-tui process computes with, and a tuner that falls back
to fewer while the machine is oversubscribed.

A decode issues hundreds of small operations per token, each an OpenMP parallel region
whose threads wait for one another: when another process takes a core away, every region
waits for the thread that lost it (docs/benchmarks.md#shared-machines). So a process
uses the cores it may run on (its CPU affinity, and a cgroup CPU limit), divided by the
tt-tui processes started beside it (`--seeds --parallel N`, `--nproc N`: the launchers
set SHARE_ENV), unless `device.threads` names a count; and `ThreadTuner` times the work
itself and drops to one thread while that is faster, probing now and then to go back.
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

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


@dataclass
class ThreadTuner:
    """Picks between `threads` and one thread by timing the work itself.

    Call `timed(seconds)` after each unit of work (a training step, a plan). The next
    `probe` units run with the other count when the recent units are `change` times
    slower or faster than this count's usual time (a neighbour started or ended), or
    when `period` units passed since the last probe; a probe that finds the other
    count better by `margin` switches to it. Each probe that confirms the current count
    doubles the period (up to `max_period`), so a quiet machine is probed rarely.
    """

    threads: int  # the count chosen for a quiet machine
    apply: Callable[[int], None]  # sets the count (torch.set_num_threads)
    probe: int = 3
    margin: float = 0.85
    change: float = 1.3
    period: int = 5  # the first probe comes early: a run may start on a machine already busy
    max_period: int = 640
    current: int = field(init=False)
    switches: int = field(init=False, default=0)
    _usual: list[float] = field(init=False, default_factory=list)  # this count's times since it was chosen
    _probing: Optional[list[float]] = field(init=False, default=None)
    _since_probe: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.current = self.threads

    def _other(self) -> int:
        return 1 if self.current == self.threads else self.threads

    def timed(self, seconds: float) -> None:
        """Account one unit of work that took `seconds` (with the count then in force)."""
        if self.threads <= 1:
            return
        if self._probing is not None:  # this unit ran with the other count
            self._probing.append(seconds)
            if len(self._probing) == self.probe:
                self._decide(statistics.median(self._probing))
            return
        self._usual = (self._usual + [seconds])[-200:]
        self._since_probe += 1
        if self._since_probe >= self.period or self._changed():
            self._probing, self._since_probe = [], 0
            self.apply(self._other())

    def _changed(self) -> bool:
        """Whether the last few units ran at another speed than this count's usual."""
        if len(self._usual) < 2 * self.probe + 5:
            return False
        recent = statistics.median(self._usual[-self.probe:])
        usual = statistics.median(self._usual[:-self.probe])
        if recent > self.change * usual or recent * self.change < usual:
            self._usual = self._usual[-self.probe:]  # the new speed is this count's usual from now
            return True
        return False

    def _decide(self, probed: float) -> None:
        other, self._probing = self._other(), None
        now = statistics.median(self._usual[-5:])
        if probed < self.margin * now:
            self.current, self._usual, self.period = other, [], 5
            self.switches += 1
        else:
            self.apply(self.current)
            self.period = min(2 * self.period, self.max_period)
