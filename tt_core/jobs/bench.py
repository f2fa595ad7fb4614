"""Benchmarks behind `tt-tui bench`: medians of repeated timed runs on one device."""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from tt_core.device import COMPUTE_DTYPES, describe, has_bf16_matrix_units, resolve_device, set_compute_threads
from tt_core.jobs.machine import MATMUL_SIZE, PeakMemory, matmul_gflops, sync
from tt_core.model.gpt import GPTConfig, TrajectoryGPT
from tt_core.config import TrainConfig
from tt_core.train.trainer import compute_gradients, make_optimizer, target_kinds

# The walker2d-size model of the seed project: 17 obs + 6 action dims, 10 transitions.
WALKER2D = GPTConfig(
    observation_dim=17, action_dim=6, num_bins=100, seq_len=10,
    embedding_dim=128, n_layers=4, n_heads=4, dropout=0.1,
)


TRAIN_VARIANTS = ("fp32", "bf16", "compile+fp32", "compile+bf16")
MATMUL_LABEL = f"{MATMUL_SIZE}^3 matrix product speed"


def default_train_variants(device: str) -> tuple[str, ...]:
    """The variants worth timing on `device` by default: all on CUDA; on a CPU fp32, and
    bf16 only where the CPU has bf16 matrix units (emulated bf16 is slower than fp32 and
    takes minutes). torch.compile's first steps take minutes on a CPU: --full adds it."""
    if resolve_device(device).type == "cuda":
        return TRAIN_VARIANTS
    return ("fp32", "bf16") if has_bf16_matrix_units() else ("fp32",)


# A busy neighbour: a process multiplying 1024 x 1024 matrices on 2 torch threads, as a
# second training or an evaluation beside tt-tui does.
BUSY = ("import torch\ntorch.set_num_threads(2)\na = torch.randn(1024, 1024)\n"
        "while True:\n    a = torch.tanh(a @ a)\n")
# an "auto" policy works untimed until its LoadWatch has read the clocks this often (1.5 s
# of work: it follows a neighbour after two windows), as a run's first steps or plans do
WATCH_READINGS = 4


