"""Benchmarks behind `tt-tui bench`: medians of repeated timed runs on one device."""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass

import torch

from tt_core.device import describe, resolve_device
from tt_core.model import GPTConfig, TrajectoryGPT
from tt_core.train import target_kinds, weighted_loss

# The walker2d-size model of the seed project: 17 obs + 6 action dims, 10 transitions.
WALKER2D = GPTConfig(
    observation_dim=17, action_dim=6, num_bins=100, seq_len=10,
    embedding_dim=128, n_layers=4, n_heads=4, dropout=0.1,
)


@dataclass(frozen=True)
class TrainBench:
    device: str
    batch: int
    seq_tokens: int
    steps_per_run: int
    runs: list[float]  # tokens/s of each timed run

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


def bench_train(
    device: str = "auto", batch: int = 64, steps: int = 10, repeats: int = 5, seed: int = 0
) -> TrainBench:
    """Training tokens/s of full optimizer steps (forward, loss, backward, AdamW)."""
    dev = resolve_device(device)
    torch.manual_seed(seed)
    cfg = WALKER2D
    model = TrajectoryGPT(cfg).to(dev).train()
    opt = torch.optim.AdamW(model.param_groups(0.1), lr=6e-4, betas=(0.9, 0.95),
                            fused=dev.type == "cuda")
    L = cfg.block_size
    x = torch.randint(0, cfg.num_bins, (batch, L), device=dev)
    y = torch.randint(0, cfg.num_bins, (batch, L), device=dev)
    mask = torch.ones(batch, L, device=dev)
    kind = target_kinds(L, cfg.observation_dim, cfg.action_dim).to(dev)
    weights = torch.tensor([1.0, 5.0, 1.0, 1.0], device=dev)

    def one_step() -> None:
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()
        with ctx:
            logits = model(x)
        loss, _ = weighted_loss(logits, y, mask, kind, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for _ in range(3):  # warm-up: allocator, kernels, autotuning
        one_step()
    sync()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            one_step()
        sync()
        runs.append(steps * batch * L / (time.perf_counter() - t0))
    return TrainBench(describe(dev), batch, L, steps, runs)
