"""The help screen (? or F1): every key binding, what it does, and when it applies."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tt_tui.keys import KEYS, shown


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,question_mark,f1", "close", "Close"),
    ]

    def compose(self) -> ComposeResult:
        table = Table(box=None, padding=(0, 2), show_header=True, header_style="bold")
        table.add_column("key", no_wrap=True, style="bold cyan")
        table.add_column("action")
        table.add_column("mode", style="dim", no_wrap=True)
        for key in KEYS:
            table.add_row(", ".join(shown(k) for k in key.keys), key.what, key.mode)
        with VerticalScroll(id="help-body"):
            yield Static("tt-tui keys", id="help-title")
            yield Static(table)
            yield Static("Mouse: click an env row to select it; click tree nodes to fold them.\n"
                         "esc closes this help.", id="help-foot")

    def action_close(self) -> None:
        self.dismiss()
