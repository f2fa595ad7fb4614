"""The `tt-tui` command.

Exit codes: 0 ok, 1 internal error (a bug: rerun with --debug for the traceback),
2 usage / config error, 3 data or checkpoint error, 130 interrupted.
"""

from __future__ import annotations

import enum
import functools
import os
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
pretrained_app = typer.Typer(help="The seed project's published models: list and fetch (verified).")
app.add_typer(pretrained_app, name="pretrained")

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
        from tt_core.errors import PeerLost, TTError, as_user_error

        try:
            return fn(*args, **kwargs)
        except TTError as exc:
            if _DEBUG:
                traceback.print_exc()
            if isinstance(exc, PeerLost):
                _exit_peer_lost(exc.exit_code)
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # a full or read-only disk, else a bug: one line unless --debug
            if _DEBUG:
                traceback.print_exc()
            user = as_user_error(exc)
            if isinstance(user, PeerLost):
                _exit_peer_lost(user.exit_code)
            if user is not None:
                _fail(str(user), user.exit_code)
            _fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug)", 1)

    return wrapper


def _exit_peer_lost(code: int) -> None:
    """Leave at once and quietly: the launcher names the rank that died. A normal exit
    would tear down the collective backend's threads mid-operation and abort noisily."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _stop_on_sigint(controls, announce: bool = True) -> None:
    """First Ctrl+C asks the job to stop cleanly (and save); a second one aborts.
    `announce`: say so (rank 0 of a distributed job only)."""

    def handler(signum, frame):
        if controls.stop_requested:
            raise KeyboardInterrupt
        if announce:
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
    nproc: int = typer.Option(1, "--nproc", min=1, help="Processes on this machine (torch.distributed.run: nccl on CUDA, gloo on CPU)."),
) -> None:
    """Train a Trajectory Transformer (or resume a run)."""
    from tt_core.runs.checkpoint import RunFiles, find_run_root
    from tt_core.config import load_config
    from tt_core.distributed import join, launched_by_torchrun, leave
    from tt_core.jobs.factories import train_job
    from tt_core.errors import CheckpointError, ConfigError

    overrides = list(overrides or [])
    if config is not None and "=" in config.name:
        overrides.insert(0, str(config))  # `tt-tui train --resume RUN train.max_steps=10`
        config = None
    if resume is not None:
        if config is not None:
            raise ConfigError("--resume takes its config from the run directory; drop CONFIG")
        run_files = RunFiles(find_run_root(resume)[0])  # a missing run: exit 3, one line
        if not run_files.config.exists():
            raise CheckpointError(f"{run_files.config}: missing (not a tt-tui run directory?)")
        cfg = load_config(run_files.config, overrides, saved_run=True)
    elif config is None:
        raise ConfigError("give a CONFIG file (e.g. configs/quickstart.yaml) or --resume RUN_DIR")
    else:
        cfg = load_config(config, overrides)
    if device is not None:
        cfg.train.device = device
    from tt_core.device import resolve_device

    resolve_device(cfg.train.device)  # an unknown or absent device: one line before anything starts
    if nproc > 1:
        if launched_by_torchrun():
            raise ConfigError("--nproc: this process was started by torchrun already; drop --nproc")
        if cfg.train.batch_size % nproc:
            raise ConfigError(f"train.batch_size: {cfg.train.batch_size} does not split evenly over "
                              f"--nproc {nproc} processes (it is the global batch)")
        if resume is not None:  # said once here, not once per rank
            from tt_core.train.trainer import check_resume_compatible

            check_resume_compatible(load_config(run_files.config, saved_run=True), cfg)
        _launch_local(nproc)
        return

    world = join(cfg.train.device)
    try:
        # the app needs the terminal's own session; ranks run in sessions of their own
        if world.main and not world.distributed and _use_app(headless):
            _run_app(train_job(cfg, resume=resume, watch=True, world=world), "train")
            return
        from tt_tui.headless import HeadlessReporter, SilentReporter

        reporter = HeadlessReporter() if world.main else SilentReporter()
        _run_job(train_job(cfg, resume=resume, world=world), reporter, announce=world.main)
    finally:
        leave()


SHUTDOWN_GRACE_S = 600


def _launch_local(nproc: int) -> None:
    """This command again in `nproc` processes, through torch.distributed.run (what
    `torchrun --standalone --nproc-per-node N` does). Each rank prints its own errors;
    a rank that dies stops the others, and this says which one, in one line."""
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    from tt_core.distributed import PEER_LOST_EXIT

    argv, skip = [], False
    for arg in sys.argv[1:]:  # the same command line without --nproc
        if skip or arg.startswith("--nproc="):
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        argv.append(arg)
    for name in list(logging.root.manager.loggerDict):  # the launcher's notices: our own lines instead
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    # one share of the cores per rank (torchrun would set 1 and warn)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    args = get_args_parser().parse_args(
        # ranks get SHUTDOWN_GRACE_S to save after a Ctrl+C (torchrun's default: 30 s)
        ["--standalone", f"--nproc-per-node={nproc}", f"--shutdown-timeout={SHUTDOWN_GRACE_S}",
         "--module", "tt_tui.cli", *argv]
    )
    try:
        run(args)
    except SignalException as exc:  # Ctrl+C: forwarded to every rank, which stop after a checkpoint
        if exc.sigval != signal.SIGINT:
            raise typer.Exit(128 + int(exc.sigval))
        return
    except ChildFailedError as exc:
        failures = sorted(exc.failures.items(), key=lambda kv: kv[1].timestamp)
        cause = next(((r, f) for r, f in failures if f.exitcode != PEER_LOST_EXIT), None)
        if cause is None:
            _fail("the ranks lost contact with each other (a network fault?); the newest checkpoint "
                  "in the run directory is complete", PEER_LOST_EXIT)
        rank, failure = cause
        if failure.exitcode > 0:  # the rank said what went wrong itself, in one line
            raise typer.Exit(failure.exitcode)
        try:
            how = f"killed by {signal.Signals(-failure.exitcode).name}"
        except ValueError:
            how = f"ended with code {failure.exitcode}"
        _fail(f"rank {rank} (pid {failure.pid}) {how}; the other ranks were stopped "
              "(the newest checkpoint in the run directory is complete)", PEER_LOST_EXIT)


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
    if seed < 0:
        raise ConfigError(f"--seed: {seed} must be >= 0")
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


@app.command()
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


@app.command()
@user_errors
def show(run: Path = typer.Argument(..., help="A run directory (tt-tui runs lists them).")) -> None:
    """Open the dashboard on a run, read-only: its whole history, followed live while it
    trains (here, under torchrun or elsewhere on a shared disk). q leaves it untouched."""
    from tt_core.errors import CheckpointError, ConfigError
    from tt_core.jobs.show import show_job

    if not run.exists():
        raise CheckpointError(f"{run}: no such run directory")
    job = show_job(run)  # not a run directory: exit 3, one line
    if not _use_app(False):
        raise ConfigError("tt-tui show draws the dashboard and needs a terminal; for scripts, "
                          "`tt-tui runs --json` or the run's metrics.jsonl")
    from tt_core.jobs.thread import JobThread
    from tt_tui.app import TTApp

    engine = JobThread(job)
    TTApp(engine, "train", read_only=True).run()
    engine.stop(timeout=5)


class FttBlock(str, enum.Enum):
    """Residual layout of an FTT-format checkpoint (see README: FTT-format checkpoints)."""

    norm_residual = "norm-residual"  # models trained before upstream's block fix (its issue #3)
    pre_norm = "pre-norm"  # models trained after it


_FTT_BLOCK_OPTION = typer.Option(
    None, "--ftt-block",
    help="FTT-format dirs only: norm-residual (before upstream's block fix) or pre-norm "
    "(after it). Default: told from the model file (published files are known).",
)


def _writable_folder(folder: Path, what: str) -> None:
    """Fail before any planning, not after it, when `folder` cannot take new files."""
    import tempfile

    from tt_core.errors import OutputError

    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{what} {folder}: is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".tt-tui-probe-"):
            pass
    except OSError as exc:
        raise OutputError(f"{what} {folder}: not writable ({exc.strerror or exc})") from None


# The planning flags of eval and record, defined once: flag -> the config key it sets.
PLAN_FLAGS = {
    "--beam-width": "plan.beam_width", "--beam-steps": "plan.beam_steps",
    "--beam-context": "plan.beam_context", "--expand": "plan.sample_expand",
    "--plan-every": "plan.plan_every", "--dtype": "plan.dtype", "--episodes": "eval.episodes",
    "--max-steps": "eval.max_steps", "--seed": "eval.seed", "--vector": "eval.vector",
    "--k-obs": "plan.k_obs", "--k-act": "plan.k_act", "--k-reward": "plan.k_reward",
    "--cdf-obs": "plan.cdf_obs", "--cdf-act": "plan.cdf_act", "--temperature": "plan.temperature",
    "--discount": "plan.discount",
}
# Sampling knobs that can be switched off: a number, or "none".
_OFF = ("none", "null")
_BEAM_WIDTH = typer.Option(None, "--beam-width", help="Beams kept per env.")
_BEAM_STEPS = typer.Option(None, "--beam-steps", help="Transitions planned ahead.")
_BEAM_CONTEXT = typer.Option(None, "--beam-context", help="Transitions of history the plan sees.")
_EXPAND = typer.Option(None, "--expand", help="Candidates sampled per beam.")
_PLAN_EVERY = typer.Option(None, "--plan-every", help="Plan every N env steps.")
_DTYPE = typer.Option(None, "--dtype", help="Planning precision: fp32 (exact) or bf16.")
_MAX_STEPS = typer.Option(None, "--max-steps", help="Env steps per episode at most.")
_SEED = typer.Option(None, "--seed", help="Seed of the first episode (then +1 each).")
_DEVICE = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N, mps.")
_VECTOR = typer.Option(None, "--vector", help="sync (default) or async envs.")
_K_OBS = typer.Option(None, "--k-obs", help="Top-k of observation tokens (1 = greedy), or none.")
_K_ACT = typer.Option(None, "--k-act", help="Top-k of action tokens, or none.")
_K_REWARD = typer.Option(None, "--k-reward", help="Top-k of reward and value tokens (1 = greedy), or none.")
_CDF_OBS = typer.Option(None, "--cdf-obs", help="Drop the observation tail holding this mass (0..1), or none.")
_CDF_ACT = typer.Option(None, "--cdf-act", help="Drop the action tail holding this mass (0..1), or none.")
_TEMPERATURE = typer.Option(None, "--temperature", help="Divides every token's logits.")
_DISCOUNT = typer.Option(None, "--discount", help="Discount of the plan's score.")


def _planning_args(
    command: str, run: Optional[Path], device: Optional[str], params: dict
) -> tuple[Optional[Path], list[str]]:
    """What eval and record check before any model is loaded or app opened: RUN, --device
    and the planning flags (a bad one: one line, exit 2 or 3). `params` are the command's
    parameters; those of PLAN_FLAGS that were given become dotted overrides, checked like
    a config file."""
    from tt_core.config import Config, apply_overrides

    run = _run_argument(run, command)
    _check_device(device)
    keys = {key.rsplit(".", 1)[1]: key for key in PLAN_FLAGS.values()}
    assert keys.keys() <= params.keys(), f"{command} lacks planning parameters {keys.keys() - params.keys()}"
    overrides = [
        f"{keys[k]}={'null' if str(params[k]).lower() in _OFF else params[k]}"
        for k in keys if params[k] is not None
    ]
    apply_overrides(Config(), overrides)
    return run, overrides


def _check_device(device: Optional[str]) -> None:
    """--device checked on the command line (unknown, or absent here: one line, exit 2)."""
    from tt_core.device import resolve_device

    resolve_device(device or "auto")


def _run_argument(run: Optional[Path], command: str) -> Optional[Path]:
    """RUN as given, or one line before anything starts: a dotted override in its place
    (eval/record take flags), or a path that does not exist."""
    from tt_core.errors import CheckpointError, ConfigError
    from tt_core.pretrained.catalog import locate

    if run is None:
        return None
    text = str(run)
    if "=" in text and not run.exists():
        key, _, value = text.partition("=")
        flag = next((f for f, k in PLAN_FLAGS.items() if k == key), None)
        hint = f" (here: {flag} {value})" if flag else f" ({', '.join(PLAN_FLAGS)})"
        raise ConfigError(f"{text}: {command} takes flags, not dotted overrides{hint}")
    if not run.exists() and locate(run) is None:
        raise CheckpointError(f"{run}: no such run directory")
    return run


@app.command("eval")
@user_errors
def eval_cmd(
    run: Optional[Path] = typer.Argument(
        None, help="Run dir, checkpoint dir or FTT-format pretrained dir (default: newest under runs/)."
    ),
    beam_width: Optional[int] = _BEAM_WIDTH,
    beam_steps: Optional[int] = _BEAM_STEPS,
    beam_context: Optional[int] = _BEAM_CONTEXT,
    sample_expand: Optional[int] = _EXPAND,
    dtype: Optional[str] = _DTYPE,
    plan_every: Optional[int] = _PLAN_EVERY,
    episodes: Optional[int] = typer.Option(None, "--episodes", help="Episodes (default: the run's eval.episodes)."),
    max_steps: Optional[int] = _MAX_STEPS,
    seed: Optional[int] = _SEED,
    device: Optional[str] = _DEVICE,
    vector: Optional[str] = _VECTOR,
    k_obs: Optional[str] = _K_OBS,
    k_act: Optional[str] = _K_ACT,
    k_reward: Optional[str] = _K_REWARD,
    cdf_obs: Optional[str] = _CDF_OBS,
    cdf_act: Optional[str] = _CDF_ACT,
    temperature: Optional[float] = _TEMPERATURE,
    discount: Optional[float] = _DISCOUNT,
    headless: bool = typer.Option(False, "--headless"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write results as JSON here."),
    ftt_block: Optional[FttBlock] = _FTT_BLOCK_OPTION,
    nproc: int = typer.Option(1, "--nproc", min=1, help="Processes on this machine, each playing a share of the episodes."),
) -> None:
    """Evaluate a trained model: N episodes planned in parallel, scores and speed."""
    from tt_core.distributed import join, launched_by_torchrun, leave

    block = ftt_block.value if ftt_block else None
    if nproc > 1 and launched_by_torchrun():
        from tt_core.errors import ConfigError

        raise ConfigError("--nproc: this process was started by torchrun already; drop --nproc")
    if json_out is not None:
        if json_out.is_dir():
            from tt_core.errors import OutputError

            raise OutputError(f"--json {json_out}: is a directory, not a file")
        _writable_folder(json_out.parent, "--json")
    run, overrides = _planning_args("eval", run, device, locals())
    if nproc > 1:
        run = _planning_source(run)  # fetched once, before the ranks start
        _launch_local(nproc)
        return
    from tt_core.jobs.factories import eval_job

    world = join(device or "auto")
    try:
        with world.main_first():  # rank 0 fetches a pretrained model; the others read it
            run = _planning_source(run)
        if world.main and not world.distributed and _use_app(headless):  # records (r), beam tree
            reporter = _run_app(eval_job(run, overrides, device, ftt_block=block, world=world,
                                         record_dir=Path("recordings"), snapshots=True), "eval")
        elif world.main:
            reporter = _run_eval(eval_job(run, overrides, device, ftt_block=block, world=world))
        else:
            from tt_tui.headless import SilentReporter

            _run_job(eval_job(run, overrides, device, ftt_block=block, world=world), SilentReporter(),
                     announce=False)
            return
    finally:
        leave()
    if json_out is not None:
        import json

        json_out.write_text(json.dumps(reporter.report, indent=2))
        typer.echo(f"results written to {json_out}", err=True)


@app.command()
@user_errors
def record(
    run: Optional[Path] = typer.Argument(None, help="Run/pretrained dir (default: newest under runs/)."),
    episodes: int = typer.Option(3, "--episodes", min=1),
    out: Path = typer.Option(Path("recordings"), "--out", help="Folder for the GIFs."),
    fps: int = typer.Option(30, "--fps", min=1, max=100),
    size: int = typer.Option(256, "--size", min=32, max=2048, help="Frame width and height."),
    beam_width: Optional[int] = _BEAM_WIDTH,
    beam_steps: Optional[int] = _BEAM_STEPS,
    beam_context: Optional[int] = _BEAM_CONTEXT,
    sample_expand: Optional[int] = _EXPAND,
    dtype: Optional[str] = _DTYPE,
    plan_every: Optional[int] = _PLAN_EVERY,
    max_steps: Optional[int] = _MAX_STEPS,
    seed: Optional[int] = _SEED,
    device: Optional[str] = _DEVICE,
    vector: Optional[str] = _VECTOR,
    k_obs: Optional[str] = _K_OBS,
    k_act: Optional[str] = _K_ACT,
    k_reward: Optional[str] = _K_REWARD,
    cdf_obs: Optional[str] = _CDF_OBS,
    cdf_act: Optional[str] = _CDF_ACT,
    temperature: Optional[float] = _TEMPERATURE,
    discount: Optional[float] = _DISCOUNT,
    headless: bool = typer.Option(False, "--headless"),
    ftt_block: Optional[FttBlock] = _FTT_BLOCK_OPTION,
) -> None:
    """Plan episodes and write one GIF per episode (MuJoCo offscreen rendering)."""
    from tt_core.jobs.factories import eval_job

    block = ftt_block.value if ftt_block else None
    _writable_folder(out, "--out")
    run, overrides = _planning_args("record", run, device, locals())
    run = _planning_source(run)
    if _use_app(headless):
        _run_app(eval_job(run, overrides, device, record_dir=out, record_all=True, fps=fps,
                          size=size, ftt_block=block, snapshots=True), "record")
        return
    _run_eval(eval_job(run, overrides, device, record_dir=out, record_all=True, fps=fps, size=size,
                       ftt_block=block))


def _planning_source(run: Optional[Path]) -> Path:
    """The directory eval/record plan with: the newest run by default; for a pinned
    pretrained model, its era folder once every file is there and verified (fetched on
    first use with a progress bar)."""
    from tt_core.jobs.factories import newest_run
    from tt_core.pretrained.catalog import fetch, locate

    if run is None:
        return newest_run(Path("runs"))
    located = locate(run)
    if located is None:
        return run
    from tt_tui.headless import DownloadReporter

    with DownloadReporter() as reporter:
        return fetch(*located, on_progress=reporter)


def _run_job(job, reporter, announce: bool = True) -> None:
    """Run an engine job in the foreground with a headless reporter; Ctrl+C stops it."""
    from tt_core.controls import Controls
    from tt_core.events import EventBus

    from tt_core.errors import TTError, as_user_error
    from tt_core.events import Failed

    bus, controls = EventBus(), Controls()
    bus.subscribe(reporter)
    _stop_on_sigint(controls, announce)
    with reporter:
        try:
            job(bus, controls)
        except Exception as exc:  # on record (metrics.jsonl: `tt-tui runs` says why); printed once, by main
            user = exc if isinstance(exc, TTError) else as_user_error(exc)
            bus.listeners.remove(reporter)
            bus.emit(Failed(str(user or exc), user.exit_code if user else 1))
            raise
        finally:  # the job is over (a clean stop included): a further Ctrl+C changes nothing
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_eval(job):
    from tt_tui.headless import EvalReporter

    reporter = EvalReporter()
    _run_job(job, reporter)
    return reporter


def _use_app(headless: bool) -> bool:
    """The Textual app needs a terminal on both ends; pipes and CI logs get plain output."""
    return not headless and sys.stdout.isatty() and sys.stdin.isatty()


def _run_app(job, mode: str):
    """Run `job` under the Textual app (engine on its own thread). After the app closes,
    print the headless reporter's final lines (run directory, results table, the error)
    and exit with the job's code; returns the reporter (eval: its `report` for --json)."""
    from tt_core.jobs.thread import JobThread
    from tt_core.events import EvalFinished, EvalStarted, Failed, TrainFinished
    from tt_tui.app import TTApp
    from tt_tui.headless import EvalReporter, HeadlessReporter

    engine = JobThread(job)
    final: list = []
    keep = (EvalStarted, EvalFinished, TrainFinished, Failed)
    engine.subscribe(lambda event: final.append(event) if isinstance(event, keep) else None)
    app = TTApp(engine, mode)
    app.run()
    code = app.return_code or 0
    if engine.running and code != 130:  # the app closed early (a UI error): stop and save
        engine.stop(timeout=300)
    reporter = HeadlessReporter() if mode == "train" else EvalReporter()
    for event in final:
        reporter(event)
    code = code or engine.exit_code or 0
    if code:
        raise typer.Exit(code)
    return reporter


