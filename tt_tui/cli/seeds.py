"""`tt-tui train CONFIG --seeds ...`: one run per seed, as a group, N processes at a time.

Each seed is an ordinary `tt-tui train CONFIG ... train.seed=S train.group=G --headless`
process (so a seed's run is exactly the run that command makes alone, in sequence or in
parallel); their lines are shown prefixed with their seed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import typer

from tt_core.threads import SHARE_ENV
from tt_tui.cli.exits import exit_with_line, fail


def parse_seeds(text: str) -> list[int]:
    """"0,1,2" (the seeds) or "3" (that many: 0, 1, 2)."""
    from tt_core.errors import ConfigError

    parts = [p.strip() for p in text.split(",")]
    if not all(p.isascii() and p.isdigit() for p in parts):  # "²" is a digit to str.isdigit, not to int
        raise ConfigError(f"--seeds {text!r}: give seeds as 0,1,2 or a count such as 3")
    seeds = [int(p) for p in parts]
    if len(seeds) == 1:
        if not 1 <= seeds[0] <= 1000:
            raise ConfigError(f"--seeds {text}: a count must be in [1, 1000]")
        seeds = list(range(seeds[0]))
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text}: a seed is given twice")
    return seeds


def train_seeds(config: Path | None, overrides: list[str], seeds: str | None, parallel: int, alone: bool) -> None:
    """`train CONFIG --seeds S [--parallel N]`, its flags checked (`alone`: no --resume or
    --nproc with it)."""
    from tt_core.errors import ConfigError

    if seeds is None:
        raise ConfigError("--parallel runs the seeds of --seeds at once; give --seeds too")
    if not alone or config is None:
        raise ConfigError("--seeds trains new runs from a CONFIG, one process each; drop --resume and --nproc")
    run_seeds(config, overrides, parse_seeds(seeds), parallel)


def run_seeds(config: Path, overrides: list[str], seeds: list[int], parallel: int) -> None:
    """Train one run per seed, `parallel` at a time. Exits 0 when every seed finished, else
    with the first failure's code; after a Ctrl+C or SIGTERM (passed on to the running
    seeds, which stop and save; no further seed starts) with 130 or 143."""
    from tt_core.config import load_config
    from tt_core.errors import ConfigError, Interrupted

    group = load_config(config, overrides).train.group  # the config's or an override's
    if group is None:
        stem = "".join(c if c.isalnum() or c in "._-" else "-" for c in config.stem).lstrip(".-") or "seeds"
        group = f"{stem[:80]}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    per_seed = {s: [*overrides, f"train.seed={s}", f"train.group={group}"] for s in seeds}
    cfg = None
    for s, extra in per_seed.items():  # every seed's config checked before any starts
        cfg = load_config(config, extra)
        if (Path(cfg.train.out_dir) / f"{group}-seed{s}").exists():
            raise ConfigError(f"group {group} already has a run of seed {s} in {cfg.train.out_dir}/; "
                              "give another train.group")
    typer.echo(f"group {group}: seeds {', '.join(map(str, seeds))}, {parallel} at a time")
    # the seeds running at once share the cores: each computes with its share (tt_core/threads.py)
    env = {**os.environ, SHARE_ENV: str(min(parallel, len(seeds)))}
    with _Seeds(env) as running:  # from here a signal is a stop request, never a KeyboardInterrupt mid-import
        from tt_core.data.minari_io import ensure_dataset

        try:  # once, here: not once per seed, racing
            ensure_dataset(cfg.dataset, notify=typer.echo, should_stop=lambda: running.stopped_by is not None)
        except Interrupted as exc:  # the signal came while the dataset was collected
            fail(f"group {group}: {exc}", 128 + running.stopped_by)
        codes = _run_all({s: [sys.executable, "-m", "tt_tui.cli", "train", str(config), *extra, "--headless"]
                          for s, extra in per_seed.items()}, parallel, running)
    runs_dir = "" if cfg.train.out_dir == "runs" else f" --runs-dir {cfg.train.out_dir}"
    if running.stopped_by is not None:
        # 130 for SIGINT, 143 for SIGTERM
        exit_with_line(_stopped_line(group, running.stopped_by, seeds, codes, Path(cfg.train.out_dir)),
                       128 + running.stopped_by)
    failed = {s: c for s, c in codes.items() if c != 0}
    if failed:
        typer.echo(f"group {group}: seed(s) {', '.join(f'{s} (exit {c})' for s, c in failed.items())} failed; "
                   f"the others' table: tt-tui report {group}{runs_dir}", err=True)
        raise typer.Exit(next(iter(failed.values())))
    typer.echo(f"group {group}: all {len(seeds)} seeds finished; the table: tt-tui report {group}{runs_dir}")


class _Seeds:
    """The running seed processes, and the signal (SIGINT, SIGTERM) that stopped the group.

    Each seed runs in a session of its own, so a terminal's Ctrl+C reaches this process
    only, which passes it on to every running seed exactly once: were the seeds in the
    terminal's process group too, each would get the terminal's SIGINT and ours, and a
    second SIGINT makes a seed abort without saving. A seed stops and saves on either
    signal (foreground.run_job). Once stopped, no further seed starts; a second signal is
    passed on too (a second Ctrl+C: abort). Used as a context manager: the handlers.
    """

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = env  # the seeds' environment (None: this process's)
        self.stopped_by: int | None = None
        self._running: dict[int, subprocess.Popen] = {}
        # taken by the worker threads and by the handler; the handler runs on the main
        # thread, which takes it nowhere else, so it cannot deadlock on itself
        self._lock = threading.Lock()
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "_Seeds":
        self._previous = {s: signal.signal(s, self._receive) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _receive(self, signum: int, frame) -> None:
        with self._lock:
            self.stopped_by = self.stopped_by or signum
            for proc in self._running.values():
                proc.send_signal(signum)

    def start(self, seed: int, cmd: list[str]) -> subprocess.Popen | None:
        """`cmd` started for `seed` (its output on a pipe), or None once the group is stopped.
        Under the lock: a signal either finds the new process or keeps it from starting."""
        with self._lock:
            if self.stopped_by is not None:
                return None
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                    start_new_session=True, env=self.env)
            self._running[seed] = proc
            return proc

    def ended(self, seed: int) -> None:
        with self._lock:
            del self._running[seed]


def _run_all(commands: dict[int, list[str]], parallel: int, running: _Seeds) -> dict[int, int]:
    """Run the commands, `parallel` at a time, their output prefixed: their exit codes (none
    for a seed the group's stop kept from starting). Each seed's output is read to its
    end, after a stop too: a seed whose pipe closed would die before it saved."""
    lock = threading.Lock()
    codes: dict[int, int] = {}

    def one(seed: int, cmd: list[str]) -> None:
        proc = running.start(seed, cmd)
        if proc is None:
            return
        for line in proc.stdout:  # always drained: a child never blocks on a full pipe
            with lock:
                try:
                    typer.echo(f"[seed {seed}] {line.rstrip()}")
                except OSError:  # our own output is gone (a closed pipe): keep draining
                    pass
        codes[seed] = proc.wait()
        running.ended(seed)

    with ThreadPoolExecutor(max_workers=parallel) as pool:  # the next seed starts when one ends
        list(pool.map(lambda item: one(*item), commands.items()))
    return codes


def _stopped_line(group: str, signum: int, seeds: list[int], codes: dict[int, int], out_dir: Path) -> str:
    """What a signal left of the group, from the runs' own files: the seeds that stopped
    and saved (how to resume them), those it kept from starting, and any other ending."""
    from tt_core.runs.listing import STOPPED, summarize_run

    ends: dict[str, list[int]] = {"not started": [], STOPPED: []}  # these two first
    for s in seeds:
        run = out_dir / f"{group}-seed{s}"
        end = ("not started" if s not in codes else summarize_run(run).state if run.is_dir()
               else f"ended before training (exit {codes[s]})")
        ends.setdefault(end, []).append(s)
    parts = [f"group {group}: stopped by {'Ctrl+C' if signum == signal.SIGINT else 'SIGTERM'}"]
    for end, ended in ends.items():
        listed = f"seed(s) {', '.join(map(str, ended))}"
        if ended and end == STOPPED:
            again = out_dir / f"{group}-seed{ended[0] if len(ended) == 1 else '<seed>'}"
            parts.append(f"{listed} stopped and saved; resume with tt-tui train --resume {again}")
        elif ended:
            parts.append(f"{listed} {end}")
    return "; ".join(parts)
