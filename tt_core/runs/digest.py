"""listing.json: what a listing needs of a run's metrics.jsonl and config.yaml, kept up to
date by the writer so that `runs`, `runs --group` and `report` read a few small files per
run whatever its history (docs/run-directories.md).

`MetricsDigest` is a fold over the checked records of metrics.jsonl: the reader folds the
whole file when it has to, the writer folds each record as it appends it (after checking
the line it wrote, as a reader would), so both give the same digest. Each part of
listing.json carries the size and modification time (ns) of the file it was made from; a
reader uses a part only while its file still has that stamp, so a hand-edited, truncated,
replaced or still-growing file is read in full instead. listing.json is a cache: a
damaged or hostile one is ignored, never believed (every field is checked on load).
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from tt_core import events as ev
from tt_core.config import plan_from_record, to_dict
from tt_core.errors import ConfigError
from tt_core.runs.records import MAX_TEXT, TIME_RANGE, Recorded, usable_number

DIGEST_FILE = "listing.json"
VERSION = 1
Stamp = tuple[int, int]  # (size, mtime_ns) of a regular file
FINISHED, STOPPED, CRASHED = "finished", "stopped", "crashed"  # how a training ended, as its metrics say


def stamp_of(path: Path) -> Optional[Stamp]:
    """The stamp of regular file `path`, or None (missing, or not a regular file)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


@dataclass
class MetricsDigest:
    """What the listing and the report read of a metrics.jsonl, folded record by record."""

    lines: int = 0  # complete lines seen (so the writer can number the next one)
    skipped: int = 0  # complete lines that did not check
    first_skipped: Optional[str] = None  # "metrics.jsonl line N: why"
    started: Optional[float] = None  # time of the first TrainStarted
    total_steps: Optional[int] = None  # of the last TrainStarted
    step: Optional[int] = None  # of the last TrainStep
    loss: Optional[float] = None  # of the last TrainStep
    evals: list[dict] = field(default_factory=list)  # {"step", "return", "score"} of each evaluation not stopped
    outcome: Optional[list[str]] = None  # [state, why] once the current training ended (TrainFinished or Failed)
    eval_stopped: bool = False  # the newest evaluation since the last TrainStep was stopped
    plan: Optional[dict] = None  # the plan of the newest EvalStarted
    final: Optional[dict] = None  # the newest evaluation after an EvalStarted, as `report` reads it

    def add(self, recorded: Recorded) -> None:
        """Fold in one checked record."""
        e = recorded.event
        if isinstance(e, ev.TrainStarted):
            if self.total_steps is None:  # the first start (total_steps is set by every one)
                self.started = recorded.time
            self.total_steps, self.outcome, self.eval_stopped = e.total_steps, None, False
        elif isinstance(e, ev.TrainStep):
            self.step, self.loss, self.eval_stopped = e.step, e.loss, False
        elif isinstance(e, ev.EvalStarted):
            self.plan = to_dict(e.plan)
        elif isinstance(e, ev.EvalFinished):
            self._add_eval(e)
        elif isinstance(e, ev.TrainFinished):
            self.outcome = ([STOPPED, "stopped early"] if e.stopped_early else
                            [STOPPED, "its final evaluation was stopped"] if self.eval_stopped else
                            [FINISHED, "reached its last step"])
        elif isinstance(e, ev.Failed):
            self.outcome = [CRASHED, f"failed: {e.error}"]

    def _add_eval(self, e: ev.EvalFinished) -> None:
        stopped = bool(e.summary.get("stopped"))
        self.eval_stopped = stopped
        if not stopped:  # a stopped evaluation's cut-short episodes are no score
            at = e.step if e.step is not None else self.step  # older records: the last logged step
            self.evals.append({"step": at, "return": _finite(e.summary.get("return_mean")),
                               "score": _finite(e.summary.get("score_mean"))})
        if self.plan is not None:
            # an episode counts when it ended without an error and its return is a usable number
            done = [r for r in e.results if r.get("error") is None and r.get("episode_return") is not None]
            self.final = {"plan": self.plan, "step": e.step, "stopped": stopped,
                          "returns": [float(r["episode_return"]) for r in done],
                          "scores": [float(r["score"]) for r in done if r.get("score") is not None],
                          "failed": len(e.results) - len(done)}

    def skip(self, where: str) -> None:
        """Count one complete line that did not check (`where`: its line and why)."""
        self.skipped += 1
        self.first_skipped = self.first_skipped or where

    @classmethod
    def of(cls, records: Iterable[Recorded], lines: int, skipped: int, first_skipped: Optional[str]) -> "MetricsDigest":
        digest = cls(lines=lines, skipped=skipped, first_skipped=first_skipped)
        for r in records:
            digest.add(r)
        return digest


def _finite(value: Any) -> Optional[float]:
    """A number, or None for a missing or NaN/inf one (every episode failed)."""
    return float(value) if usable_number(value) else None


