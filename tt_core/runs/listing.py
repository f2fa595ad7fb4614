"""The runs under a folder, told apart from their files alone: what they trained on, how
far they got, their evaluations, and whether they are running, finished, stopped or
crashed.

A training process keeps `heartbeat.json` in its run directory fresh (every
HEARTBEAT_EVERY_S, with its host and pid), so a run whose metrics end without a
TrainFinished is "running" while its heartbeat is fresh and "crashed" once it is stale
(or its process is gone, on this host). A run whose newest checkpoint (the one a resume
or an evaluation would load) is not whole is "damaged", whatever its metrics say. No
torch here, and a run's metrics are read through the writer's digest (listing.json):
`tt-tui bench runs` times the listing of 1,000 runs.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from tt_core.durable import atomic_write_text
from tt_core.runs.ftt_layout import is_ftt_checkpoint
from tt_core.files import RunFileError, read_head
from tt_core.runs.digest import CRASHED, FINISHED, STOPPED, MetricsDigest
from tt_core.runs.reader import RunFilesRead, read_run_files, saved_checkpoints
from tt_core.runs.records import usable_number

HEARTBEAT_FILE = "heartbeat.json"
HEARTBEAT_EVERY_S = 10.0
STALE_AFTER_S = 6 * HEARTBEAT_EVERY_S  # a paused or busy run still beats; a dead one does not
RUNNING, DAMAGED, FOREIGN = "running", "damaged", "foreign"  # and FINISHED, STOPPED, CRASHED: what the metrics say


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
    state: str  # running | finished | stopped | crashed | damaged | foreign (an FTT folder)
    why: str  # one phrase: how the state was told
    started: Optional[float]  # unix time of the run's first start
    group: Optional[str] = None  # train.group of its config (e.g. the seeds of one experiment)
    seed: Optional[int] = None  # train.seed of its config

    def to_json(self) -> dict:
        return asdict(self)


def _alive_here(beat: dict) -> Optional[bool]:
    """Whether the heartbeat's process is alive, when it ran on this host (else None)."""
    pid = beat.get("pid")
    if beat.get("host") != socket.gethostname() or not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < 1 << 31:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _state(digest: MetricsDigest, beat: dict, now: float) -> tuple[str, str]:
    if digest.outcome is not None:  # the current training ended: finished, stopped or failed
        state, why = digest.outcome
        return state, why
    beat_time = beat.get("time")
    age = now - (float(beat_time) if usable_number(beat_time) else 0.0)
    alive = _alive_here(beat)
    if beat and alive is not False and age <= STALE_AFTER_S:
        return RUNNING, f"heartbeat {age:.0f} s ago"
    if alive is False:
        return CRASHED, f"process {beat.get('pid')} is gone"
    return CRASHED, "no heartbeat" if not beat else f"no heartbeat for {min(age, 1e9) / 60:.0f} min"


def checkpoint_problem(root: Path, latest: dict) -> Optional[str]:
    """Why the checkpoint latest.json names could not be loaded, from the files alone
    (cheap: no weights are read), or None when it looks whole or there is none yet.
    `latest`: latest.json's content as read by `read_run_files` ({} when missing; an
    unreadable one is already among the run's problems)."""
    root = Path(root)
    if not latest:
        pointer_file = root / "latest.json"
        if pointer_file.exists() or pointer_file.is_symlink():
            return "latest.json is unreadable or names no checkpoint"
        kept = saved_checkpoints(root)
        return f"latest.json is missing while checkpoints/ holds {len(kept)} (newest {kept[-1].name})" if kept else None
    rel = latest.get("checkpoint")
    if not isinstance(rel, str):
        return "latest.json names no checkpoint"
    ckpt = root / rel
    for name in ("model.safetensors", "trainer.pt"):
        path = ckpt / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return f"{rel}/{name} is missing"
        except OSError as exc:
            return f"{rel}/{name} is unreadable ({exc.strerror})"
        if size == 0:
            return f"{rel}/{name} is empty"
        if not os.access(path, os.R_OK):
            return f"{rel}/{name} is unreadable (permission denied)"
    weights = ckpt / "model.safetensors"
    try:  # safetensors: an 8-byte header length, a JSON header with each tensor's byte range, the bytes
        head = read_head(weights, 8)
        length = int.from_bytes(head, "little")
        size = weights.stat().st_size
        if length > min(size, 100 << 20):
            raise ValueError("header longer than the file")
        data = read_head(weights, 8 + length)
        header = json.loads(data[8:])
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if not isinstance(end, int):
            raise TypeError("byte offsets must be integers")
    except RunFileError as exc:
        return str(exc)
    except (OSError, ValueError, RecursionError, TypeError, KeyError, IndexError, AttributeError):
        return f"{rel}/model.safetensors is unreadable"
    if size < 8 + length + end:
        return f"{rel}/model.safetensors is truncated"
    return None


