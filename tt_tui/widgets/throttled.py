"""Panels that redraw at most every MIN_REDRAW_S seconds, however fast their events come."""

from __future__ import annotations

import time


class ThrottledRedraw:
    """Mixin for a panel that defines `redraw`: its `add` marks it dirty (`self._dirty =
    True`), the app's drain calls `flush`, and its `redraw` starts with `self._drawn()`."""

    MIN_REDRAW_S = 1.0  # a panel whose drawing costs tens of ms: once a second is plenty
    _dirty = False
    _last_draw = 0.0

    def flush(self, force: bool = False) -> None:
        if self._dirty and (force or time.monotonic() - self._last_draw >= self.MIN_REDRAW_S):
            self.redraw()

    def _drawn(self) -> None:
        self._dirty = False
        self._last_draw = time.monotonic()
