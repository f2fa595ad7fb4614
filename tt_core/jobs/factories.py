"""Jobs: train, eval and record (tt_core/jobs/show.py has show's).

A job is a function of (EventBus, Controls): it reports only through the bus and
listens only to the controls, so the same job runs in the foreground for the headless
CLI and on a worker thread for the TUI (tt_core/jobs/thread.py).
"""

from __future__ import annotations

from pathlib import Path

import torch

from tt_core.plan.agent import Agent, load_agent
from tt_core.config import Config, PlanningPatch
from tt_core.controls import Controls
from tt_core.distributed import World
from tt_core.errors import CheckpointError
from tt_core.events import EventBus, Message
from tt_core.plan.gif import GifRecorder
from tt_core.plan.rollout import EpisodeResult, Rollout
from tt_core.pretrained.ftt.weights import FTT_BLOCK_NOTE_KEY
from tt_core.jobs.thread import Job
from tt_core.train.trainer import Trainer


def train_job(cfg: Config, resume: Path | None = None, watch: bool = False, world: World | None = None) -> Job:
    """Train `cfg` (on cfg.train.device), or resume run `resume` with it."""

    def job(bus: EventBus, controls: Controls) -> Path:
        return Trainer(cfg, bus, controls, resume=resume, watch=watch, world=world).run()

    return job


def load_for_planning(
    path: Path, patch: PlanningPatch, device: torch.device, ftt_block: str | None = None
) -> tuple[Agent, Config]:
    """The agent at `path` and its config with the planning settings of `patch` in place."""
    agent = load_agent(path, device, ftt_block=ftt_block)
    return agent, patch.apply(agent.config)


def eval_job(
    path: Path,
    patch: PlanningPatch = PlanningPatch(),
    device: str | None = None,
    record_dir: Path | None = None,
    record_all: bool = False,
    fps: int = 30,
    size: int = 256,
    snapshots: bool = False,
    plans_every: int | None = None,
    attention_every: int | None = None,
    ftt_block: str | None = None,
    world: World | None = None,
) -> Job:
    """Evaluate (and optionally record) the agent at `path`.

    With `record_dir`, envs render offscreen and GIFs go there: every episode when
    `record_all`, else only envs toggled through the controls. Under torchrun (`world`)
    each rank plays its share of the episodes on its own device; rank 0 reports.
    `plans_every` N: every N-th plan of a recorded env is written too, beside a simulator
    rollout of its actions; `attention_every` N: the model's attention maps over every
    N-th plan's window of a recorded env, as a PNG.
    """
    world = world or World()

    def job(bus: EventBus, controls: Controls) -> list[EpisodeResult]:
        bus = bus if world.main else EventBus()  # the other ranks report nothing
        agent, cfg = load_for_planning(path, patch, world.device(device or "auto"), ftt_block)
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
            plans_every=plans_every, attention_every=attention_every,
            threads=cfg.device.threads,
        )
        for line in (rollout.threads_text, rollout.dtype_text):
            if line:
                bus.emit(Message(line))
        return rollout.run()

    return job


def newest_run(runs_dir: Path) -> Path:
    """The run under `runs_dir` whose latest checkpoint is the most recent."""
    runs = [p for p in Path(runs_dir).glob("*") if (p / "latest.json").exists()]
    if not runs:
        raise CheckpointError(f"no trained run under {runs_dir}/; train one or pass a run directory")
    return max(runs, key=lambda p: (p / "latest.json").stat().st_mtime)
