"""`tt-tui loss`: how well trained models predict a dataset (held-out cross-entropy per token kind)."""

from __future__ import annotations

from pathlib import Path

import typer

from tt_tui.cli.exits import user_errors


def _penalty(text: str):
    """--termination-penalty: keep (the model's own), none, or a number (checked as the
    config's dataset.termination_penalty is)."""
    from tt_core.config import checked_value
    from tt_core.train.heldout import KEEP

    value = text.strip().lower()
    if value == KEEP:
        return KEEP
    if value in ("none", "null"):
        return None
    return checked_value("dataset.termination_penalty", text, "--termination-penalty")


@user_errors
def loss(
    models: list[Path] = typer.Argument(..., help="Run directories, checkpoints or seed-format model folders."),
    dataset: str = typer.Option(..., "--dataset", help="Minari dataset id to score them on, e.g. a held-out one."),
    termination_penalty: str = typer.Option(
        "keep", "--termination-penalty",
        help="Reward of terminal steps before values are computed: keep (each model's own), none, or a number."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per model, for scripts."),
) -> None:
    """Cross-entropy (nats) per token kind of each model on every whole window of DATASET."""
    import json

    from tt_tui.console import Console
    from rich.table import Table

    from tt_core.train.heldout import KINDS, heldout_loss

    penalty = _penalty(termination_penalty)
    notify = (lambda text: typer.echo(text, err=True))
    results = [heldout_loss(path, dataset, penalty, notify=notify) for path in models]
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in results], indent=2, allow_nan=False))
        return
    table = Table(box=None, pad_edge=False, title=f"cross-entropy in nats per token on {dataset}")
    for col in ("model", "windows", "penalty", *KINDS):
        table.add_column(col, no_wrap=True, justify="left" if col == "model" else "right")
    for r in results:
        penalty_text = "none" if r.termination_penalty is None else f"{r.termination_penalty:g}"
        table.add_row(r.model, str(r.windows), penalty_text, *(f"{getattr(r, k):.3f}" for k in KINDS))
    console = Console(highlight=False)
    console.width = max(console.width, 120)
    console.print(table)
