"""One line of text per engine event, the same in the app's log and the headless output."""

from __future__ import annotations

from typing import Any

from tt_core.config import PlanConfig
from tt_core.events import (
    Checkpointed,
    EpisodeEnd,
    EvalFinished,
    EvalStarted,
    Message,
    PlanParamsApplied,
    PlanParamsRefused,
    RecordingStarted,
    RecordingStopped,
    TrainFinished,
    TrainStarted,
)
from tt_tui.resources import human_bytes


def _episode_end(ev: EpisodeEnd) -> str:
    score = "" if ev.score is None else f", score {ev.score:.1f}"
    extra = f" ({ev.error})" if ev.error else ""
    return (f"env {ev.env_index}: {ev.status} after {ev.length} steps, return "
            f"{ev.episode_return:.1f}{score}{extra}")


def plan_line(plan: PlanConfig) -> str:
    """The beam search's shape in a few words (the status bar and the EvalStarted line):
    beam width x steps, context transitions, candidates per beam, and the objective when
    it is not the default reward."""
    objective = "" if plan.objective == "reward" else f" by {plan.objective}"
    return (f"beam {plan.beam_width}x{plan.beam_steps} ctx {plan.beam_context} "
            f"exp {plan.sample_expand}{objective}")


def _eval_started(ev: EvalStarted) -> str:
    return (f"evaluating {ev.source} on {ev.env_id}: {ev.episodes} episodes, "
            f"{plan_line(ev.plan)}, {ev.device}")


def _eval_finished(ev: EvalFinished) -> str:
    s = ev.summary
    text = f"evaluation done: return {s.get('return_mean', float('nan')):.1f} ± {s.get('return_std', float('nan')):.1f}"
    if s.get("score_mean") is not None:
        text += f", score {s['score_mean']:.1f} ± {s.get('score_std') or 0:.1f}"
    return text


_LINES = {
    TrainStarted: lambda ev: (f"run {ev.run_dir}: {ev.dataset_id}, {ev.num_params:,} parameters, "
                              f"{ev.device}, steps {ev.start_step}->{ev.total_steps}"),
    Checkpointed: lambda ev: f"checkpoint step {ev.step}: {ev.path}",
    TrainFinished: lambda ev: (f"training {'stopped' if ev.stopped_early else 'finished'} at step "
                               f"{ev.step}; run directory {ev.run_dir}"),
    Message: lambda ev: ev.text if ev.level == "info" else f"{ev.level}: {ev.text}",
    EpisodeEnd: _episode_end,
    EvalStarted: _eval_started,
    EvalFinished: _eval_finished,
    PlanParamsApplied: lambda ev: ("planning: " + ", ".join(f"{k}={getattr(ev.plan, k)}" for k in ev.changed)
                                   + f" (from the next plan; KV cache ~{human_bytes(ev.cache_bytes)})"),
    PlanParamsRefused: lambda ev: f"refused: {ev.error}",
    RecordingStarted: lambda ev: f"recording env {ev.env_index}",
    RecordingStopped: lambda ev: (f"recorded env {ev.env_index}: {ev.path}" if ev.path
                                  else f"env {ev.env_index}: no frames"),
}


def event_line(ev: Any) -> str:
    """The event as one line of text (its type name for an event without one)."""
    line = _LINES.get(type(ev))
    return line(ev) if line is not None else type(ev).__name__
