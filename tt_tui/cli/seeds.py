"""`tt-tui train CONFIG --seeds ...`: one run per seed, as a group, N processes at a time.

Each seed is an ordinary `tt-tui train CONFIG ... train.seed=S train.group=G --headless`
process (so a seed's run is exactly the run that command makes alone, in sequence or in
parallel); their lines are shown prefixed with their seed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import typer


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
    """Train one run per seed, `parallel` at a time. Exits 0 when every seed finished,
    130 after a Ctrl+C (no further seed starts), else with the first failure's code."""
    from tt_core.config import load_config
    from tt_core.errors import ConfigError

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
    from tt_core.data.minari_io import ensure_dataset

    ensure_dataset(cfg.dataset, notify=typer.echo)  # once, here: not once per seed, racing
    codes, interrupted = _run_all({s: [sys.executable, "-m", "tt_tui.cli", "train", str(config), *extra,
                                       "--headless"] for s, extra in per_seed.items()}, parallel)
    runs_dir = "" if cfg.train.out_dir == "runs" else f" --runs-dir {cfg.train.out_dir}"
    if interrupted:
        left = [s for s in seeds if s not in codes]
        typer.echo(f"group {group}: stopped by Ctrl+C" + (f"; seed(s) {', '.join(map(str, left))} not started"
                                                          if left else ""), err=True)
        raise typer.Exit(130)
    failed = {s: c for s, c in codes.items() if c != 0}
    if failed:
        typer.echo(f"group {group}: seed(s) {', '.join(f'{s} (exit {c})' for s, c in failed.items())} failed; "
                   f"the others' table: tt-tui report {group}{runs_dir}", err=True)
        raise typer.Exit(next(iter(failed.values())))
    typer.echo(f"group {group}: all {len(seeds)} seeds finished; the table: tt-tui report {group}{runs_dir}")


def _run_all(commands: dict[int, list[str]], parallel: int) -> tuple[dict[int, int], bool]:
    """Run the commands, `parallel` at a time, their output prefixed: (their exit codes,
    whether Ctrl+C was pressed). Ctrl+C reaches the running children from the terminal
    (each stops and saves); here it only keeps the next seeds from starting."""
    lock = threading.Lock()
    codes: dict[int, int] = {}
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())

    def one(seed: int, cmd: list[str]) -> None:
        if stop.is_set():
            return
        # the child's own Ctrl+C handling, not this process's handler
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        for line in proc.stdout:  # always drained: a child never blocks on a full pipe
            with lock:
                try:
                    typer.echo(f"[seed {seed}] {line.rstrip()}")
                except OSError:  # our own output is gone (a closed pipe): keep draining
                    pass
        codes[seed] = proc.wait()

    try:
        with ThreadPoolExecutor(max_workers=parallel) as pool:  # the next seed starts when one ends
            list(pool.map(lambda item: one(*item), commands.items()))
    finally:
        signal.signal(signal.SIGINT, previous)
    return codes, stop.is_set()
