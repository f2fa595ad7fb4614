"""metrics.jsonl: the metric events of a run (records.RECORDED), one JSON object per line,
written here and read back through tt_core/runs/reader.py.

On resume the file is cut at the first TrainStep past the resumed step, so every step
has one record (`truncate_after_step`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tt_core import events
from tt_core.events import to_record
from tt_core.runs.files import METRICS_CAP, read_bytes
from tt_core.runs.records import RECORDED, BadRecord, check_line


class MetricsWriter:
    """Event listener appending to a run's metrics.jsonl (append: resumes continue it).

    Each line is flushed so a killed run keeps every record written before the kill.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "a", encoding="utf-8")

    def __call__(self, event: Any) -> None:
        if not isinstance(event, RECORDED):
            return
        record = to_record(event)
        record["time"] = round(time.time(), 3)
        try:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as exc:  # a full disk's error on an open file names no file: name it
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None

    def close(self) -> None:
        self._file.close()


def truncate_after_step(path: Path, step: int) -> int:
    """Cut metrics.jsonl where a resumed run at `step` takes over: at the first TrainStep
    past `step` (what the killed run logged after its last checkpoint, which the resumed
    run logs again). Read bounded (a metrics.jsonl that is a device or a runaway file is
    refused in one line), rewritten atomically; returns the number of records dropped."""
    from tt_core.durable import atomic_write_bytes

    try:
        data = read_bytes(path, METRICS_CAP)
    except FileNotFoundError:
        return 0
    lines = data.split(b"\n")[:-1]  # complete lines; a torn last one (a kill mid-write) is dropped
    cut = len(lines)
    for i, line in enumerate(lines):
        try:
            event = check_line(line.decode("utf-8", errors="replace")).event
        except BadRecord:  # a damaged line of the killed run's history stays as it was
            continue
        if isinstance(event, events.TrainStep) and event.step > step:
            cut = i
            break
    kept = b"".join(line + b"\n" for line in lines[:cut])
    if kept == data:
        return 0
    atomic_write_bytes(path, kept)
    return len(lines) - cut + (1 if not data.endswith(b"\n") and data else 0)