def summary_of(files: RunFilesRead, now: Optional[float] = None) -> RunSummary:
    """What a run's files, read once (`read_run_files`), say about it."""
    digest = files.digest
    saved = files.latest.get("step")
    saved = saved if isinstance(saved, int) and not isinstance(saved, bool) else None
    done = max((s for s in (digest.step, saved) if isinstance(s, int)), default=None)

    def rank(e: dict) -> float:
        value = e["score"] if e["score"] is not None else e["return"]
        return float("-inf") if value is None else float(value)

    state, why = _state(digest, files.heartbeat, time.time() if now is None else now)
    if digest.lines == 0 and not files.latest and is_ftt_checkpoint(files.root):  # never written by tt-tui
        state, why = FOREIGN, "a seed (FTT) checkpoint folder, not a tt-tui run: tt-tui eval plans with it"
    problem = next(iter(files.problems), None) or digest.first_skipped
    if problem is None and state not in (RUNNING, FOREIGN):  # while it runs, a save may be under way
        problem = checkpoint_problem(files.root, files.latest)
    if problem is not None:
        state, why = DAMAGED, _short(problem, files.root)
    evals = digest.evals
    return RunSummary(
        path=str(files.root), dataset=_text(files.dataset.get("dataset_id")), env=_text(files.dataset.get("env_id")),
        step=done, total_steps=digest.total_steps, last_loss=digest.loss,
        last_eval=evals[-1] if evals else None, best_eval=max(evals, key=rank) if evals else None,
        state=state, why=why, started=digest.started, group=files.config.group, seed=files.config.seed,
    )


def _text(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def _short(problem: str, root: Path) -> str:
    """A problem line without the run's own path in front (the listing names the run)."""
    prefix = f"{root}/"
    return problem[len(prefix):] if problem.startswith(prefix) else problem


def summarize_run(root: Path, now: Optional[float] = None) -> RunSummary:
    """What the files of run directory `root` say about it."""
    return summary_of(read_run_files(Path(root)), now)


def run_dirs(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The run directories directly under `folder` (those holding a config.yaml), and each
    entry that could not be looked at, with why."""
    roots: list[Path] = []
    problems: list[tuple[Path, str]] = []
    try:
        entries = sorted(Path(folder).iterdir())
    except OSError as exc:
        raise RunFileError(f"{folder}: cannot list it ({exc.strerror})") from None
    for p in entries:
        try:
            if p.is_dir() and (p / "config.yaml").exists():
                roots.append(p)
        except OSError as exc:
            problems.append((p, f"cannot look inside ({exc.strerror})"))
    return roots, problems


def _unreadable(root: Path, why: str) -> RunSummary:
    return RunSummary(path=str(root), dataset=None, env=None, step=None, total_steps=None, last_loss=None,
                      last_eval=None, best_eval=None, state=DAMAGED, why=why, started=None)


def scan_runs(folder: Path) -> list[tuple[RunSummary, Optional[RunFilesRead]]]:
    """Every run directory directly under `folder` with its files as read (None where the
    directory itself could not be looked at), newest start first; a run whose files cannot
    be read is listed as damaged with the reason, never hiding the others."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    roots, problems = run_dirs(folder)
    runs: list[tuple[RunSummary, Optional[RunFilesRead]]] = []
    for root in roots:
        files = read_run_files(root)
        runs.append((summary_of(files), files))
    runs += [(_unreadable(path, why), None) for path, why in problems]
    return sorted(runs, key=lambda r: r[0].started or 0.0, reverse=True)


def list_runs(folder: Path) -> list[RunSummary]:
    """`scan_runs`' summaries."""
    return [summary for summary, _ in scan_runs(folder)]


def started_text(run: RunSummary) -> str:
    return datetime.fromtimestamp(run.started).strftime("%Y-%m-%d %H:%M") if run.started else "-"
