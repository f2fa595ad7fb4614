"""`tt-tui bench precision RUN`: what planning in bf16 changes, against fp32, for a trained run.

Two measurements, both on the run's own model and env:

- **Identical greedy plans.** Episodes are played with the run's planner in fp32; at each
  planning step the context (history and observation) is kept. Every kept context is then
  planned greedily (top-1 for every token: k_obs = k_act = k_reward = 1, no cdf) in fp32
  and in bf16. Greedy plans are deterministic, so any difference is precision's: the
  table gives the share whose first action (the one executed) is identical and the share
  whose whole plan, token for token, is.
- **Returns over seeds.** The same episodes (env seeds) played with the run's planner in
  each dtype, each seed's mean return, and the mean and standard error over all episodes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from tt_core.config import EvalConfig
from tt_core.controls import Controls
from tt_core.device import COMPUTE_DTYPES, resolve_device
from tt_core.events import EventBus
from tt_core.plan.agent import load_agent
from tt_core.plan.beam_search import BeamPlanner
from tt_core.plan.rollout import Rollout
from tt_core.runs.report import Stats

DTYPES = ("fp32", "bf16")


@dataclass(frozen=True)
class PrecisionReport:
    run: str
    device: str
    contexts: int  # contexts planned greedily in both dtypes
    same_first_action: int
    same_plan: int
    returns: dict[str, dict[int, list[float]]]  # dtype -> env seed -> episode returns


def bench_precision(run: Path, episodes: int, seeds: tuple[int, ...], max_steps: int,
                    device: str = "auto") -> PrecisionReport:
    """Play `episodes` envs per seed (eval.seed = each of `seeds`) up to `max_steps` in fp32
    and in bf16, and plan every fp32 context greedily in both dtypes."""
    dev = resolve_device(device)
    agent = load_agent(run, dev)
    contexts: list[tuple[torch.Tensor, torch.Tensor]] = []
    returns: dict[str, dict[int, list[float]]] = {d: {} for d in DTYPES}
    for seed in seeds:
        for dtype in DTYPES:
            rollout = Rollout(agent, replace(agent.config.plan, dtype=dtype),
                              EvalConfig(episodes=episodes, max_steps=max_steps, seed=seed), EventBus(), Controls(),
                              device=dev)
            if dtype == "fp32":
                _keep_contexts(rollout, contexts)
            returns[dtype][seed] = [r.episode_return for r in rollout.run()]
    same_first, same_plan = greedy_agreement(agent, contexts, dev)
    return PrecisionReport(str(run), str(dev), sum(h.shape[0] for h, _ in contexts), same_first, same_plan, returns)


def _keep_contexts(rollout: Rollout, kept: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Record every (history, observation) batch the rollout's planner is asked to plan."""
    plan = rollout.planner.plan

    def recording(history, obs, **kw):
        kept.append((history.clone(), obs.clone()))
        return plan(history, obs, **kw)

    rollout.planner.plan = recording


def greedy_agreement(agent, contexts, dev: torch.device, dtypes: tuple[str, str] = DTYPES) -> tuple[int, int]:
    """(context rows whose first planned action is identical, whose whole plan is) between
    greedy planning in the two `dtypes`."""
    greedy = replace(agent.config.plan, k_obs=1, k_act=1, k_reward=1, cdf_obs=None, cdf_act=None)
    planners = [BeamPlanner(agent.model, agent.discretizer, greedy, device=dev, dtype=COMPUTE_DTYPES[d])
                for d in dtypes]
    first_action = slice(agent.observation_dim, agent.observation_dim + agent.action_dim)
    same_first = same_plan = 0
    for history, obs in contexts:
        a, b = (planner.plan(history, obs).sequence for planner in planners)
        same_first += int((a[:, 0, first_action] == b[:, 0, first_action]).all(-1).sum())
        same_plan += int((a == b).flatten(1).all(-1).sum())
    return same_first, same_plan


def precision_table(report: PrecisionReport) -> str:
    """Markdown: the greedy agreement, then returns per dtype and seed."""
    n = max(report.contexts, 1)
    lines = [
        f"bf16 against fp32 planning, {report.run} on {report.device}",
        "",
        "| greedy plans compared | identical first action | identical plan (every token) |",
        "|---:|---:|---:|",
        f"| {report.contexts} | {report.same_first_action} ({100 * report.same_first_action / n:.1f} %) "
        f"| {report.same_plan} ({100 * report.same_plan / n:.1f} %) |",
        "",
        "| dtype | " + " | ".join(f"seed {s}" for s in report.returns["fp32"]) + " | all episodes: mean ± s.e. |",
        "|---|" + "---:|" * (len(report.returns["fp32"]) + 1),
    ]
    for dtype, by_seed in report.returns.items():
        every = Stats.of(r for rs in by_seed.values() for r in rs)  # the report's mean ± s.e., one formula
        cells = " | ".join(f"{sum(rs) / len(rs):.1f}" for rs in by_seed.values())
        episodes = sum(map(len, by_seed.values()))
        lines.append(f"| {dtype} | {cells} | {every.mean:.1f} ± {every.sem:.1f} ({episodes} episodes) |")
    return "\n".join(lines)
