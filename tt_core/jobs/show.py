"""The `tt-tui show` job: a run read back as events. Its metrics history, the last beam
tree of each env of its latest evaluation, and the records written after (a run still
training, here, under torchrun, or on another machine over a shared file system).
Nothing here writes to a run it shows.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

from tt_core import events as ev
from tt_core.controls import Controls
from tt_core.errors import CheckpointError
from tt_core.runs.listing import summarize_run
from tt_core.files import METRICS_CAP, RunFileError, open_regular
from tt_core.runs.records import BadRecord, check_line
from tt_core.runs.snapshots import SNAPSHOTS_FILE, read_snapshots

POLL_S = 0.5  # how often a followed run's files are looked at


class _Tail:
    """New complete lines of a growing file (a line still being written waits). A resume
    rewrites metrics.jsonl as a new, shorter file that starts with lines already given:
    then it reads again from the start and skips that common beginning."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.inode: Optional[int] = None
        self.given: list[int] = []  # hashes of the lines given, in order

    def lines(self) -> list[str]:
        try:
            with open_regular(self.path) as f:
                stat = os.fstat(f.fileno())
                rewritten = self.inode is not None and (stat.st_ino != self.inode or stat.st_size < self.offset)
                if rewritten:
                    self.offset = 0
                self.inode = stat.st_ino
                f.seek(self.offset)
                data = f.read(METRICS_CAP)  # bounded: the rest, if any, on the next poll
        except (OSError, RunFileError):  # replaced by something unreadable: wait for a readable file
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        lines = data[:end].decode("utf-8", errors="replace").splitlines()
        if rewritten:
            same = 0
            while same < min(len(lines), len(self.given)) and hash(lines[same]) == self.given[same]:
                same += 1
            self.given = self.given[:same]
            lines = lines[same:]
        self.given.extend(hash(line) for line in lines)
        return lines


def show_job(run_dir: Path):
    """A job (see tt_core/jobs/factories.py) that replays run `run_dir` into the bus and follows it until
    the view asks it to stop."""
    root = Path(run_dir)
    try:
        open_regular(root / "metrics.jsonl").close()  # a FIFO, a device or a folder: one line, no view
    except FileNotFoundError:
        raise CheckpointError(f"{root}: no metrics.jsonl (not a tt-tui run directory?)") from None

    def job(bus: ev.EventBus, controls: Controls) -> None:
        run = summarize_run(root)
        bus.emit(ev.Message(f"showing {root} read-only: {run.state} ({run.why})"))
        tail = _Tail(root / "metrics.jsonl")
        snapshots_seen = None
        while True:
            for line in tail.lines():
                try:
                    bus.emit(check_line(line).event)
                except BadRecord:  # counted and named by the listing; the view shows what checks
                    continue
            try:
                stamp = (root / SNAPSHOTS_FILE).stat().st_mtime_ns
            except OSError:
                stamp = None
            if stamp != snapshots_seen:
                snapshots_seen = stamp
                for snap in read_snapshots(root):
                    bus.emit(snap)
            if controls.stop_requested:
                return
            time.sleep(POLL_S)  # two small reads a poll: the new lines, the snapshots' mtime

    return job
