"""metrics.jsonl: the metric events of a run (RECORDED), one JSON object per line.

On resume the file is cut at the first TrainStep past the resumed step, so every step
has one record (`truncate_after_step`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

from tt_core import events
from tt_core.config import plan_from_record
from tt_core.errors import ConfigError
from tt_core.events import to_record


# Events worth keeping. Per-env-step events (EnvStep, Throughput) and beam snapshots
# are high-rate views of the live state, not metrics; they are not written.
RECORDED = (
    events.TrainStarted, events.TrainStep, events.Checkpointed, events.TrainFinished,
    events.Message, events.Failed, events.EvalStarted, events.EpisodeEnd, events.EvalFinished,
)


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
    run logs again). Rewritten atomically; returns the number of records dropped."""
    from tt_core.durable import atomic_write_text

    if not path.exists():
        return 0
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    torn = 1 if text and not text.endswith("\n") else 0  # a kill mid-write: never complete
    cut = len(lines) - torn
    for i, line in enumerate(lines[:cut]):
        record = parse_record(line)
        if record is not None and record.get("event") == "TrainStep" and _int(record.get("step")) > step:
            cut = i
            break
    if cut == len(lines):
        return 0
    atomic_write_text(path, "".join(kept + "\n" for kept in lines[:cut]))
    return len(lines) - cut


def read_metrics(path: Path) -> list[dict]:
    """All complete records of a metrics.jsonl: a torn last line, and any line that is
    not a JSON object (hand-edited or damaged: `[1, 2]`, a bare number, a nesting too
    deep to parse), is skipped."""
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    return [record for record in map(parse_record, lines) if record is not None]


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_record(line: str) -> Optional[dict]:
    """One metrics.jsonl line as a record, or None when it is not a JSON object."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


_BY_NAME = {cls.__name__: cls for cls in RECORDED}


def from_record(record: dict) -> Optional[Any]:
    """The event a metrics.jsonl record holds (None for a record of no known kind)."""
    cls = _BY_NAME.get(record.get("event", ""))
    if cls is None:
        return None
    fields = {k: v for k, v in record.items() if k not in ("event", "time")}
    try:
        if cls is events.EvalFinished:
            fields["results"] = tuple(fields.get("results", ()))
        if cls is events.EvalStarted:  # keys a run's records predate take today's defaults
            fields["plan"] = plan_from_record(fields["plan"])
        return cls(**fields)
    except (TypeError, KeyError, ConfigError):  # a record of another version of the event: skip it
        return None
