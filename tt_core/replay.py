"""A run read back as events, for `tt-tui show`: its metrics history, the last beam tree
of each env of its latest evaluation, and the records written after (a run still
training, here, under torchrun, or on another machine over a shared file system).

Training writes the beam trees (`SnapshotWriter`) to `snapshots.json` at the end of
every evaluation: plain JSON, never pickle. Nothing here writes to a run it shows.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from tt_core import events as ev
from tt_core.controls import Controls
from tt_core.durable import atomic_write_text
from tt_core.errors import CheckpointError
from tt_core.metrics import RECORDED
from tt_core.runs import summarize_run

SNAPSHOTS_FILE = "snapshots.json"
POLL_S = 0.5  # how often a followed run's files are looked at
_BY_NAME = {cls.__name__: cls for cls in RECORDED}


def from_record(record: dict) -> Optional[Any]:
    """The event a metrics.jsonl record holds (None for a record of no known kind)."""
    cls = _BY_NAME.get(record.get("event", ""))
    if cls is None:
        return None
    fields = {k: v for k, v in record.items() if k not in ("event", "time")}
    try:
        if cls is ev.EvalFinished:
            fields["results"] = tuple(fields.get("results", ()))
        return cls(**fields)
    except TypeError:  # a record of another version of the event: skip it
        return None


def snapshot_to_json(snap: ev.PlanSnapshot) -> dict:
    # 5 decimals: the tree's numbers as the view prints them, at a fraction of the bytes
    steps = [{k: np.round(getattr(s, k), 5).tolist() for k in ("parent", "score", "action", "reward", "value")}
             for s in snap.snapshot.steps]
    return {"step": snap.step, "env_index": snap.env_index, "steps": steps, "chosen": list(snap.snapshot.chosen)}


def snapshot_from_json(data: dict) -> ev.PlanSnapshot:
    steps = [ev.BeamStep(np.asarray(s["parent"], dtype=np.int64), np.asarray(s["score"]),
                         np.asarray(s["action"]), np.asarray(s["reward"]), np.asarray(s["value"]))
             for s in data["steps"]]
    return ev.PlanSnapshot(int(data["step"]), int(data["env_index"]),
                           ev.BeamSnapshot(steps, [int(c) for c in data["chosen"]]))


class SnapshotWriter:
    """Event listener keeping each env's latest beam tree; at the end of an evaluation it
    writes them all to <run>/snapshots.json (atomically)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / SNAPSHOTS_FILE
        self._latest: dict[int, ev.PlanSnapshot] = {}

    def __call__(self, event: Any) -> None:
        if isinstance(event, ev.EvalStarted):
            self._latest.clear()
        elif isinstance(event, ev.PlanSnapshot):
            self._latest[event.env_index] = event
        elif isinstance(event, ev.EvalFinished) and self._latest:
            data = [snapshot_to_json(s) for _, s in sorted(self._latest.items())]
            atomic_write_text(self.path, json.dumps({"snapshots": data}))


def read_snapshots(run_dir: Path) -> list[ev.PlanSnapshot]:
    """The beam trees of the run's latest evaluation ([] when there are none or the file
    is unreadable: the view goes on without them)."""
    try:
        data = json.loads((Path(run_dir) / SNAPSHOTS_FILE).read_text())
        return [snapshot_from_json(d) for d in data["snapshots"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


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
            with open(self.path, "rb") as f:
                stat = os.fstat(f.fileno())
                rewritten = self.inode is not None and (stat.st_ino != self.inode or stat.st_size < self.offset)
                if rewritten:
                    self.offset = 0
                self.inode = stat.st_ino
                f.seek(self.offset)
                data = f.read()
        except OSError:
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
    """A job (see engine.py) that replays run `run_dir` into the bus and follows it until
    the view asks it to stop."""
    root = Path(run_dir)
    if not (root / "metrics.jsonl").is_file():
        raise CheckpointError(f"{root}: no metrics.jsonl (not a tt-tui run directory?)")

    def job(bus: ev.EventBus, controls: Controls) -> None:
        run = summarize_run(root)
        bus.emit(ev.Message(f"showing {root} read-only: {run.state} ({run.why})"))
        tail = _Tail(root / "metrics.jsonl")
        snapshots_seen = None
        while True:
            for line in tail.lines():
                try:
                    event = from_record(json.loads(line))
                except json.JSONDecodeError:
                    continue
                if event is not None:
                    bus.emit(event)
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
