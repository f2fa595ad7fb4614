"""metrics.jsonl: the metric events of a run (records.RECORDED), one JSON object per line,
written here (with the listing's digest of it, listing.json: tt_core/runs/digest.py) and
read back through tt_core/runs/reader.py.

On resume the file is cut at the first TrainStep past the resumed step, so every step
has one record (`truncate_after_step`)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Optional

from tt_core import events
from tt_core.durable import atomic_write_bytes
from tt_core.events import to_record
from tt_core.runs.digest import DIGEST_FILE, ConfigFacts, MetricsDigest, digest_json, stamp_of
from tt_core.files import METRICS_CAP, RunFileError, read_bytes
from tt_core.runs.reader import digest_of, parse_metrics, saved_config
from tt_core.runs.records import RECORDED, BadRecord, check_line


class MetricsWriter:
    """Event listener appending to a run's metrics.jsonl (append: resumes continue it),
    and keeping listing.json's digest of it and of config.yaml up to date.

    Each line is flushed so a killed run keeps every record written before the kill.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._digest = _digest_to_continue(path)
        self._config: Optional[tuple[Any, Optional[ConfigFacts]]] = None  # (config.yaml's stamp, its facts)
        self._file = open(path, "a", encoding="utf-8")

    def __call__(self, event: Any) -> None:
        if not isinstance(event, RECORDED):
            return
        record = to_record(event)
        record["time"] = round(time.time(), 3)
        line = json.dumps(record)
        try:
            self._file.write(line + "\n")
            self._file.flush()
        except OSError as exc:  # a full disk's error on an open file names no file: name it
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None
        if self._digest is not None:
            self._update_digest(line)

    def _update_digest(self, line: str) -> None:
        """Fold the line just written into the digest, as a reader would check it, and
        rewrite listing.json (no fsync: a cache a reader only uses while it matches)."""
        digest = self._digest
        digest.lines += 1
        try:
            digest.add(check_line(line))
        except BadRecord as exc:
            digest.skip(f"{self.path.name} line {digest.lines}: {exc}")
        st = os.fstat(self._file.fileno())
        try:
            text = digest_json(((st.st_size, st.st_mtime_ns), digest), self._config_part())
            atomic_write_bytes(self.path.parent / DIGEST_FILE, text.encode(), sync=False)
        except OSError:  # a full disk is metrics.jsonl's to report; a stale digest is never used
            pass

    def _config_part(self) -> Optional[tuple[Any, ConfigFacts]]:
        """config.yaml's stamp and facts, read again only when the file changed."""
        current = stamp_of(self.path.parent / "config.yaml")
        if current is None:
            return None
        if self._config is None or self._config[0] != current:
            data, why = saved_config(self.path.parent)
            self._config = (current, None if why else ConfigFacts.of(data))
        facts = self._config[1]
        return None if facts is None else (current, facts)

    def close(self) -> None:
        self._file.close()


def _digest_to_continue(path: Path) -> Optional[MetricsDigest]:
    """The digest of what `path` holds before the writer appends to it, or None when no
    digest can be kept (the file is unreadable, or ends in a torn line a new record would
    run into): readers then read the whole file."""
    try:
        data = read_bytes(path, METRICS_CAP)
    except FileNotFoundError:
        data = b""
    except RunFileError:
        return None
    if data and not data.endswith(b"\n"):
        return None
    return digest_of(parse_metrics(data, path.name))


def truncate_after_step(path: Path, step: int) -> int:
    """Cut metrics.jsonl where a resumed run at `step` takes over: at the first TrainStep
    past `step` (what the killed run logged after its last checkpoint, which the resumed
    run logs again). Read bounded (a metrics.jsonl that is a device or a runaway file is
    refused in one line), rewritten atomically; returns the number of records dropped."""
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
