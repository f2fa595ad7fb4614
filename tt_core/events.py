"""Events the engine emits for its views (headless reporter, TUI, metrics file).

Small frozen dataclasses of plain Python values and config sections: a view never
needs torch to read them, and `to_record` turns any of them into a JSON-ready dict.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Union

import numpy as np

from tt_core.config import PlanConfig


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


@dataclass(frozen=True)
class EvalStarted:
    env_id: str
    episodes: int
    source: str  # the run or checkpoint directory planned with
    device: str
    plan: PlanConfig  # planning parameters in force at the start
    model: dict  # n_layers, embedding_dim, transition_dim, seq_len, action_dim (memory estimates)
    memory_available: int | None = None  # free accelerator memory in bytes (CUDA), else None
    cache_bytes: int | None = None  # the planner's key/value cache for this layout and dtype


@dataclass(frozen=True)
class EnvStep:
    """One vector-env step: per-env running returns and the reward just received."""

    step: int
    returns: tuple[float, ...]
    rewards: tuple[float, ...]
    statuses: tuple[str, ...]  # running | done | truncated | failed


@dataclass(frozen=True)
class EpisodeEnd:
    env_index: int
    episode_return: float
    length: int
    status: str  # done (terminated) | truncated | failed
    score: float | None  # normalized score, see rollout.normalized_score
    error: str | None = None


@dataclass(frozen=True)
class BeamStep:
    """The surviving beams of one planning step of one env (numpy arrays, no torch)."""

    parent: np.ndarray  # [W] int: index into the previous step's survivors (step 0: 0)
    score: np.ndarray  # [W] cumulative score: sum_i discount^i E[r_i] + discount^(t+1) E[V_t]
    action: np.ndarray  # [W, A] decoded actions
    reward: np.ndarray  # [W] predicted E[r_t]
    value: np.ndarray  # [W] predicted E[V_t], the value-to-go after this step


@dataclass(frozen=True)
class BeamSnapshot:
    """One env's beam search: the survivors of each step and the executed plan's path."""

    steps: list[BeamStep]
    chosen: list[int]  # the chosen path's beam index at each step


@dataclass(frozen=True)
class PlanSnapshot:
    """The latest beam tree of one env (plain data, see planner.BeamSnapshot)."""

    step: int
    env_index: int
    snapshot: BeamSnapshot


@dataclass(frozen=True)
class AttentionMaps:
    """The model's attention over the window one env's plan was decoded in
    (TrajectoryGPT.attention_maps, sent by tt_core/plan/rollout.py): every layer and head,
    rows queries, columns keys."""

    env_index: int
    step: int  # the env step the plan was made at
    weights: np.ndarray  # [n_layers, n_heads, t, t] float32; rows sum to 1
    observation_dim: int
    action_dim: int
    context: int  # tokens before the plan's own: past transitions and the current observation


PREDICTION_KINDS = ("observation", "reward", "value")  # what a plan's errors are measured on


@dataclass(frozen=True)
class PredictionErrors:
    """The evaluation's plans so far: mean prediction error per step into the plan
    against the simulator (tt_core/plan/prediction.py), after each plan. Not recorded in
    metrics.jsonl: the evaluation's summary carries the final means."""

    observation: tuple[float | None, ...]  # per step k; None where nothing was compared
    reward: tuple[float | None, ...]
    value: tuple[float | None, ...]  # against the realized discounted return, once episodes end
    observation_scale: str  # what one unit of observation error is


@dataclass(frozen=True)
class Throughput:
    planning_tokens_per_s: float
    ms_per_plan: float
    env_steps_per_s: float


@dataclass(frozen=True)
class EvalFinished:
    results: tuple[dict, ...]  # one EpisodeResult record per episode
    summary: dict
    step: int | None = None  # the training step of the weights evaluated (None: not training)


@dataclass(frozen=True)
class PlanParamsApplied:
    """A live edit of the planning parameters took effect (from the next plan)."""

    plan: PlanConfig  # the parameters in force from the next plan
    changed: tuple[str, ...]  # the keys this edit changed
    cache_bytes: int  # the planner's key/value cache with them


@dataclass(frozen=True)
class PlanParamsRefused:
    """A live edit was refused by the engine (the values in force stay)."""

    error: str


@dataclass(frozen=True)
class RecordingStarted:
    env_index: int


@dataclass(frozen=True)
class RecordingStopped:
    env_index: int
    path: str | None  # the GIF written, None when the env recorded no frame


@dataclass(frozen=True)
class DownloadProgress:
    """Bytes of one pinned file received so far (`done` counts a resumed part too)."""

    name: str  # the file's path as it will be on disk
    url: str
    done: int
    total: int | None  # None when neither the server nor the manifest gives the size


@dataclass(frozen=True)
class Downloaded:
    """A pinned file arrived, matched its git blob id and was moved into place."""

    name: str
    blob: str


Event = Union[
    TrainStarted, TrainStep, Checkpointed, TrainFinished, Message, Failed,
    EvalStarted, EnvStep, EpisodeEnd, PlanSnapshot, AttentionMaps, PredictionErrors, Throughput, EvalFinished,
    PlanParamsApplied, PlanParamsRefused, RecordingStarted, RecordingStopped,
    DownloadProgress, Downloaded,
]


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
