"""metrics.jsonl records checked against the typed events they hold.

A record is a JSON object `{"event": NAME, "time": T, ...fields}`. `check_record` turns
one into its event only when every field has its event's type (an int is an int, not a
bool or a string), every number is finite and within `MAX_ABS` (no return of 1e200 or a
400-digit integer reaches the statistics), every text is bounded, and the nested parts
(an evaluation's plan, summary and episode results) have their own shapes. Anything else
is a `BadRecord` naming the field; readers skip such a record and count it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Optional

from tt_core import events
from tt_core.config import LIMITS, PlanConfig, check_limit, plan_from_record
from tt_core.errors import ConfigError

MAX_ABS = 1e15  # larger than any return, loss or count a run makes; small enough that sums of squares stay finite
MAX_TEXT = 10_000  # characters in one text field (an error line, a path)
TIME_RANGE = (0.0, 1e11)  # unix times a record may carry (1e11 s is the year 5138)

RECORDED = (
    events.TrainStarted, events.TrainStep, events.Checkpointed, events.TrainFinished,
    events.Message, events.Failed, events.EvalStarted, events.EpisodeEnd, events.EvalFinished,
)
_BY_NAME = {cls.__name__: cls for cls in RECORDED}
_HINTS = {cls: typing.get_type_hints(cls) for cls in RECORDED}


class BadRecord(ValueError):
    """A record that does not hold its event: the message names the field and why."""


@dataclass(frozen=True)
class Recorded:
    """One checked record: its event and the time it was written (None: not recorded)."""

    event: Any
    time: Optional[float]


def usable_number(value: Any) -> bool:
    """A JSON number statistics can use: not a bool, finite, within MAX_ABS."""
    # an exact comparison: False for NaN and inf, and no float conversion of a huge integer
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= MAX_ABS


def _check(value: Any, hint: Any, where: str) -> Any:
    """`value` as type `hint`, or BadRecord."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return _check(value, inner, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise BadRecord(f"{where} must be true or false, not {_shown(value)}")
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool) or abs(value) > MAX_ABS:
            raise BadRecord(f"{where} must be an integer within ±{MAX_ABS:g}, not {_shown(value)}")
        return value
    if hint is float:
        if not usable_number(value):
            raise BadRecord(f"{where} must be a finite number within ±{MAX_ABS:g}, not {_shown(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise BadRecord(f"{where} must be a text of at most {MAX_TEXT} characters, not {_shown(value)}")
        return value
    if hint is dict:
        if not isinstance(value, dict):
            raise BadRecord(f"{where} must be an object, not {_shown(value)}")
        return value
    if hint is PlanConfig:
        if not isinstance(value, dict):
            raise BadRecord(f"{where} must be an object, not {_shown(value)}")
        try:
            return plan_from_record(value)
        except ConfigError as exc:
            raise BadRecord(f"{where}: {exc}") from None
    if origin is tuple:
        if not isinstance(value, list):
            raise BadRecord(f"{where} must be a list, not {_shown(value)}")
        (item, _) = typing.get_args(hint)
        return tuple(_check(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    raise TypeError(f"no check for {hint!r}")  # a new event field: teach _check its type


def _shown(value: Any) -> str:
    text = json.dumps(value, allow_nan=True) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


# The keys of an evaluation's summary that readers use, with their types (NaN: no such
# episode, as `summarize` writes it; other keys are kept unchecked).
_SUMMARY = {"episodes": int, "failed": int, "return_mean": float, "return_std": float, "score_mean": float,
            "score_std": float, "stopped": bool, "plans": int}
_RESULT = {"episode_return": float, "length": int, "status": str, "score": float, "error": str}
_RESULT_OPTIONAL = ("length", "status", "score", "error")  # what the readers use is the return, score and error


def _summary(value: dict, where: str) -> dict:
    out = dict(value)
    for key, hint in _SUMMARY.items():
        if key not in value or value[key] is None:
            continue
        if hint is float and isinstance(value[key], float) and math.isnan(value[key]):
            out[key] = None  # the mean of no episode
            continue
        out[key] = _check(value[key], hint, f"{where}.{key}")
    return out


def _result(value: dict, where: str) -> dict:
    out = dict(value)
    for key, hint in _RESULT.items():
        if key not in value:
            if key in _RESULT_OPTIONAL:
                continue
            raise BadRecord(f"{where} lacks '{key}'")
        if key == "episode_return" and isinstance(value[key], (int, float)) and not usable_number(value[key]):
            out[key] = None  # an episode whose return is unusable counts as failed, never as a number
            continue
        out[key] = _check(value[key], Optional[hint] if key in _RESULT_OPTIONAL else hint, f"{where}.{key}")
    return out


def check_record(record: Any) -> Recorded:
    """The event record `record` holds, checked field by field, or BadRecord."""
    if not isinstance(record, dict):
        raise BadRecord(f"not a JSON object but {_shown(record)}")
    name = record.get("event")
    cls = _BY_NAME.get(name) if isinstance(name, str) else None
    if cls is None:
        raise BadRecord(f"unknown event {_shown(name)}")
    time = record.get("time")
    if time is not None and not (usable_number(time) and TIME_RANGE[0] <= time <= TIME_RANGE[1]):
        raise BadRecord(f"{name}.time must be a unix time, not {_shown(time)}")
    hints = _HINTS[cls]
    fields = {}
    for f in dataclasses.fields(cls):
        where = f"{name}.{f.name}"
        if f.name not in record:
            if f.default is dataclasses.MISSING:
                raise BadRecord(f"{where} is missing")
            continue
        fields[f.name] = _check(record[f.name], hints[f.name], where)
    if cls is events.EvalStarted:  # a view lays out one row per episode: the config's own limit holds
        try:
            check_limit("eval.episodes", fields["episodes"], "metrics.jsonl")
        except ConfigError:
            raise BadRecord(f"{name}.episodes must be {LIMITS['eval.episodes']}, not {_shown(fields['episodes'])}") from None
    if cls is events.EvalFinished:
        fields["summary"] = _summary(fields["summary"], f"{name}.summary")
        fields["results"] = tuple(_result(_check(r, dict, f"{name}.results[{i}]"), f"{name}.results[{i}]")
                                  for i, r in enumerate(fields["results"]))
    return Recorded(cls(**fields), None if time is None else float(time))


def check_line(line: str) -> Recorded:
    """One metrics.jsonl line as a checked record, or BadRecord."""
    try:
        record = json.loads(line)
    except RecursionError:
        raise BadRecord("nested too deeply") from None
    except ValueError:
        raise BadRecord("not JSON") from None
    return check_record(record)
