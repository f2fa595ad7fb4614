"""`tt-tui collect` and `tt-tui datasets`: local Minari datasets."""

from __future__ import annotations

import typer

from tt_tui.cli.exits import one_line, user_errors


@user_errors
def collect(
    env_id: str = typer.Argument(..., help="Gymnasium env id, e.g. Hopper-v5."),
    dataset_id: str = typer.Option(..., "--dataset-id", help="Minari id, e.g. local/hopper/random-v0."),
    steps: int = typer.Option(100_000, "--steps", min=1, help="Environment steps to record."),
    policy: str = typer.Option("random", "--policy",
                               help="random, or the path of a Stable-Baselines3 policy zip (RL Zoo, tt-tui behaviour train)."),
    seed: int = typer.Option(0, "--seed"),
    deterministic: bool = typer.Option(False, "--deterministic",
                                       help="An SB3 policy's mean action (default: sampled, as D4RL recorded)."),
) -> None:
    """Record a local Minari dataset by running a policy in a real environment."""
    from tt_core.controls import Controls
    from tt_core.data.minari_io import collect_dataset
    from tt_core.config import check_limit
    from tt_tui.cli.foreground import stop_on_signals

    check_limit("dataset.collect.policy", policy, "--policy")
    check_limit("dataset.collect.steps", steps, "--steps")
    check_limit("dataset.collect.seed", seed, "--seed")
    controls = Controls()
    stop_on_signals(controls, announce=False)  # Ctrl+C: stop at the next check, even mid-write
    info = collect_dataset(env_id, dataset_id, steps=steps, policy=policy, seed=seed,
                           should_stop=lambda: controls.stop_requested, deterministic=deterministic)
    typer.echo(
        f"wrote {info.id}: {info.episodes} episodes, {info.steps} steps, "
        f"mean return {info.mean_return:.1f}"
    )


@user_errors
def datasets() -> None:
    """List local Minari datasets."""
    from tt_core.data.minari_io import list_datasets

    rows = list_datasets()
    if not rows:
        typer.echo("no local datasets (run `tt-tui collect` or set MINARI_DATASETS_PATH)")
        return
    header = f"{'id':<40} {'env':<20} {'episodes':>9} {'steps':>10} {'mean return':>12}  reference min / max"
    typer.echo(header)
    for r in rows:
        if r.damaged is not None:
            typer.echo(f"{r.id:<40} damaged: {one_line(r.damaged)} (remove the folder, then collect it again)")
            continue
        if r.unreadable is not None:
            typer.echo(f"{r.id:<40} cannot be read by this install: {one_line(r.unreadable)}")
            continue
        refs = "" if r.ref_min_score is None or r.ref_max_score is None else \
            f"  {r.ref_min_score:.1f} / {r.ref_max_score:.1f}"
        typer.echo(
            f"{r.id:<40} {str(r.env_id):<20} {r.episodes:>9} {r.steps:>10} {r.mean_return:>12.1f}{refs}"
        )
