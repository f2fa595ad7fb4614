"""`tt-tui eval` and `tt-tui record`: plan with a trained or pretrained model.

Their planning flags are declared once (PLANNING_FLAGS) and reach the engine as one
typed, checked `PlanningPatch` (tt_core/config.py), laid over the run's own config
when it is loaded: a bad value ends in one line before any model loads.
"""

from __future__ import annotations

import enum
import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from tt_core.outputs import OutputFile, output_file, output_folder
from tt_tui.cli.exits import user_errors
from tt_tui.cli.foreground import run_app, run_eval, run_job, use_app
from tt_tui.cli.launcher import launch_local


@dataclass(frozen=True)
class PlanningFlag:
    """A command-line flag that sets one plan.* or eval.* key for this eval or record."""

    name: str  # --beam-width
    key: str  # plan.beam_width
    kind: type  # what Typer parses (str for a switchable knob: a number, or "none")
    help: str
    switchable: bool = False  # a sampling knob that "none" switches off

    @property
    def param(self) -> str:
        return self.key.split(".", 1)[1]

    def shown(self, given: Any) -> str:
        """The flag as typed (for error lines)."""
        if self.kind is bool:
            on = given if isinstance(given, bool) else str(given).lower() in ("true", "on", "1", "yes")
            return self.name.split("/")[0 if on else 1]
        return f"{self.name} {given}"

    def value(self, given: Any) -> Any:
        """The typed value of `given`: a switchable knob's text as a number, or None for "none"."""
        if not self.switchable:
            return given
        if given.lower() in ("none", "null"):
            return None
        for number in (int, float):
            try:
                return number(given)
            except ValueError:
                pass
        return given  # the config's type check says what is wrong with it


PLANNING_FLAGS = (
    PlanningFlag("--beam-width", "plan.beam_width", int, "Beams kept per env."),
    PlanningFlag("--beam-steps", "plan.beam_steps", int, "Transitions planned ahead."),
    PlanningFlag("--beam-context", "plan.beam_context", int, "Transitions of history the plan sees."),
    PlanningFlag("--expand", "plan.sample_expand", int, "Candidates sampled per beam."),
    PlanningFlag("--dtype", "plan.dtype", str, "Planning precision: fp32 (exact), bf16, or auto (bf16 where the device has bf16 units)."),
    PlanningFlag("--plan-every", "plan.plan_every", int, "Plan every N env steps."),
    PlanningFlag("--max-steps", "eval.max_steps", int, "Env steps per episode at most."),
    PlanningFlag("--seed", "eval.seed", int, "Seed of the first episode (then +1 each)."),
    PlanningFlag("--vector", "eval.vector", str, "sync (default) or async envs."),
    PlanningFlag("--k-obs", "plan.k_obs", str, "Top-k of observation tokens (1 = greedy), or none.", switchable=True),
    PlanningFlag("--k-act", "plan.k_act", str, "Top-k of action tokens, or none.", switchable=True),
    PlanningFlag("--k-reward", "plan.k_reward", str, "Top-k of reward and value tokens (1 = greedy), or none.", switchable=True),
    PlanningFlag("--cdf-obs", "plan.cdf_obs", str, "Drop the observation tail holding this mass (0..1), or none.", switchable=True),
    PlanningFlag("--cdf-act", "plan.cdf_act", str, "Drop the action tail holding this mass (0..1), or none.", switchable=True),
    PlanningFlag("--temperature", "plan.temperature", float, "Divides every token's logits."),
    PlanningFlag("--discount", "plan.discount", float, "Discount of the plan's score."),
    PlanningFlag("--stop-mass", "plan.stop_mass", str,
                 "What a stop token's probability counts for in E[r], E[V]: renormalize (default), zero (the original's) or lowest."),
    PlanningFlag("--objective", "plan.objective", str,
                 "What beam search ranks by: reward (default: offline RL) or likelihood (imitation: the plan's log-probability)."),
    PlanningFlag("--cuda-graphs/--no-cuda-graphs", "plan.cuda_graphs", bool,
                 "CUDA graphs for the decode (CUDA only; default on; a failure falls back to eager)."),
    PlanningFlag("--threads", "device.threads", int, "CPU compute threads (default: the usable cores shared "
                 "among tt-tui's processes, fewer while other processes keep them busy)."),
)
# --episodes is each command's own (eval: the run's eval.episodes; record: 3)
EPISODES = PlanningFlag("--episodes", "eval.episodes", int, "Episodes.")


