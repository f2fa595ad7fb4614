"""`tt-tui report`: the results table (and figures) of runs, groups or folders of runs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tt_tui.cli.exits import user_errors

FORMATS = ("table", "md", "latex", "csv")


@user_errors
def report(
    targets: list[str] = typer.Argument(..., help="Run directories, folders of runs, or groups (train.group)."),
    fmt: str = typer.Option("table", "--format", help="table (the terminal), md, latex or csv."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the table to this file (.md, .tex or .csv, or --format)."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Write the figures (PNG and SVG) into this folder."),
    reference: bool = typer.Option(False, "--reference", help="Add the published scores of the pretrained "
                                   "manifests for the same envs (the TT paper's)."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where groups are looked up."),
) -> None:
    """Mean ± standard error of the final evaluations of finished runs, per dataset, env
    and planning setting, over seeds and episodes; read from the runs' files only."""
    from tt_core.errors import ConfigError
    from tt_core.outputs import output_file, output_folder
    from tt_core.runs.report import find_runs, run_result, table_rows, to_csv, to_latex, to_markdown

    if fmt not in FORMATS:
        raise ConfigError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if out is not None and fmt == "table":  # the file's name says the format
        fmt = {".md": "md", ".tex": "latex", ".csv": "csv"}.get(out.suffix, "")
        if not fmt:
            raise ConfigError(f"--out {out}: name a .md, .tex or .csv file, or give --format md|latex|csv")
    out_file = output_file(out, "--out") if out is not None else None  # both checked before any reading
    plots_dir = output_folder(plots, "--plots") if plots is not None else None
    results = []
    for run in find_runs(targets, runs_dir):
        result, skipped = run_result(run)
        if result is None:
            typer.echo(f"skipped {run}: {skipped}", err=True)
        else:
            results.append(result)
    if not results:
        raise ConfigError("no finished run with an evaluation among them: nothing to report")
    rows = table_rows(results)
    references = _references({row.env for row in rows}) if reference else []
    if fmt == "table":
        _print_table(rows, references)
    else:
        text = {"md": to_markdown, "latex": to_latex, "csv": lambda r, _: to_csv(r)}[fmt](rows, references)
        if out_file is None:
            typer.echo(text, nl=False)
        else:
            out_file.write(text)
            typer.echo(f"table written to {out}", err=True)
    if plots_dir is not None:
        from tt_core.runs.plots import write_plots

        for path in write_plots(rows, plots_dir):
            typer.echo(f"figure written to {path}", err=True)


def _references(envs: set[str]) -> list:
    """The pretrained manifests' published scores for `envs`."""
    from tt_core.errors import TTError
    from tt_core.pretrained.catalog import catalog
    from tt_core.runs.report import Reference

    try:
        manifests = catalog()
    except TTError as exc:  # the checkout's pretrained/ folder missing or damaged: the table still stands
        typer.echo(f"warning: --reference: {exc}; the table has no published rows", err=True)
        return []
    return [Reference(m.env_id, f"{s.what} ({m.dataset})", s.mean, s.error)
            for m in manifests if m.env_id in envs for s in m.scores]


def _print_table(rows: list, references: list) -> None:
    from tt_tui.console import Console
    from rich.table import Table

    def pm(stats) -> str:
        return "-" if stats is None else f"{stats.mean:.1f} ± {stats.sem:.1f} (std {stats.std:.1f})"

    table = Table(box=None, pad_edge=False)
    numbers = ("seeds", "episodes", "failed")
    for col in ("dataset", "env", "group", "setting", *numbers, "score ± sem", "return ± sem", "seed spread"):
        table.add_column(col, no_wrap=col in numbers, justify="right" if col in numbers else "left")
    for row in rows:
        spread = "-" if row.seed_spread is None else f"{row.seed_spread:.1f}"
        table.add_row(row.dataset, row.env, row.group, row.setting, str(row.seeds), str(row.episodes),
                      str(row.failed), pm(row.scores), pm(row.returns), spread)
    for ref in references:
        error = "" if ref.error is None else f" ± {ref.error:.1f}"
        table.add_row(ref.what, ref.env, "", "published", "", "", "", f"{ref.mean:.1f}{error}", "", "")
    console = Console(highlight=False)
    console.width = max(console.width, 160)
    console.print(table)
