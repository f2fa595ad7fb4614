"""The rich Console every command prints through.

rich ends a write to a closed reader (`tt-tui eval ... | head -1`) with its own silent exit 1,
which reads as an internal error; here it ends as every other closed stdout does:
quietly, exit 141 (tt_tui.cli.exits.exit_quietly_on_closed_stdout).
"""

from __future__ import annotations

from rich.console import Console as RichConsole


class Console(RichConsole):
    def on_broken_pipe(self) -> None:
        from tt_tui.cli.exits import exit_quietly_on_closed_stdout

        self.quiet = True
        exit_quietly_on_closed_stdout(self.file)