def patch_from_flags(given: dict[PlanningFlag, Any]):
    """The typed planning patch of the flags given (None: not given)."""
    from tt_core.config import PlanningPatch

    given = {flag: value for flag, value in given.items() if value is not None}
    return PlanningPatch.checked({flag.key: flag.value(v) for flag, v in given.items()},
                                 {flag.key: flag.shown(v) for flag, v in given.items()})


def planning_flags(fn: Callable) -> Callable:
    """Give command `fn` every flag of PLANNING_FLAGS; `fn` receives them, with its own
    `episodes`, as one checked `patch` keyword argument."""
    signature = inspect.signature(fn)
    own = [p for p in signature.parameters.values() if p.name != "patch"]
    flags = [inspect.Parameter(f.param, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[f.kind],
                               default=typer.Option(None, f.name, help=f.help)) for f in PLANNING_FLAGS]

    @functools.wraps(fn)
    def command(*args, **kwargs):
        given = {flag: kwargs.pop(flag.param) for flag in PLANNING_FLAGS}
        given[EPISODES] = kwargs.pop("episodes")
        return fn(*args, patch=patch_from_flags(given), **kwargs)

    command.__signature__ = signature.replace(parameters=own + flags)
    return command


class FttBlock(str, enum.Enum):
    """Residual layout of an FTT-format checkpoint (see docs/pretrained.md)."""

    norm_residual = "norm-residual"  # models trained before upstream's block fix (its issue #3)
    pre_norm = "pre-norm"  # models trained after it


_FTT_BLOCK = typer.Option(
    None, "--ftt-block",
    help="FTT-format dirs only: norm-residual (before upstream's block fix) or pre-norm "
    "(after it). Default: told from the model file (published files are known).",
)
_DEVICE = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N, mps.")
_HEADLESS = typer.Option(False, "--headless", help="Progress lines instead of the app.")


@user_errors
@planning_flags
def eval_cmd(
    runs: Optional[list[Path]] = typer.Argument(
        None, help="Run dirs, checkpoint dirs or FTT-format pretrained dirs, evaluated in turn "
        "(default: the newest under runs/)."
    ),
    episodes: Optional[int] = typer.Option(None, "--episodes", help="Episodes (default: the run's eval.episodes)."),
    device: Optional[str] = _DEVICE,
    headless: bool = _HEADLESS,
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write results as JSON here (a list for several runs)."),
    append: bool = typer.Option(False, "--append", help="With --json: add to the results the file holds."),
    ftt_block: Optional[FttBlock] = _FTT_BLOCK,
    nproc: int = typer.Option(1, "--nproc", min=1, help="Processes on this machine, each playing a share of the episodes."),
    *,
    patch,
) -> None:
    """Evaluate trained models: N episodes planned in parallel, scores and speed."""
    from tt_core.distributed import launched_by_torchrun
    from tt_core.errors import ConfigError

    if nproc > 1 and launched_by_torchrun():
        raise ConfigError("--nproc: this process was started by torchrun already; drop --nproc")
    if append and json_out is None:
        raise ConfigError("--append adds to a --json file; give --json FILE")
    json_file = None
    if json_out is not None:
        json_file = output_file(json_out, "--json")
        if append:
            _json_results(json_file)  # a file of something else: refused before any planning
    sources = [_checked_sources(run, device, "eval") for run in (runs or [None])]
    if nproc > 1:
        for run in sources:
            _planning_source(run)  # fetched once, before the ranks start
        launch_local(nproc)
        return
    from tt_core.distributed import join, leave

    world = join(device or "auto")  # once for all the runs: a process group is made once
    try:
        for i, run in enumerate(sources):
            report = _eval_one(run, patch, device, headless, ftt_block, world)
            if json_file is not None and report is not None:  # written after each run: none is lost
                if append or len(sources) > 1:
                    _add_result(json_file, report, keep=append or i > 0)
                else:
                    _put(json_file, report)
    finally:
        leave()


def _add_result(out: OutputFile, report: dict, keep: bool) -> None:
    """Add one run's report to the list in --json (`keep`: after what the file holds,
    re-read under a lock so that concurrent --append commands keep each other's)."""
    from tt_core.durable import FileLock

    if out.kind != "file":  # a device or a pipe: each report is written as it comes
        _put(out, report)
        return
    with FileLock(out.target.with_name(f".{out.target.name}.lock")):
        _put(out, (_json_results(out) if keep else []) + [report])


