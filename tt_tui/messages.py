"""Custom Textual messages: widgets -> app (the app alone talks to the engine)."""

from __future__ import annotations

from typing import Any

from textual.message import Message


class EnvSelected(Message):
    """The user picked env `index` (row click in the returns table)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index


class PlanParamsRequested(Message):
    """Validated planning parameters to send to the engine (only changed keys)."""

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__()
        self.params = params


class PlanEditRefused(Message):
    """A planning edit failed validation in the UI; nothing was sent."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason
