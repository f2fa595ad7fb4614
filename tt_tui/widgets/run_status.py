"""One-line status: mode, state, progress (step or episodes), key numbers."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

BAR_WIDTH = 16


def text_bar(done: float, total: float, width: int = BAR_WIDTH) -> str:
    frac = 0.0 if total <= 0 else min(max(done / total, 0.0), 1.0)
    full = int(round(frac * width))
    return "█" * full + "░" * (width - full)


class RunStatus(Static):
    """`state` is starting | running | paused | stopping | finished | stopped | failed,
    or following (a read-only view of a run's files)."""

    state: reactive[str] = reactive("starting")

    def __init__(self, mode: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.mode = mode
        self.step = 0
        self.total = 0
        self.detail = ""
        self.where = ""
        self._dirty = False

    def set_progress(self, step: int, total: int, detail: str = "") -> None:
        """Store the numbers; `flush` draws them (once per drained batch)."""
        self.step, self.total, self.detail = step, total, detail
        self._dirty = True

    def flush(self) -> None:
        if self._dirty:
            self._dirty = False
            self.refresh_line()

    def watch_state(self, state: str) -> None:
        for s in ("running", "paused", "stopping", "finished", "stopped", "failed", "starting", "following"):
            self.set_class(s == state, f"-{s}")
        self.refresh_line()

    def refresh_line(self) -> None:
        line = Text()
        line.append(f" {self.mode} ", style="bold reverse")
        line.append(f" {self.state} ", style="bold")
        if self.total:
            unit = "step" if self.mode in ("train", "show") else "episodes"
            line.append(f"{text_bar(self.step, self.total)} {unit} {self.step:,}/{self.total:,}  ")
        if self.detail:
            line.append(self.detail)
        if self.where:
            line.append(f"  {self.where}", style="dim")
        self.update(line)
