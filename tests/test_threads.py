"""CPU threads that fit the machine (#28): the count comes from the usable cores shared
among tt-tui's processes, a cgroup limit lowers it, a count given fixes it, and the load
watch computes with the cores other processes leave free: never a change on a quiet
machine (a run's numbers depend on the count), one soon after a neighbour comes, back
soon after it leaves."""

import subprocess
import sys
import time

import pytest
from hypothesis import given, settings, strategies as st

from tt_core import threads
from tt_core.threads import SHARE_ENV, CpuTimes, LoadWatch, cgroup_cpu_limit, choose_threads, read_cpu_times


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
    """A LoadWatch reading simulated clocks. In each window of 0.5 s the others want
    `others_of(window)` cores and this process its `current` threads; when they want more
    than there is, each gets its share of the cores in proportion (the scheduler's fair
    share), so the watch sees less than the others want, as on a real machine."""

    def __init__(self, cores: int, threads: int) -> None:
        self.cores, self.clock = cores, CpuTimes(0.0, 0.0, 0.0, cores)
        self.counts: list[int] = []
        self.watch = LoadWatch(threads, self.counts.append, interval=0.0, read=lambda: self.clock)

    def run(self, others_of, windows: int) -> list[int]:
        """The count in force after each window."""
        seen = []
        for w in range(windows):
            own, others = float(self.watch.current), float(others_of(w))
            scale = min(1.0, self.cores / (own + others))
            c = self.clock
            self.clock = CpuTimes(c.wall + 0.5, c.busy + 0.5 * scale * (own + others), c.own + 0.5 * scale * own,
                                  self.cores)
            self.watch.tick()
            seen.append(self.watch.current)
        return seen


@settings(max_examples=60, deadline=None)
@given(cores=st.integers(2, 64), noise=st.lists(st.floats(0.0, 0.45), min_size=200, max_size=200))
def test_on_a_quiet_machine_the_count_never_changes(cores, noise):
    """Background noise under half a core (daemons, the shell) changes nothing: no probe,
    no switch, so a run on a quiet machine computes exactly as with the count fixed."""
    machine = _Machine(cores, cores)
    assert set(machine.run(lambda w: noise[w], 200)) == {cores}
    assert machine.counts == [] and machine.watch.switches == 0


@settings(max_examples=60, deadline=None)
@given(cores=st.integers(2, 32), busy=st.integers(1, 32), start=st.integers(1, 50), length=st.integers(3, 60))
def test_a_busy_neighbour_gets_its_cores_within_two_windows_and_gives_them_back_within_two(
        cores, busy, start, length):
    """The count falls to the cores the neighbour leaves (at least one) and never below,
    though on full cores the watch sees only the neighbour's fair share; once it leaves,
    all the cores come back."""
    busy = min(busy, cores)
    machine = _Machine(cores, cores)
    seen = machine.run(lambda w: busy if start <= w < start + length else 0.0, start + length + 10)
    during, after = seen[start:start + length], seen[start + length + 2:]
    fair = max(1, cores - busy)
    assert min(during) >= fair
    assert all(count == fair for count in during[2:])
    assert all(count == cores for count in after)


def test_one_burst_of_load_does_not_flip_the_count():
    machine = _Machine(2, 2)
    assert machine.run(lambda w: 2.0 if w == 10 else 0.0, 30) == [2] * 30


def test_a_real_busy_process_is_seen_and_its_cores_left_to_it():
    """The clocks of /proc: two processes spinning on this machine's cores (as a second
    training would) make the watch of this process advise one core fewer per spinner,
    at least one; it reads only the cores this process may run on."""
    reading = read_cpu_times()
    assert reading is not None and reading.cores >= 1
    cores = reading.cores
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(min(cores, 2))]
    try:
        time.sleep(0.5)  # they start
        watch = LoadWatch(max(cores, 2), lambda count: None, interval=0.5)
        deadline = time.monotonic() + 10
        while watch.switches == 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # this process idles: all the busy time is theirs
            watch.tick()
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    assert watch.others is not None and watch.others > 0.8 * len(spinners)
    assert watch.current == max(1, cores - len(spinners))


@pytest.mark.parametrize("args, env, said", [
    ((), {SHARE_ENV: "2"}, "shared by 2 tt-tui processes"),  # a seed of --parallel 2
    (("--threads", "3"), {}, "3 CPU threads (device.threads)"),
])
def test_a_training_says_its_thread_count_and_why_in_its_first_lines(tmp_path, args, env, said):
    from conftest import write_tiny_config
    from test_cli import tt

    config = write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", threads=None)
    result = tt("train", config, "train.max_steps=2", *args, "--headless", **env)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if "CPU thread" in line)
    assert said in line
    if env:  # half of the cores this process may run on
        assert line.startswith(f"{max(1, read_cpu_times().cores // 2)} CPU thread")


def test_a_thread_count_out_of_range_is_one_line_exit_2(tiny_config):
    from test_cli import _one_error_line, tt

    result = tt("train", tiny_config, "device.threads=0", "--headless")
    assert result.returncode == 2 and "device.threads" in _one_error_line(result)


def test_bench_plan_times_quiet_and_busy_side_by_side_and_says_the_counts_auto_used():
    from test_cli import tt

    result = tt("bench", "plan", "--envs", "1", "--width", "2", "--steps", "2", "--repeats", "1", "--no-naive",
                "--load", "0", "--load", "1", "--threads", "auto", "--threads", "1", timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 1 | 2 x 2 |")]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert [(c[5], c[6].split(":")[0]) for c in cells] == [("0", "auto"), ("0", "1"), ("1", "auto"), ("1", "1")]
    assert all(c[6].startswith("auto: ") for c in cells if c[6] != "1")  # the counts it computed with
    assert all("x quiet" in row for row in rows[2:]) and not any("x quiet" in row for row in rows[:2])
