"""The `tt-tui` command: the Typer app with its commands (one module per command group in
this package: train (and seeds), planning (eval, record), data, runs, report, loss, pretrained, bench) and the
one-line handling of bad flags. Entry point and Ctrl+C guard: __init__.py; exit codes: exits.py;
--nproc: launcher.py.
"""

from __future__ import annotations

import os
import sys

import typer

from tt_tui.cli import exits
from tt_tui.cli import behaviour, bench, data, loss, planning, pretrained, report, runs, train

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Train Trajectory Transformers on offline RL datasets and watch them plan.",
)
bench_app = typer.Typer(no_args_is_help=True, help="Speed benchmarks (medians of repeated runs).")
app.add_typer(bench_app, name="bench")
pretrained_app = typer.Typer(help="The seed project's published models: list and fetch (verified).")
app.add_typer(pretrained_app, name="pretrained")
behaviour_app = typer.Typer(no_args_is_help=True, help="Behaviour policies (SAC) and the D4RL-style datasets cut from them.")
app.add_typer(behaviour_app, name="behaviour")

app.command()(train.train)
app.command()(data.collect)
app.command()(data.datasets)
app.command()(runs.runs)
app.command()(runs.show)
app.command()(report.report)
app.command()(loss.loss)
app.command("eval")(planning.eval_cmd)
app.command()(planning.record)
pretrained_app.callback(invoke_without_command=True)(pretrained.pretrained_list)
pretrained_app.command("fetch")(pretrained.pretrained_fetch)
behaviour_app.command("train")(behaviour.behaviour_train)
behaviour_app.command("datasets")(behaviour.behaviour_datasets)
bench_app.command("train")(bench.bench_train_cmd)
bench_app.command("plan")(bench.bench_plan_cmd)
bench_app.command("precision")(bench.bench_precision_cmd)
bench_app.command("gpu")(bench.bench_gpu_cmd)
bench_app.command("runs")(bench.bench_runs_cmd)


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    exits.debug = debug


def run() -> None:
    """Run the command line `sys.argv[1:]` and exit with its code."""
    # Without a display MuJoCo can only render offscreen; choose EGL before anything
    # imports mujoco, unless the user picked a backend (MUJOCO_GL=osmesa, ...).
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("MUJOCO_GL", "egl")
    # click's ClickException (typer may vendor its own copy of click)
    click_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    command = typer.main.get_command(app)
    try:
        code = command.main(args=sys.argv[1:], prog_name="tt-tui", standalone_mode=False)
    except click_error as exc:  # bad flags and arguments: one line like every other error
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":  # no command given: the help, exit 0
            if exc.format_message().strip():  # plain (non-rich) mode carries the help text
                typer.echo(exc.format_message())
            sys.exit(0)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        typer.echo(f"error: {' '.join(exc.format_message().split())}{hint}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:  # a Ctrl+C in one of click's prompts
        code = 130
    if code == 130 and not exits.closing_line_said:  # typer made a Ctrl+C outside a command a silent 130
        typer.echo("interrupted", err=True)
    sys.exit(code if isinstance(code, int) else 0)

