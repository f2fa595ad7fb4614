"""Events the engine emits for its views (headless reporter, TUI, metrics file).

Small frozen dataclasses of plain Python values: a view never needs torch to read
them, and `to_record` turns any of them into a JSON-ready dict.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Union


@dataclass(frozen=True)
class TrainStarted:
    run_dir: str
    total_steps: int
    start_step: int
    tokens_per_step: int
    device: str
    num_params: int
    dataset_id: str


@dataclass(frozen=True)
class TrainStep:
    step: int
    epoch: float
    tokens: int  # tokens seen so far (targets, padding included)
    loss: float  # weighted total
    loss_obs: float
    loss_action: float
    loss_reward: float
    loss_value: float
    lr: float
    tokens_per_s: float


@dataclass(frozen=True)
class Checkpointed:
    step: int
    path: str


@dataclass(frozen=True)
class TrainFinished:
    step: int
    run_dir: str
    stopped_early: bool


@dataclass(frozen=True)
class Message:
    text: str
    level: str = "info"  # info | warning | error


@dataclass(frozen=True)
class Failed:
    error: str
    exit_code: int = 1


Event = Union[TrainStarted, TrainStep, Checkpointed, TrainFinished, Message, Failed]


def to_record(event: Any) -> dict:
    """A JSON-ready dict: the event's fields plus its type name under "event"."""
    record = {"event": type(event).__name__}
    record.update(dataclasses.asdict(event))
    return record


@dataclass
class EventBus:
    """Fan-out of engine events to any number of listeners (called on the engine thread).

    Listeners must be quick; a UI wraps a queue.Queue.put or call_from_thread.
    """

    listeners: list[Callable[[Any], None]] = field(default_factory=list)

    def subscribe(self, listener: Callable[[Any], None]) -> None:
        self.listeners.append(listener)

    def emit(self, event: Any) -> None:
        for listener in self.listeners:
            listener(event)
