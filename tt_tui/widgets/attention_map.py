"""The model's attention over the selected env's plan window, live (`a` in an evaluation).

While this panel is shown the engine sends the attention maps of the selected env's plans
(tt_core.events.AttentionMaps, a few a second; nothing is computed while it is hidden).
It draws one layer and head at a time (`L`, `H`; after the last head, their mean) as a
heatmap in half-block cells filling the panel: rows are queries, columns keys, each cell
the mean weight of the tokens it covers (tt_core/runs/attention_figure.py, pool), coloured like the PNG
figures (tt_core/runs/attention_figure.py); positions the model's mask hides (later
tokens, value tokens: weights of exactly 0) are left blank.
"""

from __future__ import annotations

import numpy as np
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from tt_core.events import AttentionMaps
from tt_core.runs.attention_figure import colours, intensity, pool
from tt_tui.widgets.throttled import ThrottledRedraw


class AttentionPanel(ThrottledRedraw, Vertical):
    MIN_REDRAW_S = 0.5

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.latest: AttentionMaps | None = None
        self.map_layer = 0
        self.map_head = 0  # == the number of heads: their mean

    def compose(self) -> ComposeResult:
        yield Static(id="attention-map")

    def on_mount(self) -> None:
        self.border_title = "attention  [a: beam tree · L layer · H head]"
        self.redraw()

    def on_resize(self) -> None:
        self.redraw()  # the map is drawn for the panel's size (shown: from none to its place)

    def add(self, event: AttentionMaps) -> None:
        self.latest = event
        self._dirty = True

    def next_layer(self) -> None:
        if self.latest is not None:
            self.map_layer = (self.map_layer + 1) % self.latest.weights.shape[0]
            self.redraw()

    def next_head(self) -> None:
        if self.latest is not None:
            self.map_head = (self.map_head + 1) % (self.latest.weights.shape[1] + 1)
            self.redraw()

    def redraw(self) -> None:
        self._drawn()
        view = self.query_one("#attention-map", Static)
        ev = self.latest
        if ev is None:
            self.border_subtitle = "waiting for a plan"
            view.update("")
            return
        L, H, t, _ = ev.weights.shape
        self.map_layer, self.map_head = min(self.map_layer, L - 1), min(self.map_head, H)
        weights = ev.weights[self.map_layer, self.map_head] if self.map_head < H else ev.weights[self.map_layer].mean(0)
        width, height = view.size.width or 40, view.size.height or 20
        side = max(1, min(width, 2 * height))  # a half-block cell is two square pixels
        # a weight of exactly 0 is a key the mask hides (softmax of -inf): left blank
        cells = pool(np.where(weights == 0, np.nan, intensity(weights)), side, side)
        view.update(heatmap(cells))
        which = f"head {self.map_head}/{H - 1}" if self.map_head < H else "mean of heads"
        self.border_subtitle = (f"env {ev.env_index} · step {ev.step} · layer {self.map_layer}/{L - 1} · {which} · "
                                f"plan {ev.context}/{t}")


def heatmap(cells: np.ndarray) -> Text:
    """Rich text drawing `cells` [rows, cols] (values in [0, 1], NaN blank), two rows of
    cells per line in half blocks."""
    rgb = colours(cells)
    shade = ["#%02x%02x%02x" % tuple(c) for c in rgb.reshape(-1, 3)]
    cols = cells.shape[1]
    text = Text()
    for top in range(0, cells.shape[0], 2):
        for col in range(cols):
            upper = None if np.isnan(cells[top, col]) else shade[top * cols + col]
            has_lower = top + 1 < cells.shape[0] and not np.isnan(cells[top + 1, col])
            lower = shade[(top + 1) * cols + col] if has_lower else None
            if upper:
                text.append("▀", Style(color=upper, bgcolor=lower))
            elif lower:
                text.append("▄", Style(color=lower))
            else:
                text.append(" ")
        text.append("\n")
    text.rstrip()
    return text
