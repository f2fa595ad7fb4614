"""Headless reporter: a progress bar on a terminal, plain lines in a pipe or CI log."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO

from tt_tui.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from tt_core.config import to_dict
from tt_core.events import (
    Checkpointed,
    Downloaded,
    DownloadProgress,
    EpisodeEnd,
    EvalFinished,
    EvalStarted,
    Failed,
    Message,
    PlanParamsApplied,
    PlanParamsRefused,
    RecordingStarted,
    RecordingStopped,
    Throughput,
    TrainFinished,
    TrainStarted,
    TrainStep,
)
from tt_tui.event_text import event_line

PLAIN_LINE_EVERY_S = 5.0  # how often a non-terminal log gets a progress line
# events printed as their one line of text (tt_tui.event_text)
_LOG_LINES = (Message, PlanParamsApplied, PlanParamsRefused, RecordingStarted, RecordingStopped)


class _Reporter:
    """Progress on stderr: a live bar on a terminal, nothing live in a pipe or CI log
    (subclasses print a plain line every PLAIN_LINE_EVERY_S there instead)."""

    def __init__(self, stream: TextIO | None, *columns: Any) -> None:
        self.console = Console(file=stream or sys.stderr, highlight=False, soft_wrap=True)
        self.live = self.console.is_terminal
        self.progress = Progress(*columns, console=self.console, disable=not self.live)
        self._task = None
        self._last_line = 0.0
        self._route: dict[type, Callable[[Any], None]] = {}  # event type -> handler

    def __call__(self, event: Any) -> None:
        handler = self._route.get(type(event))
        if handler is not None:
            handler(event)

    def __enter__(self) -> "_Reporter":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def _plain_line_due(self) -> bool:
        now = time.monotonic()
        if self.live or now - self._last_line < PLAIN_LINE_EVERY_S:
            return False
        self._last_line = now
        return True

    def _line(self, event: Any) -> None:
        """Events that are one line of the log (messages, checkpoints, plan edits, recordings)."""
        self.console.print(event_line(event))


class SilentReporter:
    """The reporter of a rank other than 0: rank 0 reports for the job, errors aside."""

    def __enter__(self) -> "SilentReporter":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def __call__(self, event: Any) -> None:
        pass


class HeadlessReporter(_Reporter):
    """Event listener that prints training progress; use as a context manager."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(
            stream, TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        )
        self.evals = EvalReporter(stream)  # evaluations made during training
        self._route = {
            TrainStarted: self._train_started,
            TrainStep: self._train_step,
            Failed: lambda event: self.console.print(f"error: {event.error}"),
            **dict.fromkeys((Checkpointed, TrainFinished, *_LOG_LINES), self._line),
            **dict.fromkeys((EvalStarted, EpisodeEnd, EvalFinished, Throughput), self.evals),
        }

    def _train_started(self, event: TrainStarted) -> None:
        self.console.print(event_line(event))
        self._task = self.progress.add_task(
            "train", total=event.total_steps, completed=event.start_step, loss="-", tps="-"
        )

    def _train_step(self, event: TrainStep) -> None:
        if self._task is not None:
            self.progress.update(
                self._task, completed=event.step, loss=f"{event.loss:.3f}", tps=f"{event.tokens_per_s:,.0f}",
            )
        if self._plain_line_due():
            self.console.print(
                f"step {event.step} epoch {event.epoch:.2f} loss {event.loss:.4f} "
                f"(obs {event.loss_obs:.3f} act {event.loss_action:.3f} "
                f"rew {event.loss_reward:.3f} val {event.loss_value:.3f}) "
                f"lr {event.lr:.2e} {event.tokens_per_s:,.0f} tok/s"
            )


