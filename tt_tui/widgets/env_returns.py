"""Per-env returns: one row per env (return, step, status, recent rewards, score),
mean ± std over episodes, and the history of finished evaluations."""

from __future__ import annotations

import math
from collections import deque

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from tt_core.events import EnvStep, EpisodeEnd, EvalFinished, EvalStarted
from tt_tui.messages import EnvSelected

BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_LEN = 16
STATUS_STYLE = {"running": "green", "done": "cyan", "truncated": "yellow", "failed": "bold red"}
COLUMNS = (("env", "env"), ("step", "step"), ("return", "return"), (" status", "status"),
           (" rewards", "rewards"), ("score", "score"))


def sparkline(values, width: int = SPARK_LEN) -> str:
    vals = [v for v in list(values)[-width:] if math.isfinite(v)]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-12:
        return BLOCKS[3] * len(vals)
    return "".join(BLOCKS[int((v - lo) / (hi - lo) * (len(BLOCKS) - 1))] for v in vals)


def mean_std(values: list[float]) -> tuple[float, float] | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None
    m = sum(vals) / len(vals)
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / len(vals))


class ReturnsPanel(Vertical):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n = 0
        self.returns: list[float] = []
        self.steps: list[int] = []
        self.statuses: list[str] = []
        self.scores: list[float | None] = []
        self.rewards: list[deque] = []
        self.recording: set[int] = set()
        self.history: list[dict] = []
        self.selected = 0
        self.spark_len = SPARK_LEN
        self._dirty = False

    def compose(self) -> ComposeResult:
        table = DataTable(id="env-table", cursor_type="row", zebra_stripes=True, cell_padding=0)
        table.can_focus = False  # [ and ] select; arrows stay free for the beam tree
        yield table
        yield Static(id="returns-summary")

    def on_mount(self) -> None:
        self.border_title = "returns"
        self._columns()
        self._summary()

    def set_spark_len(self, length: int) -> None:
        """Sparkline width (narrow terminals get a short one); rebuilds the table."""
        if length != self.spark_len:
            self.spark_len = length
            if self.is_mounted:
                self._rebuild()

    def _rebuild(self) -> None:
        self._columns()
        table = self.query_one(DataTable)
        for i in range(self.n):
            table.add_row(*self._cells(i), key=str(i))
        if self.n:
            table.move_cursor(row=self.selected)

    def _columns(self) -> None:
        table = self.query_one(DataTable)
        table.clear(columns=True)
        widths = {"env": 3, "step": 5, "return": 7, "status": 11, "rewards": self.spark_len + 1, "score": 5}
        for label, key in COLUMNS:
            if key == "rewards" and self.spark_len < 8:
                label = " rew"
            header = Text(label, justify="left" if key in ("env", "status", "rewards") else "right")
            table.add_column(header, key=key, width=widths[key])

    # events -------------------------------------------------------------------------
    def start(self, event: EvalStarted) -> None:
        self.n = event.episodes
        self.returns = [0.0] * self.n
        self.steps = [0] * self.n
        self.statuses = ["running"] * self.n
        self.scores = [None] * self.n
        self.rewards = [deque(maxlen=SPARK_LEN) for _ in range(self.n)]
        self._rebuild()
        self.border_title = f"returns · {event.env_id} · {self.n} envs"
        self.select(min(self.selected, max(self.n - 1, 0)))
        self._summary()

    def step(self, event: EnvStep) -> None:
        for i in range(min(self.n, len(event.returns))):
            if self.statuses[i] == "running":
                self.returns[i] = event.returns[i]
                self.steps[i] = event.step
                self.rewards[i].append(event.rewards[i])
            if i < len(event.statuses):
                self.statuses[i] = event.statuses[i]
        self._dirty = True

    def episode_end(self, event: EpisodeEnd) -> None:
        i = event.env_index
        if 0 <= i < self.n:
            self.returns[i] = event.episode_return
            self.steps[i] = event.length
            self.statuses[i] = event.status
            self.scores[i] = event.score
            self.recording.discard(i)
            self._dirty = True

    def finished(self, event: EvalFinished) -> None:
        self.history.append(dict(event.summary))
        self._dirty = True

    def set_recording(self, index: int, on: bool) -> None:
        (self.recording.add if on else self.recording.discard)(index)
        self._dirty = True

    def flush(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        table = self.query_one(DataTable)
        for i in range(self.n):
            for (_, key), value in zip(COLUMNS, self._cells(i)):
                table.update_cell(str(i), key, value)
        self._summary()

    # view ---------------------------------------------------------------------------
    def _cells(self, i: int) -> tuple:
        status = self.statuses[i]
        score = self.scores[i]
        status_text = Text(f" {status}", style=STATUS_STYLE.get(status, ""))
        if i in self.recording:
            status_text.append(" ●", style="bold red")
        return (
            Text(f"{i}"),
            Text(f"{self.steps[i]}", justify="right"),
            Text(f"{self.returns[i]:.1f}", justify="right"),
            status_text,
            Text(" " + sparkline(self.rewards[i], self.spark_len), style="green"),
            Text("-" if score is None else f"{score:.1f}", justify="right"),
        )

    def _summary(self) -> None:
        parts = []
        if self.n:
            finished = sum(s != "running" for s in self.statuses)
            ok = [r for r, s in zip(self.returns, self.statuses) if s != "failed"]
            ms = mean_std(ok)
            if ms:
                parts.append(f"return {ms[0]:.1f} ± {ms[1]:.1f}")
            sc = mean_std([s for s in self.scores if s is not None])
            if sc:
                parts.append(f"score {sc[0]:.1f} ± {sc[1]:.1f}")
            parts.append(f"finished {finished}/{self.n}")
        else:
            parts.append("waiting for the evaluation to start")
        lines = ["  ".join(parts)]
        for k, h in enumerate(self.history[-3:], start=max(len(self.history) - 2, 1)):
            score = h.get("score_mean")
            lines.append(
                f"eval #{k}: return {h.get('return_mean', float('nan')):.1f} ± "
                f"{h.get('return_std', float('nan')):.1f}"
                + (f", score {score:.1f}" if score is not None else "")
                + f", {h.get('episodes', '?')} episodes"
            )
        self.query_one("#returns-summary", Static).update("\n".join(lines))

    def select(self, index: int) -> None:
        if not self.n:
            return
        self.selected = index % self.n
        table = self.query_one(DataTable)
        if table.row_count > self.selected:
            table.move_cursor(row=self.selected)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self._pick(event.cursor_row)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._pick(event.cursor_row)

    def _pick(self, row: int) -> None:
        if 0 <= row < self.n and row != self.selected:
            self.selected = row
            self.post_message(EnvSelected(row))
