"""Deterministic event scripts for screenshots and snapshot tests (no torch, no envs).

`scripted_job(events)` is an engine job that emits a fixed list of events and then
waits until it is asked to stop, so the app shows a stable, reproducible dashboard.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Iterable

import numpy as np

from tt_core.config import PlanConfig
from tt_core.model.cache_size import cascade_cache_bytes
from tt_core.events import (
    AttentionMaps,
    BeamSnapshot,
    BeamStep,
    Checkpointed,
    EnvStep,
    EpisodeEnd,
    EvalStarted,
    Message,
    PlanParamsApplied,
    PlanSnapshot,
    PredictionErrors,
    Throughput,
    TrainStarted,
    TrainStep,
)


def scripted_job(events: Iterable[Any], hold: bool = True):
    """`job.emitted` is set once every event is on the bus."""
    events = list(events)
    emitted = threading.Event()

    def job(bus, controls):
        for event in events:
            bus.emit(event)
        emitted.set()
        while hold and not controls.stop_requested:
            time.sleep(0.05)
        return None

    job.emitted = emitted
    return job


def train_events(steps: int = 400, log_every: int = 10) -> list[Any]:
    tokens_per_step = 64 * 249
    out: list[Any] = [
        Message("20000 transitions loaded from cache in 0.4s"),
        TrainStarted("runs/local-hopper-random-v0-20260101-120000", 1000, 0, tokens_per_step,
                     "cpu (2 threads)", 415_296, "local/hopper/random-v0"),
    ]
    for step in range(log_every, steps + 1, log_every):
        x = step / 100
        base = 4.6 * math.exp(-x) + 1.2 + 0.05 * math.sin(step / 7)
        warm = min(step / 100, 1.0)
        lr = 6e-4 * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / 1000)))
        out.append(TrainStep(step, step / 250, step * tokens_per_step, base,
                             base * 0.9, base * 0.25, 0.6 * base - 0.4, 0.8 * base - 0.5,
                             lr, 12_016.0))
        if step % 200 == 0:
            out.append(Checkpointed(step, f"runs/local-hopper-random-v0-20260101-120000/checkpoints/step_{step:09d}"))
    return out


def beam_snapshot(step: int, width: int = 4, steps: int = 3, action_dim: int = 3) -> BeamSnapshot:
    """A small, fixed beam tree, as the planner reports one."""
    records, score = [], np.zeros(width)
    for t in range(steps):
        parent = np.zeros(width, int) if t == 0 else np.array([(j * 3 + t) % width // 2 for j in range(width)])
        reward = np.array([1.0 + 0.1 * j - 0.05 * t + 0.01 * step for j in range(width)])
        value = np.array([50.0 - 2 * j - t + 0.1 * step for j in range(width)])
        action = np.array([[math.sin(j + t + k) for k in range(action_dim)] for j in range(width)])
        score = score[parent] + 0.99**t * reward
        records.append(BeamStep(parent, score + 0.99 ** (t + 1) * value, action, reward, value))
    chosen = [0] * steps
    for t in range(steps - 1, 0, -1):
        chosen[t - 1] = int(records[t].parent[chosen[t]])
    return BeamSnapshot(records, chosen)


def _cache_bytes(envs: int, plan: PlanConfig) -> int:
    """What the engine would report for the demo model (2 layers, 64 wide, 5 x 16 tokens)."""
    return cascade_cache_bytes(envs, plan.beam_width, plan.sample_expand, n_layers=2,
                               embedding_dim=64, block_tokens=5 * 16 - 1, action_dim=3)


def eval_events(envs: int = 4, env_steps: int = 30) -> list[Any]:
    plan = PlanConfig(beam_width=4, beam_steps=3, beam_context=2, sample_expand=2)
    out: list[Any] = [
        Message("loaded runs/local-hopper-random-v0-20260101-120000 (step 1000) for Hopper-v5"),
        EvalStarted("Hopper-v5", envs, "runs/local-hopper-random-v0-20260101-120000", "cpu", plan,
                    {"n_layers": 2, "embedding_dim": 64, "transition_dim": 16, "seq_len": 5,
                     "action_dim": 3}, None, _cache_bytes(envs, plan)),
    ]
    returns = [0.0] * envs
    status = ["running"] * envs
    for step in range(1, env_steps + 1):
        rewards = []
        for i in range(envs):
            r = 0.0
            if status[i] == "running":
                r = round(1.0 + 0.3 * math.sin(step / 3 + i), 3)
                returns[i] += r
            rewards.append(r)
        if step == 20:
            status[envs - 1] = "done"
        out.append(EnvStep(step, tuple(returns), tuple(rewards), tuple(status)))
        for i in range(envs):
            if status[i] == "running" or step == 1:
                out.append(PlanSnapshot(step - 1, i, beam_snapshot(step - 1 + i)))
        if step == 20:
            out.append(EpisodeEnd(envs - 1, returns[envs - 1], 20, "done", 12.5))
        out.append(Throughput(48_250.0, 21.4, 36.8))
        drift = 1 + 1 / step  # the running means settle as plans accumulate
        out.append(PredictionErrors((None, *(round(0.12 * k * drift, 3) for k in (1, 2))),
                                    tuple(round(0.05 * (k + 1) * drift, 3) for k in range(3)),
                                    tuple(round(4.0 + 1.5 * k * drift, 3) for k in range(3)) if step >= 20 else (),
                                    "data std"))
    out.append(demo_attention(env_steps))
    out.append(PlanParamsApplied(plan, ("beam_width",), _cache_bytes(envs, plan)))
    return out


def demo_attention(step: int, transitions: int = 4, O: int = 11, A: int = 3) -> AttentionMaps:
    """Made-up maps of the shape a Hopper model's have (2 layers, 2 heads): layer 0 looks
    at the same dimension one transition back, layer 1 at the latest observation; the
    causal and value-token masks applied as the model applies them."""
    T = O + A + 2
    t = transitions * T - 1
    q, k = np.arange(t)[:, None], np.arange(t)[None, :]
    patterns = [-np.abs(q - k - T) / 2.0, -np.abs(q - k - T) / 6.0,
                ((k % T) >= O) * -3.0 - (q - k) / 8.0, -(q - k) / 30.0]
    weights = []
    for scores in patterns:
        scores = np.where((k <= q) & (k % T != T - 1), scores, -np.inf)
        w = np.exp(scores - scores.max(1, keepdims=True))
        weights.append(w / w.sum(1, keepdims=True))
    return AttentionMaps(0, step - 1, np.asarray(weights, dtype=np.float32).reshape(2, 2, t, t), O, A, 2 * T + O)


def demo_app(mode: str, events: Iterable[Any], **kwargs):
    """A TTApp on the real JobThread running `scripted_job(events)`, with fixed memory
    numbers so screenshots are reproducible."""
    from tt_core.jobs.thread import JobThread
    from tt_tui.app import TTApp

    kwargs.setdefault("rss", lambda: 180 * 2**20)
    kwargs.setdefault("available", lambda: 8 * 2**30)
    job = scripted_job(events)
    app = TTApp(JobThread(job), mode, **kwargs)
    app.demo_emitted = job.emitted
    return app


async def settle(pilot) -> None:
    """Wait until a demo app has every scripted event on screen (for screenshots)."""
    app = pilot.app
    await pilot.pause(0.1)
    for _ in range(200):
        if app.demo_emitted.is_set():
            break
        await pilot.pause(0.05)
    app.drain(force=True)
    await pilot.pause(0.1)


if __name__ == "__main__":  # python -m tt_tui.demo [train|eval]: try the UI without a model
    import sys

    mode = sys.argv[1] if len(sys.argv) > 1 else "train"
    app = demo_app(mode, train_events() if mode == "train" else eval_events())
    sys.exit(app.run() and 0 or app.return_code or 0)
