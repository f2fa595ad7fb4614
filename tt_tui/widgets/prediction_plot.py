"""The plans' prediction error against the step into the plan, live (`v` in an evaluation).

Each plan of the evaluation is played in a simulator from its env's true state; the engine
sends the running means per step k (tt_core.events.PredictionErrors): observation error in
units of the data's std (k >= 1), reward error in reward units (k >= 0), and value error
against the realized discounted return in return units (k >= 0, filled in as episodes
end). One plot each, side by side: their units differ. How fast the lines rise is how fast
the model's imagined future drifts from the dynamics.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual_plotext import PlotextPlot

from tt_core.events import PREDICTION_KINDS as KINDS, PredictionErrors
from tt_tui.widgets.throttled import ThrottledRedraw

TITLES = {"observation": "obs (stds)", "reward": "reward", "value": "value"}


class PredictionPanel(ThrottledRedraw, Vertical):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.latest: PredictionErrors | None = None  # a plan can come every few ms

    def compose(self) -> ComposeResult:
        with Horizontal():
            for kind in KINDS:
                yield PlotextPlot(id=f"prediction-{kind}")

    def on_mount(self) -> None:
        self.border_title = "prediction error by step k  [v: beam tree]"
        self.redraw()

    def add(self, event: PredictionErrors) -> None:
        self.latest = event
        self._dirty = True

    def redraw(self) -> None:
        self._drawn()
        ev = self.latest
        errors = {} if ev is None else {"observation": ev.observation, "reward": ev.reward, "value": ev.value}
        latest = []
        for kind in KINDS:
            points = [(k, v) for k, v in enumerate(errors.get(kind, ())) if v is not None]
            plot = self.query_one(f"#prediction-{kind}", PlotextPlot)
            plt = plot.plt
            plt.clear_data()
            plt.clear_figure()
            plt.title(TITLES[kind])  # what fits a third of the panel; the docstring says more
            plt.xlabel("step k")
            if points:
                plt.plot([k for k, _ in points], [v for _, v in points], marker="braille")
                latest.append(f"{TITLES[kind].split()[0]} {points[-1][1]:.2f}")
            plot.refresh()
        self.border_subtitle = " · ".join(latest) + " at the last k" if latest else "waiting for the first plan"
