"""The `tt-tui` command.

Exit codes: 0 ok, 1 internal error (a bug: rerun with --debug for the traceback),
2 usage / config error, 3 data or checkpoint error, 130 interrupted.
"""

from __future__ import annotations

import functools
import signal
import sys
import traceback
from pathlib import Path
from typing import Callable, Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Train Trajectory Transformers on offline RL datasets and watch them plan.",
)
bench_app = typer.Typer(no_args_is_help=True, help="Speed benchmarks (medians of repeated runs).")
app.add_typer(bench_app, name="bench")

_DEBUG = False


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    global _DEBUG
    _DEBUG = debug


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(fn: Callable) -> Callable:
    """Turn the engine's user errors into one line + documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from tt_core.errors import TTError

        try:
            return fn(*args, **kwargs)
        except TTError as exc:
            if _DEBUG:
                traceback.print_exc()
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # a bug: keep it to one line unless --debug
            if _DEBUG:
                traceback.print_exc()
            _fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug)", 1)

    return wrapper


def _stop_on_sigint(controls) -> None:
    """First Ctrl+C asks the job to stop cleanly (and save); a second one aborts."""

    def handler(signum, frame):
        if controls.stop_requested:
            raise KeyboardInterrupt
        typer.echo("\nstopping after this step (Ctrl+C again to abort)...", err=True)
        controls.request_stop()

    signal.signal(signal.SIGINT, handler)


@app.command()
@user_errors
def train(
    config: Optional[Path] = typer.Argument(None, help="YAML config (configs/*.yaml)."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Dotted overrides: train.lr=3e-4"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this run directory."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N, mps."),
    headless: bool = typer.Option(False, "--headless", help="Progress bar instead of the app."),
) -> None:
    """Train a Trajectory Transformer (or resume a run)."""
    from tt_core.checkpoint import RunFiles
    from tt_core.config import load_config
    from tt_core.controls import Controls
    from tt_core.errors import ConfigError
    from tt_core.events import EventBus
    from tt_core.train import Trainer

    overrides = list(overrides or [])
    if config is not None and "=" in config.name:
        overrides.insert(0, str(config))  # `tt-tui train --resume RUN train.max_steps=10`
        config = None
    if resume is not None:
        if config is not None:
            raise ConfigError("--resume takes its config from the run directory; drop CONFIG")
        cfg = load_config(RunFiles(resume).config, overrides)
    elif config is None:
        raise ConfigError("give a CONFIG file (e.g. configs/quickstart.yaml) or --resume RUN_DIR")
    else:
        cfg = load_config(config, overrides)
    if device is not None:
        cfg.train.device = device

    from tt_tui.headless import HeadlessReporter

    bus, controls = EventBus(), Controls()
    with HeadlessReporter() as reporter:
        bus.subscribe(reporter)
        trainer = Trainer(cfg, bus, controls, resume=resume)
        _stop_on_sigint(controls)
        trainer.run()


@app.command()
@user_errors
def collect(
    env_id: str = typer.Argument(..., help="Gymnasium env id, e.g. Hopper-v5."),
    dataset_id: str = typer.Option(..., "--dataset-id", help="Minari id, e.g. local/hopper/random-v0."),
    steps: int = typer.Option(100_000, "--steps", min=1, help="Environment steps to record."),
    policy: str = typer.Option("random", "--policy", help="Behaviour policy (random)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Record a local Minari dataset by running a policy in a real environment."""
    from tt_core.data.minari_io import collect_dataset
    from tt_core.errors import ConfigError

    if policy != "random":
        raise ConfigError(f"--policy: {policy!r} is not supported (available: random)")
    info = collect_dataset(env_id, dataset_id, steps=steps, policy=policy, seed=seed)
    typer.echo(
        f"wrote {info.id}: {info.episodes} episodes, {info.steps} steps, "
        f"mean return {info.mean_return:.1f}"
    )


@app.command()
@user_errors
def datasets() -> None:
    """List local Minari datasets."""
    from tt_core.data.minari_io import list_datasets

    rows = list_datasets()
    if not rows:
        typer.echo("no local datasets (run `tt-tui collect` or set MINARI_DATASETS_PATH)")
        return
    header = f"{'id':<40} {'env':<20} {'episodes':>9} {'steps':>10} {'mean return':>12}"
    typer.echo(header)
    for r in rows:
        typer.echo(
            f"{r.id:<40} {str(r.env_id):<20} {r.episodes:>9} {r.steps:>10} {r.mean_return:>12.1f}"
        )


@bench_app.command("train")
@user_errors
def bench_train_cmd(
    device: str = typer.Option("auto", "--device"),
    batch: int = typer.Option(64, "--batch", min=1),
    steps: int = typer.Option(10, "--steps", min=1, help="Optimizer steps per timed run."),
    repeats: int = typer.Option(5, "--repeats", min=1),
) -> None:
    """Training tokens/s of the walker2d-size model (batch x 249 tokens)."""
    from tt_core.bench import bench_train

    r = bench_train(device=device, batch=batch, steps=steps, repeats=repeats)
    typer.echo(
        f"train  device={r.device}  batch={r.batch}x{r.seq_tokens} tokens  "
        f"median {r.median:,.0f} tokens/s over {len(r.runs)} runs of {r.steps_per_run} steps "
        f"(min {min(r.runs):,.0f}, max {max(r.runs):,.0f})"
    )


def main() -> None:
    app(prog_name="tt-tui")


if __name__ == "__main__":
    sys.exit(main())
