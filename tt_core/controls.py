"""The control channel, views -> engine: thread-safe requests read at step boundaries."""

from __future__ import annotations

import threading
from typing import Any


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
        self._lock = threading.Lock()
        self._plan_update: dict[str, Any] = {}
        self._record_toggles: list[int] = []
        self._plan_gifs: list[int] = []
        self._attention_env: int | None = None

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

    def request_plan_params(self, **params: Any) -> None:
        """Ask for new planning parameters (beam_width=64, ...); applied at the next plan.

        The engine validates them and answers with a Message (accepted or refused).
        """
        with self._lock:
            self._plan_update.update(params)

    def take_plan_params(self) -> dict[str, Any]:
        with self._lock:
            update, self._plan_update = self._plan_update, {}
        return update

    def toggle_recording(self, env_index: int) -> None:
        """Start recording `env_index` if it is not recorded, else stop and write its GIF."""
        self._put(self._record_toggles, env_index)

    def take_record_toggles(self) -> list[int]:
        return self._take(self._record_toggles)

    def request_plan_gif(self, env_index: int) -> None:
        """Write `env_index`'s next plan beside a simulator rollout of its actions as a GIF."""
        self._put(self._plan_gifs, env_index)

    def take_plan_gif_requests(self) -> list[int]:
        return self._take(self._plan_gifs)

    def show_attention(self, env_index: int | None) -> None:
        """Send the attention maps of env `env_index`'s plans (a few a second), or none
        (None): nothing is computed while no view shows them."""
        self._attention_env = env_index

    @property
    def attention_env(self) -> int | None:
        return self._attention_env

    def _put(self, queue: list[int], env_index: int) -> None:
        with self._lock:
            queue.append(env_index)

    def _take(self, queue: list[int]) -> list[int]:
        """Everything `queue` holds, in order; it is left empty."""
        with self._lock:
            taken = queue[:]
            queue.clear()
        return taken
