"""`tt-tui show RUN1 RUN2 ...` (or a group): runs side by side, read-only.

Their loss against tokens seen and their evaluation return against the training step,
one colour per run with a legend, and a line per run (state, steps, last evaluation);
re-read every second, so runs still training move. The data comes from the runs' files
through tt_core/runs (no torch); nothing is written.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer
from textual_plotext import PlotextPlot

from tt_core.runs.listing import summarize_run
from tt_core.runs.report import KINDS, run_curves
from tt_tui.keys import COMPARE_KEYS

# one colour per run: (plotext's name, Rich's name) of the same colour
COLOURS = (("cyan", "cyan"), ("orange", "orange1"), ("green", "green"), ("magenta", "magenta"),
           ("yellow", "yellow"), ("blue", "blue"), ("red", "red"), ("white", "white"))
LOSSES = ("loss", *KINDS)  # what `l` cycles through: the weighted total, then each kind
POLL_S = 1.0


class CompareApp(App):
    CSS = """
    #curves { height: 1fr; }
    #curves PlotextPlot { width: 1fr; border: round $primary; }
    DataTable { height: auto; max-height: 12; }
    """
    BINDINGS = [Binding(k.keys[0], k.action, k.footer or k.what) for k in COMPARE_KEYS]

    def __init__(self, runs: list[Path], poll_s: float = POLL_S) -> None:
        super().__init__()
        self.runs = runs
        self.poll_s = poll_s
        self.kind = 0  # index into LOSSES
        self.title = f"tt-tui show: {len(runs)} runs"

    def compose(self) -> ComposeResult:
        with Horizontal(id="curves"):
            yield PlotextPlot(id="loss")
            yield PlotextPlot(id="returns")
        yield DataTable(id="runs", cursor_type="none")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("", "run", "state", "steps", "last eval return")
        self.reload()
        self.set_interval(self.poll_s, self.reload)

    def action_next_loss(self) -> None:
        self.kind = (self.kind + 1) % len(LOSSES)
        self.reload()

    def reload(self) -> None:
        """Read every run's files again and redraw."""
        curves = [run_curves(run) for run in self.runs]
        names = [run.name for run in self.runs]
        loss = self.query_one("#loss", PlotextPlot)
        returns = self.query_one("#returns", PlotextPlot)
        kind = LOSSES[self.kind]
        loss.border_title = f"{kind.replace('_', ' ')} against tokens seen  [l: next loss]"
        returns.border_title = "evaluation return against training step"
        for widget in (loss, returns):
            widget.plt.clear_data()
            widget.plt.clear_figure()
        for i, (name, (losses, evals)) in enumerate(zip(names, curves)):
            colour = COLOURS[i % len(COLOURS)][0]
            points = sorted(losses[kind].items())
            if points:
                loss.plt.plot([x for x, _ in points], [y for _, y in points], label=name, color=colour,
                              marker="braille")
            if evals:
                steps = sorted(evals)
                returns.plt.plot(steps, [evals[s] for s in steps], label=name, color=colour, marker="dot")
        loss.plt.xlabel("tokens seen")
        returns.plt.xlabel("training step")
        loss.refresh()
        returns.refresh()
        self._fill_table(names)

    def _fill_table(self, names: list[str]) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for i, (run, name) in enumerate(zip(self.runs, names)):
            s = summarize_run(run)
            last = "-" if not s.last_eval or s.last_eval["return"] is None else f"{s.last_eval['return']:.1f}"
            steps = f"{s.step if s.step is not None else '-'}/{s.total_steps if s.total_steps is not None else '-'}"
            table.add_row(f"[{COLOURS[i % len(COLOURS)][1]}]━━[/]", name, s.state, steps, last)
