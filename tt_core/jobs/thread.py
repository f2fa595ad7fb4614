"""The thread that runs one engine job for a view (the Textual app).

No torch here: `tt-tui show` runs a job that only reads files, and opens at once.
"""

from __future__ import annotations

import queue
import threading
import traceback
from typing import Any, Callable

from tt_core.controls import Controls
from tt_core.errors import TTError, as_user_error
from tt_core.threads import reserve_core
from tt_core.events import EventBus, Failed, Message

Job = Callable[[EventBus, Controls], Any]


class JobThread:
    """Runs one job on a daemon thread; events reach the view through `events`.

    `exit_code` follows the CLI's codes once the job ends: 0, the TTError's code, or 1.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self.bus = EventBus()
        self.controls = Controls()
        self.events: "queue.Queue[Any]" = queue.Queue()
        self.bus.subscribe(self.events.put)
        self.exit_code: int | None = None
        self.result: Any = None
        self._thread = threading.Thread(target=self._run, name="tt-engine", daemon=True)

    def subscribe(self, listener: Callable[[Any], None]) -> None:
        self.bus.subscribe(listener)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        reserve_core()  # the dashboard's thread keeps a core (the job sets its threads: tt_core/threads.py)
        try:
            self.result = self.job(self.bus, self.controls)
            self.exit_code = 0
        except TTError as exc:
            self.exit_code = exc.exit_code
            self.bus.emit(Failed(str(exc), exc.exit_code))
        except BaseException as exc:  # a full or read-only disk, else a bug: the view stays alive
            user = as_user_error(exc)
            if user is not None:
                self.exit_code = user.exit_code
                self.bus.emit(Failed(str(user), user.exit_code))
                return
            self.exit_code = 1
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            self.bus.emit(Failed(f"internal error: {last}", 1))
            self.bus.emit(Message(traceback.format_exc(), level="error"))

    def drain(self, limit: int = 10_000) -> list[Any]:
        """Events waiting for the view, oldest first (never blocks)."""
        out = []
        while len(out) < limit:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                break
        return out

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the job to stop (training saves first) and wait; True when it ended."""
        self.controls.request_stop()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