@pretrained_app.callback(invoke_without_command=True)
@user_errors
def pretrained_list(
    ctx: typer.Context,
    folder: Optional[Path] = typer.Option(None, "--dir", help="Catalog folder (default: this clone's pretrained/)."),
) -> None:
    """List the pinned models: downloaded or not, size, source and published scores."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.console import Console
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


@pretrained_app.command("fetch")
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


@bench_app.command("train")
@user_errors
def bench_train_cmd(
    device: str = typer.Option("auto", "--device"),
    batch: int = typer.Option(64, "--batch", min=1),
    steps: int = typer.Option(10, "--steps", min=1, help="Optimizer steps per timed run."),
    repeats: int = typer.Option(5, "--repeats", min=1),
    variant: Optional[list[str]] = typer.Option(
        None, "--variant", help="fp32, bf16, compile+fp32, compile+bf16 (repeatable; default: all)."
    ),
) -> None:
    """Training tokens/s of the walker2d-size model (batch x 249 tokens), variants side by side."""
    from tt_core.jobs.bench import TRAIN_VARIANTS, bench_train, train_table

    variants = tuple(dict.fromkeys(variant or TRAIN_VARIANTS))
    if bad := [v for v in variants if v not in TRAIN_VARIANTS]:
        _fail(f"--variant must be one of {', '.join(TRAIN_VARIANTS)}, got {bad[0]}", 2)
    rows = bench_train(device=device, batch=batch, steps=steps, repeats=repeats, variants=variants)
    typer.echo(train_table(rows))


@bench_app.command("plan")
@user_errors
def bench_plan_cmd(
    device: str = typer.Option("auto", "--device"),
    envs: list[int] = typer.Option([1, 25], "--envs", min=1, help="Env counts (repeatable)."),
    width: Optional[list[int]] = typer.Option(None, "--width", min=1, help="Beam widths, paired with --steps (default 32)."),
    steps: Optional[list[int]] = typer.Option(None, "--steps", min=1, help="Beam steps, paired with --width (default 5)."),
    full: bool = typer.Option(False, "--full", help="The whole matrix: 32 x 5 and 128 x 15 (about 10 minutes on 2 cores)."),
    expand: int = typer.Option(2, "--expand", min=1),
    context: int = typer.Option(5, "--context", min=1, help="Context transitions."),
    naive: bool = typer.Option(True, "--naive/--no-naive", help="Also time the naive reference where feasible."),
    repeats: int = typer.Option(3, "--repeats", min=1),
    dtype: list[str] = typer.Option(["fp32"], "--dtype", help="Planner compute dtype, fp32 or bf16 (repeatable: rows side by side)."),
) -> None:
    """ms per plan and planning tokens/s, batched planner vs the naive reference (markdown).
    By default 32 x 5 beams only (under a minute on 2 CPU cores); --full adds 128 x 15."""
    from tt_core.jobs.bench import bench_plan, plan_table

    shapes = [(32, 5), (128, 15)] if full else [(32, 5)]
    width = width or [w for w, _ in shapes]
    steps = steps or [s for _, s in shapes]
    if len(width) != len(steps):
        _fail("--width and --steps must be given the same number of times (they pair up)", 2)
    if bad := [d for d in dtype if d not in ("fp32", "bf16")]:
        _fail(f"--dtype must be fp32 or bf16, got {bad[0]}", 2)
    dev, rows = bench_plan(device=device, envs=tuple(envs), shapes=tuple(zip(width, steps)),
                           expand=expand, context=context, naive=naive, repeats=repeats,
                           dtypes=tuple(dict.fromkeys(dtype)))
    typer.echo(plan_table(dev, rows))
    if not full:
        typer.echo("\n(the full matrix, 32 x 5 and 128 x 15: tt-tui bench plan --full)")


@bench_app.command("gpu")
@user_errors
def bench_gpu_cmd(
    device: str = typer.Option("cuda", "--device", help="The CUDA device (cuda, cuda:N)."),
    quick: bool = typer.Option(False, "--quick", help="Tiny sizes: check on any device that the script runs."),
) -> None:
    """The GPU benchmark in one table: training, planning and the seed's 25 x 1000 headline."""
    from tt_core.jobs.bench import bench_gpu
    from tt_core.device import resolve_device
    from tt_core.errors import ConfigError

    try:
        kind = resolve_device(device).type
    except ConfigError:  # e.g. no CUDA here
        kind = None
    if kind != "cuda" and not quick:
        _fail(f"--device {device}: bench gpu measures a CUDA device; `tt-tui bench gpu --device cpu "
              "--quick` checks that the script runs here", 2)
    typer.echo(bench_gpu(device=device, quick=quick))


def main() -> None:
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
    except typer.Abort:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    sys.exit(main())
