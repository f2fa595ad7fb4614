"""`tt-tui train`: train a Trajectory Transformer, or resume a run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tt_tui.cli.exits import user_errors
from tt_tui.cli.foreground import run_app, run_job, use_app
from tt_tui.cli.launcher import launch_local


@user_errors
def train(
    config: Optional[Path] = typer.Argument(None, help="YAML config (configs/*.yaml)."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Dotted overrides: train.lr=3e-4"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this run directory."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N, mps."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU compute threads (device.threads; "
                                          "default: the usable cores shared among tt-tui's processes, fewer "
                                          "while other processes keep them busy)."),
    headless: bool = typer.Option(False, "--headless", help="Progress bar instead of the app."),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Processes on this machine (torch.distributed.run: nccl on CUDA, gloo on CPU)."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="One run per seed, as a group: 0,1,2 or a count (3)."),
    parallel: int = typer.Option(1, "--parallel", min=1, help="With --seeds: runs at a time (processes)."),
) -> None:
    """Train a Trajectory Transformer (or resume a run; or one run per seed, --seeds)."""
    from tt_core.config import apply_overrides, load_config
    from tt_core.device import resolve_device
    from tt_core.distributed import check_batch_split, join, launched_by_torchrun, leave
    from tt_core.errors import ConfigError
    from tt_core.jobs.factories import train_job
    from tt_core.train.trainer import check_resume_compatible

    config, overrides = _with_flags(config, overrides, device, threads)
    if seeds is not None or parallel > 1:
        from tt_tui.cli.seeds import train_seeds

        train_seeds(config, overrides, seeds, parallel, alone=resume is None and nproc == 1)
        return
    if resume is not None:
        if config is not None:
            raise ConfigError("--resume takes its config from the run directory; drop CONFIG")
        saved = _saved_config(resume)
        cfg = apply_overrides(saved, overrides)
    elif config is None:
        raise ConfigError("give a CONFIG file (e.g. configs/quickstart.yaml) or --resume RUN_DIR")
    else:
        cfg = load_config(config, overrides)
    resolve_device(cfg.train.device)  # an unknown or absent device: one line before anything starts
    if nproc > 1:  # checked here, said once, not once per rank
        if launched_by_torchrun():
            raise ConfigError("--nproc: this process was started by torchrun already; drop --nproc")
        check_batch_split(cfg.train.batch_size, nproc)
        if resume is not None:
            check_resume_compatible(saved, cfg)
        launch_local(nproc)
        return

    world = join(cfg.train.device)
    try:
        # the app needs the terminal's own session; ranks run in sessions of their own
        if world.main and not world.distributed and use_app(headless):
            run_app(train_job(cfg, resume=resume, watch=True, world=world), "train")
            return
        from tt_tui.headless import HeadlessReporter, SilentReporter

        reporter = HeadlessReporter() if world.main else SilentReporter()
        run_job(train_job(cfg, resume=resume, world=world), reporter, announce=world.main)
    finally:
        leave()


def _with_flags(config: Optional[Path], overrides: Optional[list[str]], device: Optional[str],
                threads: Optional[int]) -> tuple[Optional[Path], list[str]]:
    """CONFIG and the overrides, --device and --threads among them: the config is the one
    channel settings take."""
    overrides = list(overrides or [])
    if config is not None and "=" in config.name:
        overrides.insert(0, str(config))  # `tt-tui train --resume RUN train.max_steps=10`
        config = None
    if device is not None:
        overrides.append(f"train.device={device}")
    if threads is not None:
        overrides.append(f"device.threads={threads}")
    return config, overrides


def _saved_config(resume: Path):
    """The config a run was saved with (a missing run or file: exit 3, one line)."""
    from tt_core.config import load_config
    from tt_core.errors import CheckpointError
    from tt_core.runs.checkpoint import RunFiles, find_run_root

    run_files = RunFiles(find_run_root(resume)[0])
    if not run_files.config.exists():
        raise CheckpointError(f"{run_files.config}: missing (not a tt-tui run directory?)")
    return load_config(run_files.config, saved_run=True)
