"""Where a model's attention goes, by distance: the mean weight each layer puts on the key
`offset` tokens before the query, over the full windows of one episode's plans.

    python scripts/attention_offsets.py RUN [--max-steps 60] [--seed 0]

Prints, per layer, the offsets with the most weight (mean of the heads) and what uniform
attention would give. Offset T - 1 is the dimension the query predicts, one transition
back (a query at position p predicts token p + 1): the paper's Markovian pattern.
docs/eval-and-record.md#attention-maps-record---attention-n quotes its output.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import tt_core.plan.rollout as rollout
from tt_core.config import EvalConfig
from tt_core.controls import Controls
from tt_core.events import AttentionMaps, EventBus
from tt_core.plan.agent import load_agent


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("run")
    args.add_argument("--max-steps", type=int, default=60)
    args.add_argument("--seed", type=int, default=0)
    a = args.parse_args()
    agent = load_agent(a.run, torch.device("cpu"))
    rollout.MAPS_INTERVAL_S = 0.0  # every plan's maps, not a few a second
    bus, controls, maps = EventBus(), Controls(), []
    bus.subscribe(lambda e: maps.append(e.weights) if isinstance(e, AttentionMaps) else None)
    controls.show_attention(0)
    rollout.Rollout(agent, agent.config.plan, EvalConfig(episodes=1, max_steps=a.max_steps, seed=a.seed),
                    bus, controls).run()
    cfg = agent.model.cfg
    T, t = cfg.transition_dim, cfg.block_size
    full = np.stack([w for w in maps if w.shape[2] == t])  # [plans, L, H, t, t]
    queries = np.arange(2 * T, t)  # queries that see at least two transitions back
    print(f"{len(full)} full windows of {t} tokens (T = {T}); queries from position {2 * T}")
    uniform = np.mean(1.0 / (full[0, 0, 0][queries] > 0).sum(1))
    for layer in range(cfg.n_layers):
        w = full[:, layer].mean(1)  # the mean of the heads, [plans, t, t]
        per_offset = np.array([w[:, queries, queries - d].mean() for d in range(2 * T + 1)])
        top = np.argsort(per_offset)[::-1][:3]
        print(f"layer {layer}: " + ", ".join(f"offset {d}: {per_offset[d]:.3f}" for d in top)
              + f"  (uniform {uniform:.3f})")


if __name__ == "__main__":
    main()