@dataclass(frozen=True)
class ConfigFacts:
    """What the listing and the report read of a run's config.yaml."""

    group: Optional[str] = None  # train.group
    seed: Optional[int] = None  # train.seed
    max_steps: Any = None  # eval.max_steps, as written (a scalar)

    @classmethod
    def of(cls, config: dict) -> "ConfigFacts":
        train, evaluation = config.get("train"), config.get("eval")
        train = train if isinstance(train, dict) else {}
        group, seed = train.get("group"), train.get("seed")
        max_steps = evaluation.get("max_steps") if isinstance(evaluation, dict) else None
        return cls(group if isinstance(group, str) else None, seed if _is_int(seed) else None,
                   max_steps if _scalar(max_steps) else str(max_steps))


# ------------------------------------------------------------------ listing.json


def digest_json(metrics: tuple[Stamp, MetricsDigest], config: Optional[tuple[Stamp, ConfigFacts]]) -> str:
    """listing.json's content for these parts (config None: not cached)."""
    data: dict[str, Any] = {"version": VERSION, "metrics": {"stamp": list(metrics[0]), **dataclasses.asdict(metrics[1])}}
    if config is not None:
        data["config"] = {"stamp": list(config[0]), **dataclasses.asdict(config[1])}
    return json.dumps(data, allow_nan=False)


def cached_metrics(data: dict, current: Optional[Stamp]) -> Optional[MetricsDigest]:
    """The metrics part of listing.json `data` when it is whole and made from the file
    whose stamp is `current`; else None (read metrics.jsonl itself)."""
    part = _part(data, "metrics", current)
    if part is None:
        return None
    try:
        return _checked_digest(part)
    except (TypeError, ValueError, KeyError, ConfigError, RecursionError):
        return None


def cached_config(data: dict, current: Optional[Stamp]) -> Optional[ConfigFacts]:
    """The config part of listing.json `data`, as `cached_metrics`."""
    part = _part(data, "config", current)
    if part is None or set(part) != {f.name for f in dataclasses.fields(ConfigFacts)}:
        return None
    group, seed, max_steps = part["group"], part["seed"], part["max_steps"]
    if not (group is None or _text(group)) or not (seed is None or _is_int(seed)) or not _scalar(max_steps):
        return None
    return ConfigFacts(group, seed, max_steps)


def _part(data: dict, name: str, current: Optional[Stamp]) -> Optional[dict]:
    part = data.get(name) if data.get("version") == VERSION else None
    if current is None or not isinstance(part, dict) or part.get("stamp") != list(current):
        return None
    return {k: v for k, v in part.items() if k != "stamp"}


def _checked_digest(part: dict) -> MetricsDigest:
    """A MetricsDigest from listing.json's fields, each of its type, or an exception."""
    if set(part) != {f.name for f in dataclasses.fields(MetricsDigest)}:
        raise KeyError("not the fields of this version")
    for name in ("lines", "skipped"):
        _need(_is_int(part[name]) and part[name] >= 0)
    _need(part["first_skipped"] is None or _text(part["first_skipped"]))
    started = part["started"]
    _need(started is None or (usable_number(started) and TIME_RANGE[0] <= started <= TIME_RANGE[1]))
    for name in ("total_steps", "step"):
        _need(part[name] is None or _is_int(part[name]))
    _need(part["loss"] is None or usable_number(part["loss"]))
    _need(isinstance(part["evals"], list) and all(_eval_ok(e) for e in part["evals"]))
    outcome = part["outcome"]
    _need(outcome is None or (isinstance(outcome, list) and len(outcome) == 2 and outcome[0] in (FINISHED, STOPPED, CRASHED)
                              and _text(outcome[1])))
    _need(isinstance(part["eval_stopped"], bool))
    plan = part["plan"]
    _need(plan is None or isinstance(plan, dict))
    part["plan"] = None if plan is None else to_dict(plan_from_record(plan))  # ConfigError when not a plan
    part["final"] = _checked_final(part["final"])
    return MetricsDigest(**part)


def _checked_final(final: Any) -> Optional[dict]:
    if final is None:
        return None
    _need(isinstance(final, dict) and set(final) == {"plan", "step", "stopped", "returns", "scores", "failed"})
    _need(isinstance(final["plan"], dict) and (final["step"] is None or _is_int(final["step"])))
    _need(isinstance(final["stopped"], bool) and _is_int(final["failed"]) and final["failed"] >= 0)
    _need(all(isinstance(final[k], list) and all(usable_number(x) for x in final[k]) for k in ("returns", "scores")))
    return {**final, "plan": to_dict(plan_from_record(final["plan"]))}


def _eval_ok(e: Any) -> bool:
    return (isinstance(e, dict) and set(e) == {"step", "return", "score"} and (e["step"] is None or _is_int(e["step"]))
            and all(e[k] is None or usable_number(e[k]) for k in ("return", "score")))


def _need(ok: bool) -> None:
    if not ok:
        raise ValueError("listing.json field of the wrong type")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and usable_number(value)


def _text(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= MAX_TEXT


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool) or _is_int(value) or usable_number(value) or _text(value)
