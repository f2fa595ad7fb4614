"""Training curves: total and per-kind loss against tokens seen; `l` shows the LR."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual_plotext import PlotextPlot

from tt_core.events import TrainStep
from tt_tui.series import DecimatedSeries
from tt_tui.widgets.throttled import ThrottledRedraw

KINDS = ("loss", "loss_obs", "loss_action", "loss_reward", "loss_value")
LABELS = {"loss": "total", "loss_obs": "obs", "loss_action": "action",
          "loss_reward": "reward", "loss_value": "value"}
class LossPanel(ThrottledRedraw, Vertical):
    view: reactive[str] = reactive("loss")  # loss | lr

    def __init__(self, max_points: int = 1000, **kwargs) -> None:
        super().__init__(**kwargs)
        self.series = DecimatedSeries(KINDS + ("lr",), max_points=max_points)

    def compose(self) -> ComposeResult:
        yield PlotextPlot(id="loss-plot")

    def on_mount(self) -> None:
        self.border_title = "loss"
        self.redraw()

    def add(self, event: TrainStep) -> None:
        self.series.append(event.tokens, [getattr(event, k) for k in KINDS] + [event.lr])
        self._dirty = True

    def toggle_view(self) -> None:
        self.view = "lr" if self.view == "loss" else "loss"

    def watch_view(self) -> None:
        if self.is_mounted:
            self.redraw()

    def redraw(self) -> None:  # plotext + ANSI parsing: ~50 ms at 200x60
        self._drawn()
        plot = self.query_one(PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        xs = self.series.xs()
        last = self.series.last
        scale, unit = 1.0, ""
        if xs and xs[-1] >= 1e6:
            scale, unit = 1e6, " (millions)"
        elif xs and xs[-1] >= 1e3:
            scale, unit = 1e3, " (thousands)"
        xs = [x / scale for x in xs]
        plt.xlabel("tokens seen" + unit)
        if self.view == "lr":
            self.border_title = "learning rate  [l: loss]"
            if xs:
                plt.plot(xs, self.series.column("lr"), label="lr", marker="braille")
                self.border_subtitle = f"lr {last['lr']:.2e}"
        else:
            self.border_title = "loss  [l: learning rate]"
            if xs:
                for kind in KINDS:
                    plt.plot(xs, self.series.column(kind), label=LABELS[kind], marker="braille")
                self.border_subtitle = (
                    f"total {last['loss']:.3f}  obs {last['loss_obs']:.3f}  act {last['loss_action']:.3f}"
                    f"  rew {last['loss_reward']:.3f}  val {last['loss_value']:.3f}"
                )
        if not xs:
            plt.title("waiting for the first logged step")
            self.border_subtitle = ""
        plot.refresh()
