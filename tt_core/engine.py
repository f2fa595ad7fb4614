"""Jobs (train / eval / record) and the thread that runs one for a view.

A job is a function of (EventBus, Controls): it reports only through the bus and
listens only to the controls, so the same job runs in the foreground for the headless
CLI and on a worker thread for the TUI.
"""

from __future__ import annotations

import os
import queue
import threading
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

from tt_core.agent import Agent, load_agent
from tt_core.config import Config, apply_overrides
from tt_core.controls import Controls
from tt_core.distributed import World
from tt_core.errors import CheckpointError, TTError, as_user_error
from tt_core.events import EventBus, Failed, Message
from tt_core.record import GifRecorder
from tt_core.rollout import EpisodeResult, Rollout
from tt_core.ftt_format import FTT_BLOCK_NOTE_KEY
from tt_core.train import Trainer

Job = Callable[[EventBus, Controls], Any]


def train_job(
    cfg: Config, resume: Path | None = None, device: str | None = None, watch: bool = False,
    world: World | None = None,
) -> Job:
    def job(bus: EventBus, controls: Controls) -> Path:
        return Trainer(cfg, bus, controls, resume=resume, device=device, watch=watch, world=world).run()

    return job


def load_for_planning(
    path: Path, overrides: list[str], device: torch.device, ftt_block: str | None = None
) -> tuple[Agent, Config]:
    """The agent at `path` and its config with plan/eval overrides applied."""
    agent = load_agent(path, device, ftt_block=ftt_block)
    return agent, apply_overrides(agent.config, overrides)


def eval_job(
    path: Path,
    overrides: list[str],
    device: str | None = None,
    record_dir: Path | None = None,
    record_all: bool = False,
    fps: int = 30,
    size: int = 256,
    snapshots: bool = False,
    ftt_block: str | None = None,
    world: World | None = None,
) -> Job:
    """Evaluate (and optionally record) the agent at `path`.

    With `record_dir`, envs render offscreen and GIFs go there: every episode when
    `record_all`, else only envs toggled through the controls. Under torchrun (`world`)
    each rank plays its share of the episodes on its own device; rank 0 reports.
    """
    world = world or World()

    def job(bus: EventBus, controls: Controls) -> list[EpisodeResult]:
        bus = bus if world.main else EventBus()  # the other ranks report nothing
        agent, cfg = load_for_planning(path, overrides, world.device(device or "auto"), ftt_block)
        bus.emit(Message(f"loaded {agent.source} (step {agent.step}) for {agent.env_id}"))
        if FTT_BLOCK_NOTE_KEY in agent.dataset_meta:  # which block an FTT model plans with, and why
            bus.emit(Message(agent.dataset_meta[FTT_BLOCK_NOTE_KEY]))
        recorder = None
        if record_dir is not None:
            recorder = GifRecorder(record_dir, agent.source.name, agent.env_id, fps)
        rollout = Rollout(
            agent, cfg.plan, cfg.eval, bus, controls,
            recorder=recorder, record_all=record_all,
            render_size=size if recorder is not None else None, snapshots=snapshots, world=world,
        )
        return rollout.run()

    return job


def newest_run(runs_dir: Path) -> Path:
    """The run under `runs_dir` whose latest checkpoint is the most recent."""
    runs = [p for p in Path(runs_dir).glob("*") if (p / "latest.json").exists()]
    if not runs:
        raise CheckpointError(f"no trained run under {runs_dir}/; train one or pass a run directory")
    return max(runs, key=lambda p: (p / "latest.json").stat().st_mtime)


class Engine:
    """Runs one job on a daemon thread; events reach the view through `events`.

    `exit_code` follows the CLI's codes once the job ends: 0, the TTError's code, or 1.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self.bus = EventBus()
        self.controls = Controls()
        self.events: "queue.Queue[Any]" = queue.Queue()
        self.bus.subscribe(self.events.put)
        self.exit_code: int | None = None
        self.result: Any = None
        self._thread = threading.Thread(target=self._run, name="tt-engine", daemon=True)

    def subscribe(self, listener: Callable[[Any], None]) -> None:
        self.bus.subscribe(listener)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        # Leave one core to the UI thread: torch's intra-op threads synchronise at every
        # op, and one of them preempted by the UI makes small ops wait a scheduler tick.
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
        try:
            self.result = self.job(self.bus, self.controls)
            self.exit_code = 0
        except TTError as exc:
            self.exit_code = exc.exit_code
            self.bus.emit(Failed(str(exc), exc.exit_code))
        except BaseException as exc:  # a full or read-only disk, else a bug: the view stays alive
            user = as_user_error(exc)
            if user is not None:
                self.exit_code = user.exit_code
                self.bus.emit(Failed(str(user), user.exit_code))
                return
            self.exit_code = 1
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            self.bus.emit(Failed(f"internal error: {last}", 1))
            self.bus.emit(Message(traceback.format_exc(), level="error"))

    def drain(self, limit: int = 10_000) -> list[Any]:
        """Events waiting for the view, oldest first (never blocks)."""
        out = []
        while len(out) < limit:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                break
        return out

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the job to stop (training saves first) and wait; True when it ended."""
        self.controls.request_stop()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

