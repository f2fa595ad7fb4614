"""The runs under a folder, told apart from their files alone: what they trained on, how
far they got, their evaluations, and whether they are running, finished, stopped or
crashed.

A training process keeps `heartbeat.json` in its run directory fresh (every
HEARTBEAT_EVERY_S, with its host and pid), so a run whose metrics end without a
TrainFinished is "running" while its heartbeat is fresh and "crashed" once it is stale
(or its process is gone, on this host). A run whose newest checkpoint (the one a resume
or an evaluation would load) is not whole is "damaged", whatever its metrics say. No
torch here: `tt-tui runs` is instant.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import yaml

from tt_core.durable import atomic_write_text
from tt_core.runs.metrics import read_metrics

HEARTBEAT_FILE = "heartbeat.json"
HEARTBEAT_EVERY_S = 10.0
STALE_AFTER_S = 6 * HEARTBEAT_EVERY_S  # a paused or busy run still beats; a dead one does not
RUNNING, FINISHED, STOPPED, CRASHED, DAMAGED = "running", "finished", "stopped", "crashed", "damaged"


class Heartbeat:
    """Context manager: a daemon thread rewriting heartbeat.json while training runs."""

    def __init__(self, run_dir: Path, step: Any) -> None:
        self.path = Path(run_dir) / HEARTBEAT_FILE
        self.step = step  # callable: the current step
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="tt-heartbeat", daemon=True)

    def _write(self) -> None:
        beat = {"host": socket.gethostname(), "pid": os.getpid(), "time": round(time.time(), 3),
                "step": int(self.step())}
        try:
            atomic_write_text(self.path, json.dumps(beat))
        except OSError:  # a full disk is the checkpoint's to report, not the heartbeat's
            pass

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_EVERY_S):
            self._write()

    def __enter__(self) -> "Heartbeat":
        self._write()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class RunSummary:
    path: str
    dataset: Optional[str]
    env: Optional[str]
    step: Optional[int]  # the newest step logged or checkpointed
    total_steps: Optional[int]
    last_loss: Optional[float]
    last_eval: Optional[dict]  # {"step", "return", "score"} of the newest evaluation
    best_eval: Optional[dict]  # the one with the highest score (return where no score)
    state: str  # running | finished | stopped | crashed | damaged
    why: str  # one phrase: how the state was told
    started: Optional[float]  # unix time of the run's first start
    group: Optional[str] = None  # train.group of its config (e.g. the seeds of one experiment)
    seed: Optional[int] = None  # train.seed of its config

    def to_json(self) -> dict:
        return asdict(self)


def _records(path: Path) -> list[dict]:
    try:
        return [r for r in read_metrics(path) if isinstance(r, dict)]
    except OSError:
        return []


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def run_config(root: Path) -> dict:
    """The run's saved config.yaml as plain data ({} when unreadable: the run is then
    reported by its other files)."""
    try:
        data = yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _alive_here(beat: dict) -> Optional[bool]:
    """Whether the heartbeat's process is alive, when it ran on this host (else None)."""
    if beat.get("host") != socket.gethostname() or not isinstance(beat.get("pid"), int):
        return None
    try:
        os.kill(beat["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _state(records: list[dict], beat: dict, now: float) -> tuple[str, str]:
    last_start = max((i for i, r in enumerate(records) if r.get("event") == "TrainStarted"), default=-1)
    tail = records[last_start + 1 :] if last_start >= 0 else records
    for r in reversed(tail):
        if r.get("event") == "TrainFinished":
            return (STOPPED, "stopped early") if r.get("stopped_early") else (FINISHED, "reached its last step")
        if r.get("event") == "Failed":
            return CRASHED, f"failed: {r.get('error', '?')}"
    age = now - float(beat.get("time", 0) or 0)
    alive = _alive_here(beat)
    if beat and alive is not False and age <= STALE_AFTER_S:
        return RUNNING, f"heartbeat {age:.0f} s ago"
    if alive is False:
        return CRASHED, f"process {beat.get('pid')} is gone"
    return CRASHED, "no heartbeat" if not beat else f"no heartbeat for {age / 60:.0f} min"


def checkpoint_problem(root: Path) -> Optional[str]:
    """Why the checkpoint latest.json names could not be loaded, from the files alone
    (cheap: no weights are read), or None when it looks whole or there is none yet."""
    pointer_file = root / "latest.json"
    if not pointer_file.exists():
        return None
    pointer = _json(pointer_file)
    rel = pointer.get("checkpoint")
    if not isinstance(rel, str):
        return "latest.json is unreadable or names no checkpoint"
    ckpt = root / rel
    for name in ("model.safetensors", "trainer.pt"):
        try:
            size = (ckpt / name).stat().st_size
        except OSError:
            return f"{rel}/{name} is missing"
        if size == 0:
            return f"{rel}/{name} is empty"
    weights = ckpt / "model.safetensors"
    try:  # safetensors: an 8-byte header length, a JSON header with each tensor's byte range, the bytes
        with open(weights, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(min(length, 100 << 20)))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if not isinstance(end, int):
            raise TypeError("byte offsets must be integers")
        size = weights.stat().st_size
    except (OSError, ValueError, RecursionError, TypeError, KeyError, IndexError, AttributeError):
        return f"{rel}/model.safetensors is unreadable"
    if size < 8 + length + end:
        return f"{rel}/model.safetensors is truncated"
    return None


def _finite(value: Any) -> Optional[float]:
    """A number, or None for a missing or NaN/inf one (every episode failed)."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _eval(record: dict, step: Optional[int]) -> dict:
    s = record.get("summary") or {}
    at = record.get("step") if isinstance(record.get("step"), int) else step  # older records: the last logged step
    return {"step": at, "return": _finite(s.get("return_mean")), "score": _finite(s.get("score_mean"))}


def summarize_run(root: Path, now: Optional[float] = None) -> RunSummary:
    """What the files of run directory `root` say about it."""
    root = Path(root)
    records = _records(root / "metrics.jsonl")
    meta = _json(root / "dataset.json")
    latest = _json(root / "latest.json")
    beat = _json(root / HEARTBEAT_FILE)
    steps = [r for r in records if r.get("event") == "TrainStep"]
    starts = [r for r in records if r.get("event") == "TrainStarted"]
    step = None
    evals: list[dict] = []
    for r in records:
        if r.get("event") == "TrainStep":
            step = r.get("step")
        elif r.get("event") == "EvalFinished":
            evals.append(_eval(r, step))
    saved = latest.get("step") if isinstance(latest.get("step"), int) else None
    done = max((s for s in (step, saved) if isinstance(s, int)), default=None)

    def rank(e: dict) -> float:
        value = e["score"] if e["score"] is not None else e["return"]
        return float("-inf") if value is None else float(value)

    train = run_config(root).get("train")
    train = train if isinstance(train, dict) else {}
    state, why = _state(records, beat, time.time() if now is None else now)
    problem = checkpoint_problem(root) if state != RUNNING else None  # a save may be under way
    if problem is not None:
        state, why = DAMAGED, problem
    return RunSummary(
        path=str(root), dataset=meta.get("dataset_id"), env=meta.get("env_id"), step=done,
        total_steps=starts[-1].get("total_steps") if starts else None,
        last_loss=steps[-1].get("loss") if steps else None,
        last_eval=evals[-1] if evals else None, best_eval=max(evals, key=rank) if evals else None,
        state=state, why=why, started=starts[0].get("time") if starts else None,
        group=train.get("group") if isinstance(train.get("group"), str) else None,
        seed=train.get("seed") if isinstance(train.get("seed"), int) else None,
    )


def _summary_or_damaged(root: Path) -> RunSummary:
    """summarize_run, or a damaged run when its files defeat it: one bad run must not
    hide the others."""
    try:
        return summarize_run(root)
    except Exception as exc:  # noqa: BLE001 - whatever a hand-edited file makes the readers raise
        return RunSummary(path=str(root), dataset=None, env=None, step=None, total_steps=None, last_loss=None,
                          last_eval=None, best_eval=None, state=DAMAGED, why=f"unreadable ({type(exc).__name__})",
                          started=None)


def list_runs(folder: Path) -> list[RunSummary]:
    """Every run directory directly under `folder`, newest start first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    roots = [p for p in folder.iterdir() if p.is_dir() and (p / "config.yaml").is_file()]
    runs = [_summary_or_damaged(p) for p in roots]
    return sorted(runs, key=lambda r: r.started or 0.0, reverse=True)


def started_text(run: RunSummary) -> str:
    return datetime.fromtimestamp(run.started).strftime("%Y-%m-%d %H:%M") if run.started else "-"
