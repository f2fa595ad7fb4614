"""Headless reporter: a progress bar on a terminal, plain lines in a pipe or CI log."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tt_core.events import Checkpointed, Failed, Message, TrainFinished, TrainStarted, TrainStep

PLAIN_LINE_EVERY_S = 5.0  # how often a non-terminal log gets a progress line


class HeadlessReporter:
    """Event listener that prints training progress; use as a context manager."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.console = Console(file=stream or sys.stderr, highlight=False, soft_wrap=True)
        self.live = self.console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[tps]} tok/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.live,
        )
        self._task = None
        self._last_line = 0.0

    def __enter__(self) -> "HeadlessReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def __call__(self, event: Any) -> None:
        if isinstance(event, TrainStarted):
            self.console.print(
                f"run {event.run_dir}: {event.dataset_id}, {event.num_params:,} parameters, "
                f"{event.device}, steps {event.start_step}->{event.total_steps}"
            )
            self._task = self.progress.add_task(
                "train", total=event.total_steps, completed=event.start_step, loss="-", tps="-"
            )
        elif isinstance(event, TrainStep):
            if self._task is not None:
                self.progress.update(
                    self._task, completed=event.step, loss=f"{event.loss:.3f}",
                    tps=f"{event.tokens_per_s:,.0f}",
                )
            now = time.monotonic()
            if not self.live and now - self._last_line >= PLAIN_LINE_EVERY_S:
                self._last_line = now
                self.console.print(
                    f"step {event.step} epoch {event.epoch:.2f} loss {event.loss:.4f} "
                    f"(obs {event.loss_obs:.3f} act {event.loss_action:.3f} "
                    f"rew {event.loss_reward:.3f} val {event.loss_value:.3f}) "
                    f"lr {event.lr:.2e} {event.tokens_per_s:,.0f} tok/s"
                )
        elif isinstance(event, Checkpointed):
            self.console.print(f"checkpoint step {event.step}: {event.path}")
        elif isinstance(event, TrainFinished):
            how = "stopped" if event.stopped_early else "finished"
            self.console.print(f"training {how} at step {event.step}; run directory {event.run_dir}")
        elif isinstance(event, Message):
            self.console.print(f"{event.level}: {event.text}" if event.level != "info" else event.text)
        elif isinstance(event, Failed):
            self.console.print(f"error: {event.error}")