@contextlib.contextmanager
def competing_load(processes: int) -> Iterator[None]:
    """`processes` busy neighbours (BUSY) running for the block, each started and warm."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(processes)]
    try:
        time.sleep(2.0 if procs else 0.0)  # their torch import, then they compute
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _machine_text(speeds: dict[str, float]) -> str:
    each = ", ".join(f"{gf:,.0f} GFLOP/s in {dtype}" for dtype, gf in speeds.items())
    return f"{MATMUL_LABEL}, measured in this run: {each}"


@dataclass(frozen=True)
class TrainBench:
    device: str
    variant: str  # precision, with "compile+" when torch.compile'd
    batch: int
    seq_tokens: int
    steps_per_run: int
    runs: list[float]  # tokens/s of each timed run
    flops_per_token: float  # forward + backward, GPTConfig.token_flops
    machine_gflops: float  # the device's matrix speed in this variant's dtype, this run
    peak_bytes: int  # during this variant's warm-up steps (PeakMemory)
    load: int = 0  # busy neighbours running meanwhile (competing_load)
    threads: str = "auto"  # the CPU thread policy: auto or a count
    used: tuple[int, ...] = ()  # the thread counts it computed with while timed

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def gflops(self) -> float:
        return self.median * self.flops_per_token / 1e9


def bench_train(
    device: str = "auto", batch: int = 64, steps: int = 10, repeats: int = 5, seed: int = 0,
    variants: tuple[str, ...] = ("fp32",), loads: tuple[int, ...] = (0,), threads: tuple[str, ...] = ("auto",),
) -> list[TrainBench]:
    """Training tokens/s of full optimizer steps (the trainer's own forward, loss,
    backward, clipping and AdamW) for each variant, timed runs interleaved so that a
    noisy machine hits them alike. A variant is a train.precision (fp32, bf16), with
    "compile+" for train.compile. `loads` and `threads`: as bench_plan's (an "auto"
    policy trains untimed first until its LoadWatch has read the load WATCH_READINGS times)."""
    dev = resolve_device(device)
    cfg = WALKER2D
    L = cfg.block_size
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, cfg.num_bins, (batch, L), generator=g).to(dev)
    y = torch.randint(0, cfg.num_bins, (batch, L), generator=g).to(dev)
    mask = torch.ones(batch, L, device=dev)
    kind = target_kinds(L, cfg.observation_dim, cfg.action_dim).to(dev)
    weights = torch.tensor([1.0, 5.0, 1.0, 1.0], device=dev)

    flops = 3 * cfg.token_flops((L + 1) / 2)  # causal: a token attends to half the window on average
    machine = {p: matmul_gflops(dev, COMPUTE_DTYPES[p]) for p in {v.rpartition("+")[2] for v in variants}}
    memory = PeakMemory(dev)
    rows: list[TrainBench] = []
    for load in loads:
        with competing_load(load):
            steppers = []
            for variant, policy in ((v, t) for v in variants for t in threads):
                memory.reset()
                one_step = _train_stepper(variant, policy, dev, seed, (x, y, mask, kind, weights))
                steppers.append((variant, policy, one_step, [], machine[variant.rpartition("+")[2]], memory.read()))
            used: dict[int, set[int]] = {i: set() for i in range(len(steppers))}  # counts in force while timed
            order = list(enumerate(steppers))
            for r in range(repeats):  # interleaved, the order reversed every other round: pairs alike
                for i, (_, _, one_step, runs, _, _) in (order if r % 2 == 0 else order[::-1]):
                    t0 = time.perf_counter()
                    for _ in range(steps):
                        one_step()
                        used[i].add(torch.get_num_threads())
                    sync(dev)
                    runs.append(steps * batch * L / (time.perf_counter() - t0))
        rows += [TrainBench(describe(dev), v, batch, L, steps, runs, flops, gf, peak, load, t, tuple(sorted(used[i])))
                 for i, (v, t, _, runs, gf, peak) in enumerate(steppers)]
    return rows


def _train_stepper(variant: str, policy: str, dev: torch.device, seed: int, batch: tuple) -> Callable[[], None]:
    """One optimizer step of a fresh walker2d-size model in `variant` under the thread
    `policy`, warmed up (an "auto" one until its LoadWatch has read the load
    WATCH_READINGS times)."""
    x, y, mask, kind, weights = batch
    compiled, _, precision = variant.rpartition("+")
    torch.manual_seed(seed)
    model = TrajectoryGPT(WALKER2D).to(dev).train()
    net = torch.compile(model) if compiled else model
    opt = make_optimizer(model, TrainConfig(), dev)
    watch, _ = set_compute_threads(None if policy == "auto" else int(policy), dev)
    count = torch.get_num_threads()

    def one_step() -> None:
        torch.set_num_threads(watch.current if watch is not None else count)
        opt.zero_grad(set_to_none=True)
        compute_gradients(net, model.parameters(), x, y, mask, kind, weights, 1.0, precision)
        opt.step()
        sync(dev)
        if watch is not None:
            watch.tick()

    for _ in range(3):  # warm-up
        one_step()
    while watch is not None and watch.readings < WATCH_READINGS:
        one_step()
    sync(dev)
    return one_step


def train_table(rows: list[TrainBench]) -> str:
    """Markdown table; x first = median tokens/s over the first variant's."""
    first = rows[0].median
    lines = [
        f"training, device {rows[0].device}, walker2d-size model, batch {rows[0].batch} x "
        f"{rows[0].seq_tokens} tokens, {rows[0].steps_per_run} steps per timed run",
        "",
        "| variant | load | threads | tokens/s (median) | min | max | x first | GFLOP/s | % of machine | peak memory |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        threads = threads_label(r.threads, r.used)
        lines.append(f"| {r.variant} | {r.load} | {threads} | {r.median:,.0f} | {min(r.runs):,.0f} | "
                     f"{max(r.runs):,.0f} | {r.median / first:.2f}x | {r.gflops:,.1f} | "
                     f"{100 * r.gflops / r.machine_gflops:.0f} % | {_mib(r.peak_bytes)} |")
    speeds = {r.variant.rpartition("+")[2]: r.machine_gflops for r in rows}
    lines += ["", "% of machine: the steps' GFLOP/s (3 x GPTConfig.token_flops per token) over this device's "
              + _machine_text(speeds)]
    return "\n".join(lines)


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
    flops: float = 0.0  # the plan's work: one decode per token row (GPTConfig.token_flops)
    machine_gflops: float = float("nan")  # the device's matrix speed in `dtype`, this run
    peak_bytes: int | None = None  # during the row's warm-up plans (PeakMemory)
    load: int = 0  # busy neighbours running meanwhile (competing_load)
    threads: str = "auto"  # the CPU thread policy: auto or a count
    used: tuple[int, ...] = ()  # the thread counts it computed with while timed

    @property
    def median_ms(self) -> float:
        return statistics.median(self.ms) if self.ms else float("nan")

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / (self.median_ms / 1e3) if self.ms else float("nan")

    @property
    def gflops(self) -> float:
        return self.flops / (self.median_ms / 1e3) / 1e9 if self.ms else float("nan")


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
    loads: tuple[int, ...] = (0,),
    threads: tuple[str, ...] = ("auto",),
) -> tuple[str, list[PlanBenchRow]]:
    """ms per plan and planning tokens/s of BeamPlanner vs NaivePlanner (medians).

    The naive planner runs only where it finishes in reasonable time: its cost grows
    with rows x window tokens per sampled token; cases above `naive_max_rows_tokens`
    (thousands of tokens re-encoded per plan, estimated; 2e3 ~ 10-20 s on 2 CPU
    cores) are listed as skipped. `dtypes` ("fp32", "bf16"; with " eager": CUDA graphs
    off): one tt-tui row per compute dtype (BeamPlanner(dtype=...)); the runs of the
    dtypes of a case are interleaved so a noisy machine hits them alike.
    """
    from tt_core.config import PlanConfig

    dev = resolve_device(device)
    model, disc = _bench_planning_setup(dev, seed)
    cfg = model.cfg
    # each dtype's matrix speed once; fp32 always (the naive reference's rows)
    machine = {d: matmul_gflops(dev, COMPUTE_DTYPES[d]) for d in dict.fromkeys(n.split()[0] for n in (*dtypes, "fp32"))}
    rows: list[PlanBenchRow] = []
    for load, width, steps, e in ((lo, w, st, e) for lo in loads for w, st in shapes for e in envs):
        params = PlanConfig(beam_width=width, beam_steps=steps, beam_context=context, sample_expand=expand)
        hist, obs = _context(e, context, cfg, seed)
        tokens_per_plan = e * steps * (width * expand * (cfg.action_dim + 2) + width * cfg.observation_dim)
        flops = tokens_per_plan * cfg.token_flops(_mean_keys(cfg, context, steps))
        variants = [(d, t) for d in dtypes for t in threads]
        with competing_load(load):
            timed = _time_cached_planner(model, disc, params, hist, obs, variants, repeats, seed, dev)
        for (name, policy), ms, peak, used in timed:
            rows.append(PlanBenchRow("tt-tui", e, width, steps, expand, ms, tokens_per_plan, dtype=name,
                                     flops=flops, machine_gflops=machine[name.split()[0]], peak_bytes=peak,
                                     load=load, threads=policy, used=used))
        if not naive or load:  # the reference is timed on the quiet machine only
            continue
        # each sampled token re-encodes the whole window (~block/2 .. block tokens)
        work = tokens_per_plan * cfg.block_size * 0.75 / 1e3
        if work > naive_max_rows_tokens:
            rows.append(PlanBenchRow("naive", e, width, steps, expand, [], tokens_per_plan,
                                     f"skipped: ~{work * 1e3:.1e} re-encoded tokens per plan"))
            continue
        ms, tokens, peak = _time_naive_planner(model, disc, params, hist, obs, seed, dev)
        rows.append(PlanBenchRow("naive", e, width, steps, expand, [ms], tokens, flops=flops,
                                 machine_gflops=machine["fp32"], peak_bytes=peak))
    return describe(dev), rows


