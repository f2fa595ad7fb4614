"""snapshots.json: the last beam tree of each env of a run's latest evaluation.

Training writes them (`SnapshotWriter`) at the end of every evaluation, as plain JSON,
never pickle; `tt-tui show` reads them back (`read_snapshots`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tt_core import events as ev
from tt_core.durable import atomic_write_text
from tt_core.files import SNAPSHOTS_CAP, RunFileError, read_bytes

SNAPSHOTS_FILE = "snapshots.json"


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
    is unreadable: the view goes on without them). Read bounded, a regular file only: a
    FIFO or a device there would block or fill the view's memory."""
    try:
        data = json.loads(read_bytes(Path(run_dir) / SNAPSHOTS_FILE, SNAPSHOTS_CAP))
        return [snapshot_from_json(d) for d in data["snapshots"]]
    except (OSError, ValueError, KeyError, TypeError, RecursionError, RunFileError):
        return []
