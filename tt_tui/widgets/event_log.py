"""Engine messages, failures, checkpoints and episode ends, newest at the bottom."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

STYLES = {"info": "", "warning": "yellow", "error": "bold red"}


class EventLog(RichLog):
    def __init__(self, **kwargs) -> None:
        super().__init__(max_lines=2000, wrap=True, markup=False, min_width=20, **kwargs)
        self.lines_text: list[str] = []  # plain copy, for tests and screenshots

    def on_mount(self) -> None:
        self.border_title = "log"

    def add(self, text: str, level: str = "info") -> None:
        self.lines_text.append(text)
        if len(self.lines_text) > 2000:
            del self.lines_text[:1000]
        self.write(Text(text, style=STYLES.get(level, "")))
