"""The plans' prediction error against the step into the plan, live (`v` in an evaluation).

Each plan of the evaluation is played in a simulator from its env's true state; the engine
sends the running means per step k (tt_core.events.PredictionErrors): observation error in
units of the data's std (k >= 1), reward error in reward units (k >= 0). How fast the
lines rise is how fast the model's imagined future drifts from the dynamics.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual_plotext import PlotextPlot

from tt_core.events import PredictionErrors
from tt_tui.widgets.throttled import ThrottledRedraw

class PredictionPanel(ThrottledRedraw, Vertical):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.latest: PredictionErrors | None = None  # a plan can come every few ms

    def compose(self) -> ComposeResult:
        yield PlotextPlot(id="prediction-plot")

    def on_mount(self) -> None:
        self.border_title = "prediction error by step into the plan  [v: beam tree]"
        self.redraw()

    def add(self, event: PredictionErrors) -> None:
        self.latest = event
        self._dirty = True

    def redraw(self) -> None:
        self._drawn()
        plt = self.query_one(PlotextPlot).plt
        plt.clear_data()
        plt.clear_figure()
        plt.xlabel("step into the plan")
        ev = self.latest
        series = [] if ev is None else [
            ("observation", [(k, v) for k, v in enumerate(ev.observation) if v is not None], "left"),
            ("reward", [(k, v) for k, v in enumerate(ev.reward) if v is not None], "right"),
        ]
        if not any(points for _, points, _ in series):
            plt.title("waiting for the first plan")
            self.border_subtitle = ""
        for name, points, side in series:
            if points:
                plt.plot([k for k, _ in points], [v for _, v in points], label=name, marker="braille", yside=side)
        if ev is not None and any(points for _, points, _ in series):
            parts = [f"{name} {points[-1][1]:.2f} at step {points[-1][0]}" for name, points, _ in series if points]
            self.border_subtitle = "  ".join(parts) + f"  (obs: {ev.observation_scale}, left axis)"
        self.query_one(PlotextPlot).refresh()
