"""Speeds and resources: training and planning tokens/s, ms per plan, env steps/s,
device and process memory."""

from __future__ import annotations

from typing import Callable

from rich.table import Table
from textual.widgets import Static

from tt_tui.resources import human_bytes, process_rss_bytes


class ThroughputPanel(Static):
    def __init__(self, rss: Callable[[], int | None] = process_rss_bytes, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rss = rss
        self.device = "-"
        self.train_tps: float | None = None
        self.plan_tps: float | None = None
        self.ms_per_plan: float | None = None
        self.env_sps: float | None = None
        self.extra: dict[str, str] = {}

    def on_mount(self) -> None:
        self.border_title = "throughput"
        self.redraw()

    compact = False  # set by the app on small terminals: two numbers per row
    dirty = False  # new numbers waiting for `flush`

    def flush(self) -> None:
        if self.dirty:
            self.dirty = False
            self.redraw()

    def rows(self) -> list[tuple[str, str]]:
        def num(value: float | None, fmt: str) -> str:
            return "-" if value is None else format(value, fmt)

        rows = [("device", self.device)]
        if self.train_tps is not None or self.plan_tps is None:
            rows.append(("train tok/s", num(self.train_tps, ",.0f")))
        if self.plan_tps is not None or self.train_tps is None:
            rows.append(("plan tok/s", num(self.plan_tps, ",.0f")))
            rows.append(("ms / plan", num(self.ms_per_plan, ",.1f")))
            rows.append(("env steps/s", num(self.env_sps, ",.1f")))
        rows.append(("memory (RSS)", human_bytes(self.rss())))
        rows.extend(self.extra.items())
        return rows

    def redraw(self) -> None:
        rows = self.rows()
        if self.compact:
            table = Table.grid(padding=(0, 1))
            for _ in range(2):
                table.add_column(style="dim", no_wrap=True)
                table.add_column(justify="right", no_wrap=True)
            short = {"memory (RSS)": "RSS", "plan tok/s": "plan/s", "train tok/s": "tok/s",
                     "env steps/s": "env/s", "ms / plan": "ms/plan", "parameters": "params"}
            cells = [(short.get(k, k), _short_value(v)) for k, v in rows]
            for i in range(0, len(cells), 2):
                pair = cells[i : i + 2] + [("", "")] * (2 - len(cells[i : i + 2]))
                table.add_row(*pair[0], *pair[1])
            self.update(table)
            return
        table = Table.grid(padding=(0, 1))
        table.add_column(style="dim", no_wrap=True)
        table.add_column(justify="right", no_wrap=True)

        for key, value in rows:
            table.add_row(key, value)
        self.update(table)


def _short_value(text: str) -> str:
    """'48,250' -> '48.2k', '180.0 MB' -> '180 MB': numbers that fit half a narrow panel."""
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        number, _, unit = text.partition(" ")
        try:
            return f"{float(number):.0f} {unit}" if unit and float(number) >= 100 else text
        except ValueError:
            return text
    for limit, unit, suffix in ((1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if abs(value) >= limit:
            return f"{value / unit:.1f}{suffix}"
    return text