class EvalReporter(_Reporter):
    """Event listener for eval/record: per-episode lines, then a results table."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(
            stream, TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
        )
        self.out = Console(highlight=False, soft_wrap=True)  # the table goes to stdout
        self.report: dict = {}  # what --json writes: source, env, plan, episodes, summary
        self._started: EvalStarted | None = None
        self._route = {
            EvalStarted: self._eval_started,
            Throughput: self._throughput,
            EpisodeEnd: self._episode_end,
            EvalFinished: self._eval_finished,
            **dict.fromkeys(_LOG_LINES, self._line),
        }

    def _eval_started(self, event: EvalStarted) -> None:
        self._started = event
        self.console.print(event_line(event))
        self._task = self.progress.add_task("eval", total=None, info="")

    def _throughput(self, event: Throughput) -> None:
        if self._task is None:
            return
        self.progress.update(
            self._task, advance=1,
            info=f"{event.planning_tokens_per_s:,.0f} plan tok/s  {event.ms_per_plan:.0f} ms/plan",
        )
        if self._plain_line_due():
            self.console.print(
                f"{event.planning_tokens_per_s:,.0f} planning tokens/s, "
                f"{event.ms_per_plan:.0f} ms/plan, {event.env_steps_per_s:.1f} env steps/s"
            )

    def _episode_end(self, event: EpisodeEnd) -> None:
        score = "-" if event.score is None else f"{event.score:.1f}"
        why = f" ({event.error})" if event.error else ""
        self.console.print(
            f"episode {event.env_index}: return {event.episode_return:.1f}, "
            f"length {event.length}, {event.status}{why}, score {score}"
        )

    def _eval_finished(self, event: EvalFinished) -> None:
        started = self._started
        self.report = {
            "source": started.source if started else None,
            "env_id": started.env_id if started else None,
            "plan": to_dict(started.plan) if started else None,
            "episodes": list(event.results),
            "summary": event.summary,
        }
        self._print_table(event)

    def _print_table(self, event: EvalFinished) -> None:
        table = Table(title="evaluation", show_lines=False)
        for col in ("episode", "return", "length", "status", "score"):
            table.add_column(col, justify="right" if col != "status" else "left")
        for r in event.results:
            score = "-" if r["score"] is None else f"{r['score']:.1f}"
            table.add_row(str(r["env_index"]), f"{r['episode_return']:.1f}", str(r["length"]),
                          r["status"], score)
        self.out.print(table)
        s = event.summary
        line = f"return {s['return_mean']:.1f} ± {s['return_std']:.1f}"
        if s["score_mean"] is not None:
            line += f"   score {s['score_mean']:.1f} ± {s['score_std']:.1f} ({s['score_basis']})"
        if s["behaviour_mean_return"] is not None:
            line += f"   dataset behaviour mean return {s['behaviour_mean_return']:.1f}"
        self.out.print(line)
        self.out.print(
            f"planning {s['planning_tokens_per_s']:,.0f} tokens/s, {s['ms_per_plan']:.1f} ms per plan "
            f"({s['plans']} plans), {s['failed']} failed episodes"
        )
        if line := prediction_line(s.get("prediction")):
            self.out.print(line)


class DownloadReporter(_Reporter):
    """Pinned-file downloads: a bar per file (bytes, rate, ETA) on a terminal, a line
    every PLAIN_LINE_EVERY_S in a pipe or log; rich keeps the rate and ETA for both."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(
            stream, TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        )
        self._tasks: dict[str, Any] = {}
        self._route = {DownloadProgress: self._progress_made, Downloaded: self._downloaded}

    def _progress_made(self, event: DownloadProgress) -> None:
        task = self._tasks.get(event.name)
        if task is None:
            self.console.print(f"downloading {event.url}")
            task = self._tasks[event.name] = self.progress.add_task(
                event.name.rsplit("/", 1)[-1], total=event.total, completed=event.done
            )
        self.progress.update(task, completed=event.done, total=event.total)
        if self._plain_line_due():
            t = self.progress.tasks[task]
            size = f"/{t.total / 1e6:.1f}" if t.total else ""
            eta = f", ETA {t.time_remaining:.0f} s" if t.time_remaining is not None else ""
            rate = f"{t.speed / 1e6:.2f} MB/s" if t.speed else "-"
            self.console.print(f"  {t.description}: {event.done / 1e6:.1f}{size} MB, {rate}{eta}")

    def _downloaded(self, event: Downloaded) -> None:
        self.console.print(f"verified {event.name} (git blob {event.blob[:12]})")


def prediction_line(prediction: dict | None) -> str:
    """The plans' prediction errors per step into the plan, one line ("" when none)."""
    if not prediction or not any(v is not None for v in prediction["observation"]):
        return ""
    obs = ", ".join(f"{v:.2f}" for v in prediction["observation"][1:] if v is not None)
    rew = ", ".join(f"{v:.2f}" for v in prediction["reward"] if v is not None)
    values = [v for v in prediction.get("value", ()) if v is not None]  # runs before values were compared
    value = f"; values {', '.join(f'{v:.2f}' for v in values)} (step 0, 1, ...)" if values else ""
    return (f"prediction error against the simulator, step 1, 2, ... of the plans: observations {obs} "
            f"(units: {prediction['observation_scale']}); rewards {rew} (step 0, 1, ...){value}")
