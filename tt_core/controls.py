"""The control channel, views -> engine: thread-safe requests read at step boundaries."""

from __future__ import annotations

import threading


class Controls:
    """Requests from a view (TUI keys, Ctrl+C handler) to the running engine job.

    The engine polls these between two optimizer steps (or two plans), so a request
    never interrupts a half-done step and never needs a lock on the engine side.
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._save = threading.Event()
        self._running = threading.Event()
        self._running.set()  # not paused

    def request_stop(self) -> None:
        self._stop.set()
        self._running.set()  # a paused job must wake up to stop

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def request_save(self) -> None:
        self._save.set()

    def take_save_request(self) -> bool:
        """True once per request: the engine saves, then the flag is cleared."""
        if self._save.is_set():
            self._save.clear()
            return True
        return False

    def set_paused(self, paused: bool) -> None:
        if paused:
            self._running.clear()
        else:
            self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def wait_while_paused(self) -> None:
        self._running.wait()
