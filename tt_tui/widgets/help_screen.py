"""The help screen (? or F1): every key binding, what it does, and when it applies."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

# (keys, what, where) in the order a user needs them; the app's BINDINGS use the same keys.
KEYS: list[tuple[str, str, str]] = [
    ("q, ctrl+c", "stop the job cleanly (training saves first) and quit; twice aborts", "all"),
    ("p", "pause / resume the job", "all"),
    ("s", "save a checkpoint now", "train"),
    ("l", "loss curves / learning rate", "train"),
    ("[  ]", "previous / next env", "eval"),
    ("f", "freeze / unfreeze the beam tree", "eval"),
    ("←  →", "step through the selected env's recent plans (freezes)", "eval"),
    ("r", "start / stop a GIF recording of the selected env", "eval"),
    ("e", "edit the planning parameters (enter applies, esc leaves)", "eval"),
    ("tab, shift+tab", "move focus between the tree and the inputs", "all"),
    ("ctrl+s, S", "save an SVG screenshot", "all"),
    ("?, f1", "this help", "all"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,question_mark,f1", "close", "Close"),
    ]

    def compose(self) -> ComposeResult:
        table = Table(box=None, padding=(0, 2), show_header=True, header_style="bold")
        table.add_column("key", no_wrap=True, style="bold cyan")
        table.add_column("action")
        table.add_column("mode", style="dim", no_wrap=True)
        for keys, what, where in KEYS:
            table.add_row(keys, what, where)
        with VerticalScroll(id="help-body"):
            yield Static("tt-tui keys", id="help-title")
            yield Static(table)
            yield Static("Mouse: click an env row to select it; click tree nodes to fold them.\n"
                         "esc closes this help.", id="help-foot")

    def action_close(self) -> None:
        self.dismiss()
