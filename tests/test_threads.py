"""CPU threads that fit the machine (#28): the count comes from the usable cores shared
among tt-tui's processes, a cgroup limit lowers it, a count given fixes it, and the
tuner drops to one thread while that is faster and goes back when the machine frees,
at a bounded cost on a quiet one."""

import pytest
from hypothesis import given, settings, strategies as st

from tt_core import threads
from tt_core.threads import SHARE_ENV, ThreadTuner, cgroup_cpu_limit, choose_threads


@pytest.fixture
def cores(monkeypatch):
    """Pretend this process may run on `n` cores, no cgroup limit, nothing reserved."""
    def set_cores(n: int) -> None:
        monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(n)))
        monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
        monkeypatch.setattr(threads, "_reserved", 0)
    return set_cores


@pytest.mark.parametrize("n, share, expected", [(2, None, 2), (2, "2", 1), (8, "3", 2), (1, "4", 1), (16, "x", 16)])
def test_the_usable_cores_are_divided_among_the_processes_started_together(cores, monkeypatch, n, share, expected):
    cores(n)
    if share is None:
        monkeypatch.delenv(SHARE_ENV, raising=False)
    else:
        monkeypatch.setenv(SHARE_ENV, share)
    count, why = choose_threads()
    assert count == expected and f"{n} usable cores (CPU affinity)" in why
    assert ("shared by" in why) == (share not in (None, "x"))


def test_a_count_given_wins_and_the_dashboard_keeps_a_core(cores, monkeypatch):
    cores(4)
    monkeypatch.delenv(SHARE_ENV, raising=False)
    assert choose_threads(3) == (3, "device.threads")
    threads.reserve_core()
    assert choose_threads()[0] == 3 and "one kept for the dashboard" in choose_threads()[1]


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3.0),
    ({}, None),
])
def test_a_cgroup_cpu_limit_is_read_in_either_cgroup_version(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_limit(tmp_path) == expected


class _Machine:
    """A tuner driving a simulated machine: each unit's time depends on the count in force."""

    def __init__(self, threads: int = 2) -> None:
        self.count = threads
        self.tuner = ThreadTuner(threads, self._apply)

    def _apply(self, count: int) -> None:
        self.count = count

    def run(self, seconds_of, units: int) -> tuple[float, list[int]]:
        """(the total time, the count of each unit) of `units` units."""
        total, counts = 0.0, []
        for i in range(units):
            took = seconds_of(i, self.count)
            total, counts = total + took, counts + [self.count]
            self.tuner.timed(took)
        return total, counts


@settings(max_examples=40, deadline=None)
@given(one_thread_slower=st.floats(1.1, 2.0), noise=st.floats(0.0, 0.05), seed=st.integers(0, 1000))
def test_on_a_quiet_machine_the_probes_cost_under_three_percent(one_thread_slower, noise, seed):
    import random

    jitter = [1 + noise * x for x in (lambda rng: [rng.random() for _ in range(1000)])(random.Random(seed))]
    machine = _Machine()
    total, counts = machine.run(lambda i, c: (1.0 if c == 2 else one_thread_slower) * jitter[i], 1000)
    assert total <= 1.03 * sum(jitter)  # against two threads throughout
    assert machine.tuner.current == 2 and counts[-1] == 2


@settings(max_examples=40, deadline=None)
@given(busy_slowdown=st.floats(3.0, 10.0), one_thread_busy=st.floats(1.2, 2.0), start=st.integers(0, 300))
def test_a_busy_machine_drops_to_one_thread_soon_and_the_freed_machine_goes_back(busy_slowdown, one_thread_busy, start):
    """Quiet: 2 threads 1.0, 1 thread 1.4. Busy (units start..start+300): 2 threads
    `busy_slowdown`, 1 thread `one_thread_busy`."""
    def seconds_of(i, count):
        busy = start <= i < start + 300
        if busy:
            return busy_slowdown if count == 2 else one_thread_busy
        return 1.0 if count == 2 else 1.4

    _, counts = _Machine().run(seconds_of, start + 600)
    busy = counts[start:start + 300]
    assert busy[20:].count(1) >= 0.95 * len(busy[20:])  # one thread within 20 units of the neighbour's start
    freed = counts[start + 300:]
    assert freed[40:].count(2) >= 0.9 * len(freed[40:])  # and back within 40 once it left
