"""`tt-tui behaviour train` and `tt-tui behaviour datasets`: behaviour policies of known
quality (Stable-Baselines3 SAC) and the D4RL-style datasets cut from them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tt_tui.cli.exits import user_errors


@user_errors
def behaviour_train(
    env_id: Optional[str] = typer.Argument(None, help="Gymnasium env id, e.g. Hopper-v5 (not with --resume)."),
    out: Optional[Path] = typer.Option(None, "--out", help="New folder for the policies, their returns and the replay buffer."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="A behaviour run to continue up to --steps in all."),
    steps: int = typer.Option(150_000, "--steps", min=1, help="Environment steps (the budget)."),
    seed: int = typer.Option(0, "--seed"),
    save_every: int = typer.Option(10_000, "--save-every", min=1, help="Save and measure the policy every N steps."),
    eval_episodes: int = typer.Option(5, "--eval-episodes", min=1, help="Episodes per measurement."),
    learning_starts: int = typer.Option(10_000, "--learning-starts", min=1, help="Random steps before SAC learns."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch threads (SAC's small networks run best on one)."),
) -> None:
    """Train a SAC behaviour policy, saving it with its measured return every N steps."""
    from tt_core.config import check_limit
    from tt_core.controls import Controls
    from tt_core.data.behaviour import resume_behaviour, train_behaviour
    from tt_core.device import set_compute_threads
    from tt_core.errors import ConfigError
    from tt_tui.cli.foreground import stop_on_signals

    if (resume is None) == (env_id is None or out is None):
        raise ConfigError("give ENV_ID and --out for a new run, or --resume RUN_DIR alone")
    check_limit("dataset.collect.steps", steps, "--steps")
    check_limit("dataset.collect.seed", seed, "--seed")
    set_compute_threads(threads, "cpu")  # SAC runs on the CPU
    controls = Controls()
    stop_on_signals(controls)
    stop = lambda: controls.stop_requested  # noqa: E731
    if resume is not None:
        run, out = resume_behaviour(resume, steps, notify=typer.echo, should_stop=stop), resume
    else:
        run = train_behaviour(env_id, out, steps, seed=seed, save_every=save_every,
                              eval_episodes=eval_episodes, learning_starts=learning_starts,
                              notify=typer.echo, should_stop=stop)
    best = run.best()
    state = "finished" if run.finished else f"stopped at step {run.steps_done}"
    typer.echo(f"{out}: {state} in {run.wall_s / 60:.1f} min; best return {best.mean_return:.1f} "
               f"at step {best.step}; next: tt-tui behaviour datasets {out} --name NAME")


@user_errors
def behaviour_datasets(
    run_dir: Path = typer.Argument(..., help="A folder made by `tt-tui behaviour train`."),
    name: str = typer.Option(..., "--name", help="Dataset name: local/NAME/medium-v0, ..."),
    steps: int = typer.Option(100_000, "--steps", min=1, help="Steps of the medium and expert datasets."),
    ref_episodes: int = typer.Option(20, "--ref-episodes", min=1, help="Episodes measuring each reference score."),
    seed: int = typer.Option(0, "--seed"),
    which: list[str] = typer.Option(["medium", "medium-replay", "expert"], "--which",
                                    help="Datasets to make (medium, medium-replay, expert)."),
) -> None:
    """Cut local/NAME/{medium,medium-replay,expert}-v0 from a behaviour run, with D4RL reference scores."""
    from tt_core.config import check_limit
    from tt_core.controls import Controls
    from tt_core.data.behaviour_datasets import make_behaviour_datasets
    from tt_tui.cli.foreground import stop_on_signals

    check_limit("dataset.collect.steps", steps, "--steps")
    check_limit("dataset.collect.seed", seed, "--seed")
    controls = Controls()
    stop_on_signals(controls, announce=False)
    made = make_behaviour_datasets(run_dir, name, steps=steps, ref_episodes=ref_episodes, seed=seed,
                                   which=which, notify=typer.echo,
                                   should_stop=lambda: controls.stop_requested)
    for info in made:
        typer.echo(f"wrote {info.id}: {info.episodes} episodes, {info.steps} steps, mean return "
                   f"{info.mean_return:.1f} (normalized {info.reference.normalize(info.mean_return):.1f})")
