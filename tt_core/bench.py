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
        loss, _, _ = weighted_loss(logits, y, mask, kind, weights)
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


# ---------------------------------------------------------------------- planning


@dataclass(frozen=True)
class PlanBenchRow:
    planner: str  # "tt-tui" (batched cascade cache) or "naive" (full forward per token)
    envs: int
    width: int
    steps: int
    expand: int
    ms: list[float]  # ms per plan, each timed run
    tokens: int  # tokens sampled per plan
    skipped: str = ""  # why the row was not run
    dtype: str = "fp32"  # compute dtype of the tt-tui planner (the naive one is fp32)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.ms) if self.ms else float("nan")

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / (self.median_ms / 1e3) if self.ms else float("nan")


def _bench_planning_setup(dev: torch.device, seed: int):
    import numpy as np

    from tt_core.data.discretizer import Discretizer

    torch.manual_seed(seed)
    cfg = WALKER2D
    model = TrajectoryGPT(cfg).to(dev).eval()
    T = cfg.transition_dim
    edges = np.linspace(-1.0, 1.0, cfg.num_bins + 1)
    disc = Discretizer(np.tile(edges, (T, 1)))
    return model, disc


def _context(envs: int, h: int, cfg: GPTConfig, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real-looking context: per-dimension random walks over bins (not uniform noise)."""
    g = torch.Generator().manual_seed(seed)
    T, N = cfg.transition_dim, cfg.num_bins
    start = torch.randint(N // 4, 3 * N // 4, (envs, 1, T), generator=g)
    steps = torch.randint(-3, 4, (envs, h + 1, T), generator=g).cumsum(1)
    tok = (start + steps).clamp(0, N - 1)
    return tok[:, :h], tok[:, h, : cfg.observation_dim]


def bench_plan(
    device: str = "auto",
    envs: tuple[int, ...] = (1, 25),
    shapes: tuple[tuple[int, int], ...] = ((32, 5), (128, 15)),
    expand: int = 2,
    context: int = 5,
    naive: bool = True,
    naive_max_rows_tokens: float = 2e3,
    repeats: int = 3,
    seed: int = 0,
    dtypes: tuple[str, ...] = ("fp32",),
) -> tuple[str, list[PlanBenchRow]]:
    """ms per plan and planning tokens/s of BeamPlanner vs NaivePlanner (medians).

    The naive planner runs only where it finishes in reasonable time: its cost grows
    with rows x window tokens per sampled token; cases above `naive_max_rows_tokens`
    (thousands of tokens re-encoded per plan, estimated; 2e3 ~ 10-20 s on 2 CPU
    cores) are listed as skipped. `dtypes` ("fp32", "bf16"): one tt-tui row per compute
    dtype (BeamPlanner(dtype=...)); the runs of the dtypes of a case are interleaved
    so a noisy machine hits them alike.
    """
    from tt_core.config import PlanConfig
    from tt_core.planner import BeamPlanner, NaivePlanner

    dev = resolve_device(device)
    model, disc = _bench_planning_setup(dev, seed)
    cfg = model.cfg

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    rows: list[PlanBenchRow] = []
    for width, steps in shapes:
        params = PlanConfig(beam_width=width, beam_steps=steps, beam_context=context, sample_expand=expand)
        for e in envs:
            hist, obs = _context(e, context, cfg, seed)
            tokens_per_plan = e * steps * (width * expand * (cfg.action_dim + 2) + width * cfg.observation_dim)
            planners = []
            for name in dtypes:
                dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[name]
                pl = BeamPlanner(model, disc, params, device=dev, dtype=dt)
                gen = torch.Generator(device=dev).manual_seed(seed)
                pl.plan(hist, obs, generator=gen)  # warm-up: buffers, kernels
                planners.append((name, pl, gen, []))
            for _ in range(repeats):
                for _, pl, gen, ms in planners:
                    sync()
                    t0 = time.perf_counter()
                    res = pl.plan(hist, obs, generator=gen)
                    sync()
                    ms.append((time.perf_counter() - t0) * 1e3)
            for name, _, _, ms in planners:
                rows.append(PlanBenchRow("tt-tui", e, width, steps, expand, ms, tokens_per_plan, dtype=name))
            if not naive:
                continue
            # each sampled token re-encodes the whole window (~block/2 .. block tokens)
            work = tokens_per_plan * cfg.block_size * 0.75 / 1e3
            if work > naive_max_rows_tokens:
                rows.append(PlanBenchRow("naive", e, width, steps, expand, [], tokens_per_plan,
                                         f"skipped: ~{work * 1e3:.1e} re-encoded tokens per plan"))
                continue
            planner = NaivePlanner(model, disc, params, device=dev)
            gen = torch.Generator(device=dev).manual_seed(seed)
            sync()
            t0 = time.perf_counter()
            res = planner.plan(hist, obs, generator=gen)
            sync()
            rows.append(PlanBenchRow("naive", e, width, steps, expand, [(time.perf_counter() - t0) * 1e3], res.tokens))
    return describe(dev), rows


def plan_table(device: str, rows: list[PlanBenchRow]) -> str:
    """Markdown table; speedup = naive ms / tt-tui ms for the same case."""
    base = {(r.envs, r.width, r.steps): r.median_ms for r in rows if r.planner == "naive" and r.ms}
    lines = [
        f"planning, device {device}, walker2d-size model (O=17, A=6, N=100, 4x128, seq_len 10)",
        "",
        "| envs | beams x steps | expand | planner | dtype | ms / plan (median) | planning tokens/s | vs naive |",
        "|---:|---|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        case = f"| {r.envs} | {r.width} x {r.steps} | {r.expand} | {r.planner} | {r.dtype} |"
        if not r.ms:
            lines.append(f"{case} {r.skipped} | | |")
            continue
        key = (r.envs, r.width, r.steps)
        speed = f"{base[key] / r.median_ms:,.1f}x" if r.planner == "tt-tui" and key in base else ""
        lines.append(f"{case} {r.median_ms:,.1f} | {r.tokens_per_s:,.0f} | {speed} |")
    return "\n".join(lines)
