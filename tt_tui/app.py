"""The Textual app: a live view on one engine job (train, eval or record).

The engine runs its job on its own thread and puts events on a queue; the app drains
that queue on a timer (10 times a second), applies the whole batch to the panels and
redraws each panel at most once per batch (plots and the beam tree less often still),
so a fast job never floods the UI and a slow UI never blocks the job. Keys reach the
engine only through its Controls object. Nothing here imports torch.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

from textual import events, on
from textual.geometry import Size
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Input

from tt_core.events import (
    AttentionMaps,
    Checkpointed,
    EnvStep,
    EpisodeEnd,
    EvalFinished,
    EvalStarted,
    Failed,
    Message,
    PlanParamsApplied,
    PlanParamsRefused,
    PlanSnapshot,
    PredictionErrors,
    RecordingStarted,
    RecordingStopped,
    Throughput,
    TrainFinished,
    TrainStarted,
    TrainStep,
)
from tt_tui.event_text import event_line, plan_line
from tt_tui.messages import EnvSelected, PlanEditRefused, PlanParamsRequested
from tt_tui.resources import available_memory_bytes, model_dims_from, process_rss_bytes
from tt_tui.widgets.attention_map import AttentionPanel
from tt_tui.widgets.beam_tree import BeamTreePanel
from tt_tui.widgets.env_returns import ReturnsPanel
from tt_tui.widgets.event_log import EventLog
from tt_tui.keys import KEYS, SHOWN, STEERING, actions
from tt_tui.widgets.help_screen import HelpScreen
from tt_tui.widgets.loss_plot import LossPanel
from tt_tui.widgets.plan_controls import PlanControls
from tt_tui.widgets.prediction_plot import PredictionPanel
from tt_tui.widgets.run_status import RunStatus
from tt_tui.widgets.throughput import ThroughputPanel

MODES = ("train", "eval", "record")
TRAIN_ONLY = actions("train")
EVAL_ONLY = actions("eval")


class TTApp(App[int]):
    """`engine` is a tt_core.jobs.thread.JobThread that has not been started (or any object
    with start(), drain(), running, exit_code and controls)."""

    CSS_PATH = "app.tcss"
    TITLE = "tt-tui"
    ENABLE_COMMAND_PALETTE = False

    BINDINGS = [
        Binding(key, k.action, k.footer or "", show=k.footer is not None and n == 0,
                priority=key in k.priority, key_display=SHOWN.get(key) if k.footer else None)
        for k in KEYS if k.action for n, key in enumerate(k.keys)
    ]

    def __init__(
        self,
        engine: Any,
        mode: str = "train",
        *,
        drain_interval: float = 0.1,
        rss: Callable[[], int | None] = process_rss_bytes,
        available: Callable[[], int | None] = available_memory_bytes,
        screenshot_dir: str | Path = ".",
        read_only: bool = False,
    ) -> None:
        """`read_only`: a view of a run's files (tt-tui show): nothing to pause, save,
        record or edit, and q leaves at once."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        super().__init__()
        self.engine = engine
        self.mode = mode
        self.read_only = read_only
        self.drain_interval = drain_interval
        self._rss = rss
        self._available_host = available
        self.screenshot_dir = Path(screenshot_dir)
        self.selected_env = 0
        self.envs = 0
        self.device = ""
        self.has_eval = mode != "train"
        self.failed: Failed | None = None
        self.quitting = False
        self.finished = False
        self.events_seen = 0
        self.last_screenshot: str | None = None
        self.notices: list[tuple[str, str]] = []  # (severity, message), newest last
        self._rss_tick = 0
        self._size_seen: Size | None = None
        self._device_free: int | None = None  # EvalStarted.memory_available, when sent

    # layout -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Vertical(id="main", classes=f"-{'train' if self.mode == 'train' else 'eval'}"):
            yield RunStatus("show" if self.read_only else self.mode, id="status")
            with Horizontal(id="top"):
                yield LossPanel(id="loss")
                yield ReturnsPanel(id="returns")
                yield BeamTreePanel(id="beams")
                yield PredictionPanel(id="predictions")
                yield AttentionPanel(id="attention")
            with Horizontal(id="bottom"):
                with Vertical(id="side"):
                    yield ThroughputPanel(rss=self._rss, id="throughput")
                    yield PlanControls(available=self._available, id="plan")
                yield EventLog(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "tt-tui show" if self.read_only else f"tt-tui {self.mode}"
        # panels by reference: the app's own query would search a help screen on top
        self.main = self.query_one("#main")
        self.status_bar = self.query_one(RunStatus)
        self.throughput = self.query_one(ThroughputPanel)
        self.loss = self.query_one(LossPanel)
        self.returns = self.query_one(ReturnsPanel)
        self.beams = self.query_one(BeamTreePanel)
        self.predictions = self.query_one(PredictionPanel)
        self.attention = self.query_one(AttentionPanel)
        self.plan_controls = self.query_one(PlanControls)
        self.event_log = self.query_one(EventLog)
        self._layout_for_size()
        self.engine.start()
        if self.read_only:  # a view of files: it follows them until their TrainFinished
            self.status_bar.state = "following"
        else:
            self.status_bar.state = "paused" if self.engine.controls.paused else "running"
        self._timer = self.set_interval(self.drain_interval, self.drain)

    def on_resize(self, event: events.Resize) -> None:
        self._layout_for_size(event.size)

    def _layout_for_size(self, size: Size | None = None) -> None:
        """Classes for small terminals (80x24 must work); `size` is the new one on resize."""
        size = size or self.size
        self._size_seen = size
        if not hasattr(self, "main"):
            return
        main = self.main
        main.set_class(size.height < 32, "-short")
        main.set_class(size.width < 100, "-narrow")
        main.set_class(self.has_eval, "-has-eval")
        small = size.height < 32 or size.width < 100
        tp = self.throughput
        if tp.compact != (small and self.has_eval):
            tp.compact = small and self.has_eval
            tp.redraw()
        self.returns.set_spark_len(5 if size.width < 100 else 16)

    # engine events ----------------------------------------------------------------------
    def drain(self, force: bool = False) -> int:
        """Apply every waiting engine event, then redraw what changed; returns how many."""
        if self._exit:  # shutting down: the panels are going away
            return 0
        events = self.engine.drain()
        for event in events:
            self._apply(event)
        self.events_seen += len(events)
        self._redraw(force)
        self._rss_tick += 1
        if self._rss_tick % 10 == 0:  # memory changes without events: once a second
            self.throughput.dirty = True
        if not self.engine.running and not self.finished and self.engine.exit_code is not None:
            self._job_ended()
        if self.quitting and not self.engine.running:
            for event in self.engine.drain():  # the job's last words (saved, stopped)
                self._apply(event)
            self._redraw(True)
            self._timer.stop()
            self.exit(self.exit_code, return_code=self.exit_code)
        return len(events)

    @property
    def exit_code(self) -> int:
        code = self.engine.exit_code
        return 0 if code is None else int(code)

    def _redraw(self, force: bool = False) -> None:
        self.status_bar.flush()
        self.throughput.flush()
        self.loss.flush(force)
        self.returns.flush()
        self.beams.flush(force)
        self.predictions.flush(force)
        self.attention.flush(force)

    def _apply(self, ev: Any) -> None:
        """Route one engine event to its handler (events without one are ignored)."""
        handler = self._handlers.get(type(ev))
        if handler is not None:
            handler(ev)

    @functools.cached_property
    def _handlers(self) -> dict[type, Callable[[Any], None]]:
        return {
            TrainStep: self._show_train_step, EnvStep: self._show_env_step,
            PlanSnapshot: self.beams.add, Throughput: self._show_throughput, PredictionErrors: self.predictions.add,
            AttentionMaps: self.attention.add,
            TrainStarted: self._show_train_started, Checkpointed: self._show_checkpointed,
            TrainFinished: self._show_train_finished, Message: self._show_message,
            Failed: self._show_failed, EvalStarted: self._show_eval_started,
            EpisodeEnd: self._show_episode_end, EvalFinished: self._show_eval_finished,
            PlanParamsApplied: self._show_plan_applied, PlanParamsRefused: self._show_plan_refused,
            RecordingStarted: self._show_recording_started, RecordingStopped: self._show_recording_stopped,
        }

    def _show_train_step(self, ev: TrainStep) -> None:
        self.loss.add(ev)
        self.throughput.train_tps = ev.tokens_per_s
        self.status_bar.set_progress(ev.step, self.status_bar.total,
                                     f"epoch {ev.epoch:.2f}  loss {ev.loss:.3f}  lr {ev.lr:.1e}")
        self.throughput.dirty = True

    def _show_env_step(self, ev: EnvStep) -> None:
        self.returns.step(ev)
        if self.mode != "train":
            done = sum(s != "running" for s in ev.statuses)
            self.status_bar.set_progress(done, self.envs, f"env step {ev.step}  {self._plan_text()}")

    def _show_throughput(self, ev: Throughput) -> None:
        tp = self.throughput
        tp.plan_tps, tp.ms_per_plan, tp.env_sps = ev.planning_tokens_per_s, ev.ms_per_plan, ev.env_steps_per_s
        tp.dirty = True

    def _show_train_started(self, ev: TrainStarted) -> None:
        self.device = ev.device
        tp = self.throughput
        tp.device = ev.device
        tp.extra["parameters"] = f"{ev.num_params:,}"
        tp.redraw()
        self.status_bar.where = ev.run_dir
        self.status_bar.set_progress(ev.start_step, ev.total_steps, f"{ev.dataset_id}")
        if self.read_only:  # a (re)start of the run being followed
            self.status_bar.state = "following"
        self.event_log.add(event_line(ev))

    def _show_checkpointed(self, ev: Checkpointed) -> None:
        self.event_log.add(event_line(ev))

    def _show_train_finished(self, ev: TrainFinished) -> None:
        self.status_bar.state = "stopped" if ev.stopped_early else "finished"
        self.event_log.add(event_line(ev))
        how = "stopped" if ev.stopped_early else "finished"
        self.notify(f"training {how} at step {ev.step}", title="train")

    def _show_message(self, ev: Message) -> None:
        self.event_log.add(event_line(ev), ev.level)
        if ev.level == "error":
            self.notify(ev.text, severity="error")

    def _show_failed(self, ev: Failed) -> None:
        self.failed = ev
        self.status_bar.state = "failed"
        self.event_log.add(f"error: {ev.error} (exit code {ev.exit_code})", "error")
        self.notify(ev.error, title="job failed", severity="error", timeout=30)

    def _show_episode_end(self, ev: EpisodeEnd) -> None:
        self.returns.episode_end(ev)
        self.event_log.add(event_line(ev), "error" if ev.status == "failed" else "info")

    def _show_eval_finished(self, ev: EvalFinished) -> None:
        self.returns.finished(ev)
        text = event_line(ev)
        self.event_log.add(text)
        self.notify(text, title="eval")

    def _show_plan_applied(self, ev: PlanParamsApplied) -> None:
        self.plan_controls.confirm(ev.plan, ev.cache_bytes)
        self.event_log.add(event_line(ev))
        self.notify(event_line(ev), title="planner")

    def _show_plan_refused(self, ev: PlanParamsRefused) -> None:
        self.event_log.add(event_line(ev), "error")
        self.notify(event_line(ev), title="planner", severity="error")

    def _show_recording_started(self, ev: RecordingStarted) -> None:
        self.returns.set_recording(ev.env_index, True)
        self.event_log.add(event_line(ev))
        self.notify(event_line(ev), title="recording")

    def _show_recording_stopped(self, ev: RecordingStopped) -> None:
        self.returns.set_recording(ev.env_index, False)
        self.event_log.add(event_line(ev))
        self.notify(event_line(ev), title="recording")

    def _show_eval_started(self, ev: EvalStarted) -> None:
        status, tp = self.status_bar, self.throughput
        self.envs = ev.episodes
        self.device = ev.device
        self.has_eval = True
        self._layout_for_size(self._size_seen)
        self._device_free = ev.memory_available
        tp.device = ev.device
        tp.redraw()
        self.returns.start(ev)
        dims = model_dims_from(ev.model)
        self.plan_controls.set_plan(ev.plan, ev.episodes, dims, ev.cache_bytes, ev.device)
        status.where = ev.source
        if self.mode != "train":  # in training the bar keeps counting optimizer steps
            status.set_progress(0, ev.episodes, self._plan_text())
        self.event_log.add(event_line(ev))

    def _plan_text(self) -> str:
        plan = self.plan_controls.current
        return plan_line(plan) if plan is not None else ""

    def _available(self) -> int | None:
        """Memory a new KV cache may take: host memory on CPU; unknown on accelerators
        unless the engine reports it (EvalStarted.memory_available)."""
        if self.device.startswith(("cuda", "mps")):
            return self._device_free
        return self._available_host()

    def _job_ended(self) -> None:
        self.finished = True
        status = self.status_bar
        if self.failed is None and self.engine.exit_code not in (0, None):
            status.state = "failed"
        elif self.failed is None:
            status.state = "finished"
            if not self.quitting:
                self.notify("job finished; press q to quit", title=self.mode)
        self.refresh_bindings()

    def notify(self, message: str, *, title: str = "", severity: str = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """A toast, also kept in `notices`; engine text is never read as markup."""
        self.notices.append((severity, message))
        del self.notices[:-100]
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    # widget messages --------------------------------------------------------------------
    @on(EnvSelected)
    def _env_selected(self, message: EnvSelected) -> None:
        self._select_env(message.index)

    @on(PlanParamsRequested)
    def _plan_params(self, message: PlanParamsRequested) -> None:
        if self.read_only:  # a view of files: there is no planner to send it to
            self.notify("read-only view: nothing to edit", severity="warning")
            return
        if not self.engine.running:
            self.notify("the job is not running", severity="warning")
            return
        self.engine.controls.request_plan_params(**message.params)
        self.event_log.add(
            "requested " + ", ".join(f"{k}={v}" for k, v in message.params.items()))

    @on(PlanEditRefused)
    def _plan_refused(self, message: PlanEditRefused) -> None:
        self.event_log.add(f"not sent: {message.reason}", "warning")
        self.notify(message.reason, title="invalid planning edit", severity="error")

    # actions ----------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "leave_input":  # in the footer only while an input has focus
            return isinstance(self.focused, Input)
        if action in TRAIN_ONLY and self.mode != "train":
            return False
        if action in STEERING and self.read_only:
            return False
        if action in EVAL_ONLY and not self.has_eval:
            return False
        if action in {"pause", "save", "record", "plan_gif"} and self.finished:
            return None  # shown greyed out: the job has ended
        return True

    async def action_quit(self) -> None:
        if self.read_only:  # the view reads files only: nothing to save or wait for
            self.engine.stop(timeout=5)
            self.exit(0, return_code=0)
            return
        if self.quitting or not self.engine.running:
            if self.engine.running:  # second q / Ctrl+C: abort without waiting
                self.exit(None, return_code=130)
            else:
                self.exit(self.exit_code, return_code=self.exit_code)
            return
        self.quitting = True
        self.engine.controls.request_stop()
        self.status_bar.state = "stopping"
        what = "saving and stopping" if self.mode == "train" else "stopping"
        self.notify(f"{what} after the current step (q again to abort)", title="quit")

    def action_pause(self) -> None:
        controls = self.engine.controls
        paused = not controls.paused
        controls.set_paused(paused)
        self.status_bar.state = "paused" if paused else "running"
        self.event_log.add("paused" if paused else "resumed")

    def action_save(self) -> None:
        if self.engine.controls.paused:
            self.notify("resume (p) first: the checkpoint is written after the next step",
                        severity="warning")
        self.engine.controls.request_save()
        self.event_log.add("checkpoint requested (after the current step)")

    def action_toggle_predictions(self) -> None:
        self.main.toggle_class("-predictions")
        self.predictions.redraw()

    def action_toggle_objective(self) -> None:
        """Ask the planner to rank by the other objective (reward <-> likelihood)."""
        plan = self.plan_controls.current
        if plan is None:
            self.notify("no evaluation is running", severity="warning")
            return
        self.post_message(PlanParamsRequested({"objective": "likelihood" if plan.objective == "reward" else "reward"}))

    def action_toggle_attention(self) -> None:
        """Show or hide the attention panel; the engine computes maps only while it is shown."""
        self.main.toggle_class("-attention")
        self._send_attention_env()
        self.attention.redraw()

    def _send_attention_env(self) -> None:
        shown = self.main.has_class("-attention") and not self.read_only
        self.engine.controls.show_attention(self.selected_env if shown else None)

    def action_next_layer(self) -> None:
        self.attention.next_layer()

    def action_next_head(self) -> None:
        self.attention.next_head()

    def action_toggle_lr(self) -> None:
        self.loss.toggle_view()

    def action_prev_env(self) -> None:
        self._select_env(self.selected_env - 1)

    def action_next_env(self) -> None:
        self._select_env(self.selected_env + 1)

    def _select_env(self, index: int) -> None:
        if self.envs <= 0:
            return
        self.selected_env = index % self.envs
        self.returns.select(self.selected_env)
        self.beams.select_env(self.selected_env)
        self._send_attention_env()

    def action_freeze(self) -> None:
        self.beams.toggle_freeze()

    def action_snap_prev(self) -> None:
        self.beams.step_snapshot(-1)

    def action_snap_next(self) -> None:
        self.beams.step_snapshot(+1)

    def action_record(self) -> None:
        self.engine.controls.toggle_recording(self.selected_env)
        self.event_log.add(f"recording toggled for env {self.selected_env}")

    def action_plan_gif(self) -> None:
        self.engine.controls.request_plan_gif(self.selected_env)
        self.event_log.add(f"plan GIF asked for env {self.selected_env}")

    def action_edit_plan(self) -> None:
        self.plan_controls.focus_first()
        self.refresh_bindings()

    def action_leave_input(self) -> None:
        if isinstance(self.focused, Input):
            self.set_focus(None)
            self.refresh_bindings()

    def action_screenshot(self) -> None:
        self.screenshot_dir.mkdir(parents=True, exist_ok=True)
        self.last_screenshot = self.save_screenshot(path=str(self.screenshot_dir))
        self.notify(f"screenshot saved: {self.last_screenshot}", title="screenshot")

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())
