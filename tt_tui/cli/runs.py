"""`tt-tui runs` and `tt-tui show`: the runs under a folder, and one run read back."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tt_tui.cli.exits import user_errors
from tt_tui.cli.foreground import use_app


@user_errors
def runs(
    folder: Path = typer.Argument(Path("runs"), help="Folder of run directories."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per run, for scripts."),
) -> None:
    """List the runs under FOLDER, newest first: data, progress, loss, evaluations, state."""
    import json

    from rich.console import Console
    from rich.table import Table

    from tt_core.runs.listing import list_runs, started_text

    rows = list_runs(folder)
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in rows], indent=2, allow_nan=False))
        return
    if not rows:
        typer.echo(f"no runs under {folder}/ (train one: tt-tui train configs/quickstart.yaml)")
        return

    def evaluation(e: Optional[dict]) -> str:
        if not e:
            return "-"
        value = f"score {e['score']:.1f}" if e["score"] is not None else f"return {e['return']:.1f}"
        return f"{value} @{e['step']}" if e["step"] is not None else value

    table = Table(box=None, pad_edge=False)
    for col in ("started", "state", "steps", "loss", "last eval", "best eval", "dataset", "env", "run"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        steps = f"{r.step if r.step is not None else '-'}/{r.total_steps if r.total_steps is not None else '-'}"
        loss = "-" if r.last_loss is None else f"{r.last_loss:.3f}"
        table.add_row(started_text(r), r.state, steps, loss, evaluation(r.last_eval),
                      evaluation(r.best_eval), r.dataset or "-", r.env or "-", Path(r.path).name)
    console = Console(highlight=False)
    console.width = max(console.width, 160)  # run names are long; pipes get 80 columns
    console.print(table)


@user_errors
def show(run: Path = typer.Argument(..., help="A run directory (tt-tui runs lists them).")) -> None:
    """Open the dashboard on a run, read-only: its whole history, followed live while it
    trains (here, under torchrun or elsewhere on a shared disk). q leaves it untouched."""
    from tt_core.errors import CheckpointError, ConfigError
    from tt_core.jobs.show import show_job

    if not run.exists():
        raise CheckpointError(f"{run}: no such run directory")
    job = show_job(run)  # not a run directory: exit 3, one line
    if not use_app(False):
        raise ConfigError("tt-tui show draws the dashboard and needs a terminal; for scripts, "
                          "`tt-tui runs --json` or the run's metrics.jsonl")
    from tt_core.jobs.thread import JobThread
    from tt_tui.app import TTApp

    engine = JobThread(job)
    TTApp(engine, "train", read_only=True).run()
    engine.stop(timeout=5)
