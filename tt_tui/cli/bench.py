"""`tt-tui bench train|plan|precision|gpu|runs`: speed benchmarks (medians of repeated runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tt_tui.cli.exits import fail, user_errors


_LOAD = typer.Option([0], "--load", min=0, help="Busy neighbour processes (torch matrix products on 2 threads) "
                    "running during the timing (repeatable: quiet and busy side by side).")
_THREADS = typer.Option(["auto"], "--threads", help="CPU threads: auto (chosen, and lowered while other processes "
                        "keep the cores busy; the table says the counts it used) or a fixed count (repeatable).")


def _check_threads(threads: list[str]) -> None:
    if bad := [t for t in threads if t != "auto" and not (t.isascii() and t.isdigit() and int(t) >= 1)]:
        fail(f"--threads must be auto or a count of at least 1, got {bad[0]}", 2)


@user_errors
def bench_train_cmd(
    device: str = typer.Option("auto", "--device"),
    batch: int = typer.Option(64, "--batch", min=1),
    steps: int = typer.Option(5, "--steps", min=1, help="Optimizer steps per timed run."),
    repeats: int = typer.Option(5, "--repeats", min=1),
    variant: Optional[list[str]] = typer.Option(
        None, "--variant", help="fp32, bf16, compile+fp32, compile+bf16 (repeatable; default: what suits the "
        "device: all four on CUDA, fp32 on a CPU, and bf16 where it has bf16 matrix units)."
    ),
    full: bool = typer.Option(False, "--full", help="All four variants, whatever the device (emulated bf16 and "
                              "torch.compile take minutes on a CPU)."),
    load: list[int] = _LOAD,
    threads: list[str] = _THREADS,
) -> None:
    """Training tokens/s of the walker2d-size model (batch x 249 tokens), variants side by side,
    with GFLOP/s, % of the device's matrix speed and peak memory. Under a minute by default."""
    from tt_core.jobs.bench import TRAIN_VARIANTS, bench_train, default_train_variants, train_table

    if full and variant:
        fail("--full times every variant; drop --variant (or --full)", 2)
    variants = tuple(dict.fromkeys(variant or (TRAIN_VARIANTS if full else default_train_variants(device))))
    if bad := [v for v in variants if v not in TRAIN_VARIANTS]:
        fail(f"--variant must be one of {', '.join(TRAIN_VARIANTS)}, got {bad[0]}", 2)
    _check_threads(threads)
    rows = bench_train(device=device, batch=batch, steps=steps, repeats=repeats, variants=variants,
                       loads=tuple(dict.fromkeys(load)), threads=tuple(dict.fromkeys(threads)))
    typer.echo(train_table(rows))


@user_errors
def bench_plan_cmd(
    device: str = typer.Option("auto", "--device"),
    envs: list[int] = typer.Option([1, 25], "--envs", min=1, help="Env counts (repeatable)."),
    width: Optional[list[int]] = typer.Option(None, "--width", min=1, help="Beam widths, paired with --steps (default 32)."),
    steps: Optional[list[int]] = typer.Option(None, "--steps", min=1, help="Beam steps, paired with --width (default 5)."),
    full: bool = typer.Option(False, "--full", help="The whole matrix: 32 x 5 and 128 x 15 (about 10 minutes on 2 cores)."),
    expand: int = typer.Option(2, "--expand", min=1),
    context: int = typer.Option(5, "--context", min=1, help="Context transitions."),
    naive: bool = typer.Option(True, "--naive/--no-naive", help="Also time the naive reference where feasible."),
    repeats: int = typer.Option(3, "--repeats", min=1),
    dtype: list[str] = typer.Option(["fp32"], "--dtype", help="Planner compute dtype, fp32 or bf16 (repeatable: rows side by side)."),
    load: list[int] = _LOAD,
    threads: list[str] = _THREADS,
) -> None:
    """ms per plan and planning tokens/s, batched planner vs the naive reference (markdown).
    By default 32 x 5 beams only (under a minute on 2 CPU cores); --full adds 128 x 15."""
    from tt_core.jobs.bench import bench_plan, plan_table

    shapes = [(32, 5), (128, 15)] if full else [(32, 5)]
    width = width or [w for w, _ in shapes]
    steps = steps or [s for _, s in shapes]
    if len(width) != len(steps):
        fail("--width and --steps must be given the same number of times (they pair up)", 2)
    if bad := [d for d in dtype if d not in ("fp32", "bf16")]:
        fail(f"--dtype must be fp32 or bf16, got {bad[0]}", 2)
    _check_threads(threads)
    dev, rows = bench_plan(device=device, envs=tuple(envs), shapes=tuple(zip(width, steps)),
                           expand=expand, context=context, naive=naive, repeats=repeats,
                           dtypes=tuple(dict.fromkeys(dtype)), loads=tuple(dict.fromkeys(load)),
                           threads=tuple(dict.fromkeys(threads)))
    typer.echo(plan_table(dev, rows))
    if not full:
        typer.echo("\n(the full matrix, 32 x 5 and 128 x 15: tt-tui bench plan --full)")