def _mean_keys(cfg: GPTConfig, context: int, steps: int) -> float:
    """Keys a plan's decode attends to on average: the prefix (history and observation)
    plus half the planned transitions, at most the model's window (crops keep it there)."""
    prefix = (min(context, cfg.seq_len) - 1) * cfg.transition_dim + cfg.observation_dim
    return min(prefix + steps * cfg.transition_dim / 2, cfg.block_size)


def _time_cached_planner(model, disc, params, hist, obs, variants, repeats, seed, dev
                         ) -> list[tuple[tuple[str, str], list[float], int, tuple[int, ...]]]:
    """((dtype, thread policy), ms of each timed plan, peak memory, the thread counts used)
    of BeamPlanner per variant, the variants' runs interleaved, after two warm-up plans each (the peak is the
    warm-up's); an "auto" policy plans untimed until its LoadWatch has read the load
    WATCH_READINGS times."""
    from tt_core.plan.beam_search import BeamPlanner

    timed, memory = [], PeakMemory(dev)
    for name, policy in variants:
        memory.reset()
        planner = BeamPlanner(model, disc, params, device=dev, dtype=COMPUTE_DTYPES[name.split()[0]],
                              graphs="eager" not in name)
        gen = torch.Generator(device=dev).manual_seed(seed)
        watch, _ = set_compute_threads(None if policy == "auto" else int(policy), dev)
        count = torch.get_num_threads()
        for _ in range(2):  # warm-up: buffers, kernels; CUDA graphs seen, then captured
            planner.plan(hist, obs, generator=gen)
        sync(dev)
        timed.append([(name, policy), planner, gen, watch, count, [], memory.read(), set()])

    def plan(variant, times: list[float] | None) -> None:
        _, planner, gen, watch, count, _, _, used = variant
        torch.set_num_threads(watch.current if watch is not None else count)
        if times is not None:
            used.add(torch.get_num_threads())
        sync(dev)
        t0 = time.perf_counter()
        planner.plan(hist, obs, generator=gen)
        sync(dev)
        seconds = time.perf_counter() - t0
        if watch is not None:
            watch.tick()
        if times is not None:
            times.append(seconds * 1e3)

    for variant in timed:
        while variant[3] is not None and variant[3].readings < WATCH_READINGS:
            plan(variant, None)
    for r in range(repeats):  # interleaved, the order reversed every other round: pairs alike
        for variant in (timed if r % 2 == 0 else timed[::-1]):
            plan(variant, variant[5])
    return [((name, policy), ms, peak, tuple(sorted(used))) for (name, policy), _, _, _, _, ms, peak, used in timed]


