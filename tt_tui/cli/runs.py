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
    group: bool = typer.Option(False, "--group", help="One line per group of runs (train.group, e.g. --seeds)."),
) -> None:
    """List the runs under FOLDER, newest first: data, progress, loss, evaluations, state."""
    import json

    from tt_tui.console import Console
    from rich.table import Table

    from tt_core.runs.listing import list_runs, scan_runs, started_text

    if group:
        _print_groups(scan_runs(folder))
        return
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


def _print_groups(scanned: list) -> None:
    """Per group: its runs' states and the pooled final score (or return) over its seeds."""
    from collections import Counter

    from tt_core.runs.listing import DAMAGED
    from tt_core.runs.report import result_of, table_rows

    groups: dict[str, list] = {}
    for summary, files in scanned:
        if summary.group is not None:
            groups.setdefault(summary.group, []).append((summary, files))
        elif files is None or summary.state == DAMAGED:  # its group cannot be told: name it rather than drop it
            typer.echo(f"{Path(summary.path).name}  {summary.state} ({summary.why}), in no group that can be told")
    if not groups:
        typer.echo("no groups of runs here (train several seeds as one: tt-tui train CONFIG --seeds 3)")
        return
    for name, members in groups.items():
        states = ", ".join(f"{n} {state}" for state, n in Counter(s.state for s, _ in members).items())
        results = [res for res, _ in (result_of(files, summary) for summary, files in members) if res is not None]
        result = "no finished evaluation"
        if results:
            result = "; ".join(_pooled(row) for row in table_rows(results))
        first = members[0][0]
        typer.echo(f"{name}  {len(members)} runs ({states})  {result}  {first.dataset or '-'}  {first.env or '-'}")


def _pooled(row) -> str:
    stats, what = (row.scores, "score") if row.scores else (row.returns, "return")
    return f"{what} {stats.mean:.1f} ± {stats.sem:.1f} over {row.seeds} seeds, {row.episodes} episodes ({row.setting})"


@user_errors
def show(
    targets: list[str] = typer.Argument(..., help="A run directory (tt-tui runs lists them); several, or a "
                                        "group or folder of runs: side by side."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where groups are looked up."),
) -> None:
    """Open the dashboard on a run, read-only: its whole history, followed live while it
    trains (here, under torchrun or elsewhere on a shared disk). q leaves it untouched.
    Several runs (or a group): their loss and evaluation curves side by side."""
    from tt_core.errors import CheckpointError, ConfigError
    from tt_core.jobs.show import show_job
    from tt_core.runs.report import find_runs

    one = Path(targets[0])
    if len(targets) == 1 and (one / "metrics.jsonl").exists():
        job = show_job(one)
    elif len(targets) == 1 and not one.exists() and ("/" in targets[0] or not runs_dir.is_dir()):
        raise CheckpointError(f"{one}: no such run directory")
    else:
        job, runs = None, find_runs(targets, runs_dir)  # nothing found: exit 2, one line
        if not runs:
            raise CheckpointError(f"{' '.join(targets)}: no run directories there")
    if not use_app(False):
        raise ConfigError("tt-tui show draws the dashboard and needs a terminal; for scripts, "
                          "`tt-tui runs --json`, `tt-tui report` or the runs' metrics.jsonl")
    if job is None:
        from tt_tui.compare import CompareApp

        CompareApp(runs).run()
        return
    from tt_core.jobs.thread import JobThread
    from tt_tui.app import TTApp

    engine = JobThread(job)
    TTApp(engine, "train", read_only=True).run()
    engine.stop(timeout=5)