@user_errors
def bench_precision_cmd(
    run: Path = typer.Argument(..., help="A trained run (or checkpoint) directory."),
    episodes: int = typer.Option(5, "--episodes", min=1, help="Episodes per seed and dtype."),
    seed: list[int] = typer.Option([0, 1, 2], "--seed", min=0, help="Env seeds (repeatable)."),
    max_steps: int = typer.Option(1000, "--max-steps", min=1),
    device: str = typer.Option("auto", "--device"),
) -> None:
    """bf16 against fp32 planning for a trained run: the share of identical greedy plans over
    the contexts of real episodes, and returns over seeds in each dtype (markdown)."""
    from tt_core.jobs.precision_bench import bench_precision, precision_table

    typer.echo(precision_table(bench_precision(run, episodes, tuple(dict.fromkeys(seed)), max_steps, device)))


@user_errors
def bench_gpu_cmd(
    device: str = typer.Option("cuda", "--device", help="The CUDA device (cuda, cuda:N)."),
    quick: bool = typer.Option(False, "--quick", help="Tiny sizes: check on any device that the script runs."),
) -> None:
    """The GPU benchmark in one table: training, planning and the seed's 25 x 1000 headline."""
    from tt_core.jobs.bench import bench_gpu
    from tt_core.device import resolve_device
    from tt_core.errors import ConfigError

    try:
        kind = resolve_device(device).type
    except ConfigError:  # e.g. no CUDA here
        kind = None
    if kind != "cuda" and not quick:
        fail(f"--device {device}: bench gpu measures a CUDA device; `tt-tui bench gpu --device cpu "
              "--quick` checks that the script runs here", 2)
    typer.echo(bench_gpu(device=device, quick=quick))


@user_errors
def bench_runs_cmd(
    runs: int = typer.Option(1000, "--runs", min=1, help="Runs in the folder (groups of 5 seeds)."),
    history: list[int] = typer.Option([150, 1500], "--history", min=1, help="TrainStep records per run "
                                      "(repeatable: folders side by side; 150 is a 3,000-step run logged every 20)."),
    repeats: int = typer.Option(3, "--repeats", min=1),
    keep: Optional[Path] = typer.Option(None, "--keep", help="Make the folders here and keep them (reused when "
                                        "they exist); default: a temporary folder, removed."),
    against: Optional[Path] = typer.Option(None, "--against", help="Another checkout of tt-tui (e.g. a worktree "
                                           "of an older commit): each command also runs with its code, side by side."),
) -> None:
    """Wall time of `tt-tui runs`, `runs --group` and `report` over a folder of many finished
    runs, each in a fresh process as a user runs it (markdown)."""
    from tt_core.errors import ConfigError
    from tt_core.jobs.listing_bench import bench_listing, listing_table

    if against is not None and not (against / "tt_tui" / "cli" / "__init__.py").is_file():
        raise ConfigError(f"--against {against}: not a checkout of tt-tui (no tt_tui/cli/ in it)")
    typer.echo(listing_table(bench_listing(runs, tuple(dict.fromkeys(history)), repeats, keep, against)))