def threads_label(policy: str, used: tuple[int, ...]) -> str:
    """"auto: 1" for an auto policy that computed with 1 thread while timed; a count as given."""
    return f"{policy}: {', '.join(map(str, used))}" if policy == "auto" else policy


def _time_naive_planner(model, disc, params, hist, obs, seed, dev) -> tuple[float, int, int]:
    """(ms, tokens, peak memory) of one NaivePlanner plan: the full-forward reference."""
    from tt_core.plan.beam_search import NaivePlanner

    memory = PeakMemory(dev)
    memory.reset()
    planner = NaivePlanner(model, disc, params, device=dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    sync(dev)
    t0 = time.perf_counter()
    result = planner.plan(hist, obs, generator=gen)
    sync(dev)
    return (time.perf_counter() - t0) * 1e3, result.tokens, memory.read()


def plan_table(device: str, rows: list[PlanBenchRow]) -> str:
    """Markdown table; speedup = naive ms / tt-tui ms for the same case."""
    base = {(r.envs, r.width, r.steps): r.median_ms for r in rows if r.planner == "naive" and r.ms}
    quiet = {(r.envs, r.width, r.steps, r.dtype, r.threads): r.median_ms for r in rows if r.planner == "tt-tui"
             and r.load == 0 and r.ms}
    lines = [
        f"planning, device {device}, walker2d-size model (O=17, A=6, N=100, 4x128, seq_len 10)",
        "",
        "| envs | beams x steps | expand | planner | dtype | load | threads | ms / plan (median) | planning tokens/s "
        "| vs naive (vs quiet) | GFLOP/s | % of machine | peak memory |",
        "|---:|---|---:|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        threads = threads_label(r.threads, r.used) if r.planner == "tt-tui" else "auto"
        case = f"| {r.envs} | {r.width} x {r.steps} | {r.expand} | {r.planner} | {r.dtype} | {r.load} | {threads} |"
        if not r.ms:
            lines.append(f"{case} {r.skipped} | | | | | |")
            continue
        key = (r.envs, r.width, r.steps)
        speed = f"{base[key] / r.median_ms:,.1f}x" if r.planner == "tt-tui" and key in base and not r.load else ""
        calm = quiet.get((*key, r.dtype, r.threads))
        if r.load and calm:  # under load: how many times its quiet time
            speed = f"{r.median_ms / calm:,.1f}x quiet"
        lines.append(f"{case} {r.median_ms:,.1f} | {r.tokens_per_s:,.0f} | {speed} | {r.gflops:,.1f} | "
                     f"{100 * r.gflops / r.machine_gflops:.0f} % | {_mib(r.peak_bytes)} |")
    speeds = {r.dtype.split()[0]: r.machine_gflops for r in rows if r.ms}
    lines += ["", "GFLOP/s: the plan's work, one decode per token row (GPTConfig.token_flops at the plan's mean "
              "key count), per second; % of machine: that over this device's " + _machine_text(speeds)]
    return "\n".join(lines)


# ---------------------------------------------------------------------- the GPU run


@dataclass(frozen=True)
class HeadlineRun:
    """The seed's headline workload: every env plans at every one of its env steps."""

    device: str
    envs: int
    env_steps: int
    width: int
    steps: int
    expand: int
    dtype: str
    seconds: float
    plan_seconds: float

    @property
    def ms_per_plan(self) -> float:
        return 1e3 * self.plan_seconds / self.env_steps


def bench_headline(
    device: str = "auto", envs: int = 25, env_steps: int = 1000, width: int = 128, steps: int = 15,
    expand: int = 2, context: int = 5, dtype: str = "fp32", seed: int = 0,
) -> HeadlineRun:
    """`envs` Walker2d-v5 envs x `env_steps` env steps planned at width x steps (random
    walker2d-size weights). An env that ends is reset by the vector env in the same step,
    so every env plans at every step, as in the seed's 25 x 1000 figure; it keeps its
    token history (random weights: only the amount of compute matters here)."""
    import gymnasium as gym
    import numpy as np

    from tt_core.config import PlanConfig
    from tt_core.plan.beam_search import BeamPlanner
    from tt_core.plan.rollout import env_tokens, transition_tokens
    from tt_core.model.sampling import EnvStreams

    dev = resolve_device(device)
    model, disc = _bench_planning_setup(dev, seed)
    cfg = model.cfg
    planner = BeamPlanner(
        model, disc, PlanConfig(beam_width=width, beam_steps=steps, beam_context=context, sample_expand=expand),
        device=dev, dtype=COMPUTE_DTYPES[dtype],
    )
    vec = gym.vector.SyncVectorEnv(
        [lambda: gym.make("Walker2d-v5")] * envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )
    streams = EnvStreams.seeded(range(seed, seed + envs), dev)
    O = cfg.observation_dim
    try:
        obs, _ = vec.reset(seed=seed)
        history = torch.zeros(envs, 0, cfg.transition_dim, dtype=torch.long, device=dev)
        plan_seconds = 0.0
        t0 = time.perf_counter()
        for _ in range(env_steps):
            obs_tok = env_tokens(disc, obs, slice(0, O), dev)
            result = planner.plan(history, obs_tok, generator=streams)
            plan_seconds += result.seconds
            actions = np.asarray(result.actions[:, 0], dtype=np.float32)
            obs, rewards, _, _, _ = vec.step(actions)
            row = transition_tokens(disc, obs_tok, actions, np.asarray(rewards, dtype=np.float64))
            history = torch.cat([history, row[:, None]], dim=1)[:, -cfg.seq_len :]
        seconds = time.perf_counter() - t0
    finally:
        vec.close()
    return HeadlineRun(describe(dev), envs, env_steps, width, steps, expand, dtype, seconds, plan_seconds)


def graphs_check(device: str = "cuda", envs: int = 3, plans: int = 3) -> str:
    """One line: do plans through CUDA graphs pick the tokens eager plans pick? Same
    weights, context and random streams; `plans` plans in a row, so the later ones
    replay the graphs the earlier ones captured."""
    from tt_core.config import PlanConfig
    from tt_core.plan.beam_search import BeamPlanner
    from tt_core.model.sampling import EnvStreams

    dev = resolve_device(device)
    model, disc = _bench_planning_setup(dev, 0)
    params = PlanConfig(beam_width=16, beam_steps=4, beam_context=5, sample_expand=2)
    hist, obs = _context(envs, 5, model.cfg, 0)
    runs, stats = {}, None
    for graphs in (True, False):
        planner = BeamPlanner(model, disc, params, device=dev, graphs=graphs)
        streams = EnvStreams.seeded(range(envs), dev)
        runs[graphs] = [planner.plan(hist, obs, generator=streams).sequence for _ in range(plans)]
        if graphs:
            stats = planner.graphs.stats
    same = all(torch.equal(a, b) for a, b in zip(runs[True], runs[False]))
    return (f"CUDA graphs: {plans} plans of {envs} envs at {params.beam_width} x {params.beam_steps} "
            f"{'equal' if same else 'DIFFER FROM'} the eager plans token for token "
            f"({stats.captured} graphs captured, {stats.replayed} replays, {stats.eager} eager decodes)")


def bench_gpu(device: str = "cuda", quick: bool = False) -> str:
    """The GPU benchmark as one markdown report: training (batch 64 and 256, variants),
    planning (1 and 25 envs at 32x5 and 128x15, fp32 and bf16) and the seed's headline
    run (25 Walker2d-v5 envs x 1000 steps at 128x15, expand 2). `quick`: tiny sizes, to
    check on any device that the whole script runs."""
    if quick:
        batches, train_kw = (2,), dict(steps=1, repeats=1, variants=("fp32", "bf16"))
        plan_kw = dict(envs=(1, 2), shapes=((2, 2),), repeats=1)
        head_kw = dict(envs=2, env_steps=3, width=2, steps=2)
    else:
        batches, train_kw = (64, 256), dict(steps=10, repeats=5, variants=("fp32", "bf16", "compile+bf16"))
        plan_kw = dict(envs=(1, 25), shapes=((32, 5), (128, 15)), repeats=3)
        head_kw = dict(envs=25, env_steps=1000, width=128, steps=15)
    parts = [train_table(bench_train(device=device, batch=b, **train_kw)) for b in batches]
    dev, rows = bench_plan(device=device, naive=False, dtypes=("fp32", "bf16", "fp32 eager"), **plan_kw)
    parts.append(plan_table(dev, rows))
    parts.append(graphs_check(device))
    head = bench_headline(device=device, **head_kw)
    parts.append("\n".join([
        f"headline, device {head.device}: {head.envs} Walker2d-v5 envs x {head.env_steps} env steps, "
        f"{head.width} x {head.steps} beams, expand {head.expand}, {head.dtype} (the seed quotes ~12 min on a GPU)",
        "",
        "| wall time | planning time | ms / plan (all envs) | env steps / s |",
        "|---:|---:|---:|---:|",
        f"| {head.seconds:,.1f} s | {head.plan_seconds:,.1f} s | {head.ms_per_plan:,.1f} | "
        f"{head.envs * head.env_steps / head.seconds:,.0f} |",
    ]))
    return "\n\n".join(parts)