def _put(out: OutputFile, results) -> None:
    """Write results as JSON to --json and say so."""
    import json

    out.write(json.dumps(results, indent=2))
    typer.echo(f"results written to {out.given}", err=True)


def _json_results(out: OutputFile) -> list:
    """What a --json file holds, as a list of reports (none when it does not exist yet or
    is empty); read bounded, like every file a command reads."""
    import json

    from tt_core.errors import OutputError, TTError
    from tt_core.files import MIB, read_bytes

    if out.kind != "file":
        raise OutputError(f"--append: {out.given} is not a regular file; it holds no results to add to")
    try:
        data = read_bytes(out.target, 256 * MIB)
        results = json.loads(data) if data.strip() else []
    except FileNotFoundError:
        return []
    except (TTError, ValueError, RecursionError) as exc:
        raise OutputError(f"--append: {out.given} does not hold tt-tui results ({exc})") from None
    if isinstance(results, dict):
        return [results]
    if isinstance(results, list) and all(isinstance(d, dict) for d in results):
        return results
    raise OutputError(f"--append: {out.given} does not hold tt-tui results (a JSON object or list of them)")


def _eval_one(run, patch, device, headless: bool, ftt_block, world) -> Optional[dict]:
    """Evaluate one source; its report (None on the ranks other than 0)."""
    from tt_core.jobs.factories import eval_job

    with world.main_first():  # rank 0 fetches a pretrained model; the others read it
        run = _planning_source(run)
    job = functools.partial(eval_job, run, patch, device, ftt_block=ftt_block.value if ftt_block else None,
                            world=world)
    if world.main and not world.distributed and use_app(headless):  # records (r), beam tree
        return run_app(job(record_dir=Path("recordings"), snapshots=True), "eval").report
    if world.main:
        return run_eval(job()).report
    from tt_tui.headless import SilentReporter

    run_job(job(), SilentReporter(), announce=False)
    return None


@user_errors
@planning_flags
def record(
    run: Optional[Path] = typer.Argument(None, help="Run/pretrained dir (default: newest under runs/)."),
    episodes: int = typer.Option(3, "--episodes", min=1),
    out: Path = typer.Option(Path("recordings"), "--out", help="Folder for the GIFs."),
    fps: int = typer.Option(30, "--fps", min=1, max=100),
    size: int = typer.Option(256, "--size", min=32, max=2048, help="Frame width and height."),
    plans: Optional[int] = typer.Option(None, "--plans", min=1, help="Also write every N-th plan as a GIF: the "
                                        "model's predicted observations beside a simulator rollout of its actions."),
    attention: Optional[int] = typer.Option(None, "--attention", min=1, help="Also write the model's attention maps "
                                            "(every layer and head) over every N-th plan's window as a PNG."),
    device: Optional[str] = _DEVICE,
    headless: bool = _HEADLESS,
    ftt_block: Optional[FttBlock] = _FTT_BLOCK,
    *,
    patch,
) -> None:
    """Plan episodes and write one GIF per episode (MuJoCo offscreen rendering)."""
    from tt_core.jobs.factories import eval_job

    output_folder(out, "--out")
    run = _planning_source(_checked_sources(run, device, "record"))
    job = eval_job(run, patch, device, record_dir=out, record_all=True, fps=fps, size=size,
                   ftt_block=ftt_block.value if ftt_block else None, snapshots=use_app(headless),
                   plans_every=plans, attention_every=attention)
    if use_app(headless):
        run_app(job, "record")
    else:
        run_eval(job)


def _checked_sources(run: Optional[Path], device: Optional[str], command: str) -> Optional[Path]:
    """RUN and --device checked before any model is loaded or app opened (one line,
    exit 2 or 3): a dotted override in RUN's place (eval/record take flags), a path
    that does not exist, an unknown or absent device."""
    from tt_core.device import resolve_device
    from tt_core.errors import CheckpointError, ConfigError
    from tt_core.pretrained.catalog import locate

    resolve_device(device or "auto")
    if run is None:
        return None
    text = str(run)
    if "=" in text and not run.exists():
        key, _, value = text.partition("=")
        flag = next((f for f in (*PLANNING_FLAGS, EPISODES) if f.key == key), None)
        hint = (f" (here: {flag.shown(value)})" if flag else
                f" ({', '.join(f.name.split('/')[0] for f in PLANNING_FLAGS)})")
        raise ConfigError(f"{text}: {command} takes flags, not dotted overrides{hint}")
    if not run.exists() and locate(run) is None:
        raise CheckpointError(f"{run}: no such run directory")
    return run


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
