"""`tt-tui pretrained` (list) and `tt-tui pretrained fetch`: the pinned published models."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tt_tui.cli.exits import user_errors


@user_errors
def pretrained_list(
    ctx: typer.Context,
    folder: Optional[Path] = typer.Option(None, "--dir", help="Catalog folder (default: this clone's pretrained/)."),
) -> None:
    """List the pinned models: downloaded or not, size, source and published scores."""
    if ctx.invoked_subcommand is not None:
        return
    from tt_tui.console import Console
    from rich.table import Table

    from tt_core.pretrained.catalog import REPO_CATALOG, catalog, file_state

    root = folder or REPO_CATALOG
    table = Table(title=f"pretrained models in {root}", box=None, pad_edge=False)
    for col in ("model", "dataset", "env", "era", "files", "score"):
        table.add_column(col)
    notes: dict[str, None] = {}
    for m in catalog(root):
        for era in sorted(m.eras.values(), key=lambda e: e.name != m.default_era):
            states = [file_state(m, era, f) for f in era.files]
            have = states.count("verified")
            if have == len(states):
                size = sum((m.era_dir(era) / f.name).stat().st_size for f in era.files)
                files = f"downloaded, {size / 1e6:.1f} MB"
            else:
                files = f"{have}/{len(states)} files" + (", one changed" if "changed" in states else "")
            scores = ", ".join(
                f"{s.mean:.1f}" + (f" ± {s.error:.1f}" if s.error is not None else "") for s in m.scores
            )
            default = m.default_era == era.name
            table.add_row(*(m.name, m.dataset, m.env_id) if default else ("", "", ""),
                          era.name + ("*" if default else ""), files, scores or "-")
            notes[f"source: {m.repository} at {era.commit[:7]} ({era.name}), licence {m.license}"] = None
        notes.update({f"score: {s.what}": None for s in m.scores})
    console = Console(highlight=False)
    console.width = max(console.width, 100)  # pipes get 80 columns: too few for dataset ids
    console.print(table)
    typer.echo("* default era (pretrained/NAME); another era: pretrained/NAME/NAME-ERA")
    for line in notes:
        typer.echo(line)
    typer.echo("fetch ahead of use: tt-tui pretrained fetch NAME (or --all); "
               "eval/record fetch on first use")


@user_errors
def pretrained_fetch(
    names: Optional[list[str]] = typer.Argument(None, help="Model names (see `tt-tui pretrained`)."),
    all_models: bool = typer.Option(False, "--all", help="Every model in the catalog."),
    era: Optional[str] = typer.Option(None, "--era", help="An era name, or all (default: each model's default era)."),
    folder: Optional[Path] = typer.Option(None, "--dir", help="Catalog folder (default: this clone's pretrained/)."),
) -> None:
    """Download pinned models ahead of time; every file is verified by its git blob id."""
    from tt_core.errors import ConfigError
    from tt_core.pretrained.catalog import REPO_CATALOG, catalog, fetch
    from tt_tui.headless import DownloadReporter

    models = {m.name: m for m in catalog(folder or REPO_CATALOG)}
    if all_models == bool(names):
        raise ConfigError("give model NAMEs or --all (not both); `tt-tui pretrained` lists them")
    if unknown := [n for n in names or [] if n not in models]:
        raise ConfigError(f"no pretrained model {unknown[0]!r} (available: {', '.join(models)})")
    for m in [models[n] for n in names] if names else models.values():
        if era is not None and era != "all" and era not in m.eras:
            raise ConfigError(f"--era: {m.name} has no era {era!r} (available: {', '.join(m.eras)}, all)")
        for e in m.eras.values() if era == "all" else [m.era(era)]:
            with DownloadReporter() as reporter:
                path = fetch(m, e, on_progress=reporter)
            typer.echo(f"{m.name} {e.name}: ready in {path}")
