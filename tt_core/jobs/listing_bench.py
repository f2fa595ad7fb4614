"""`tt-tui bench runs`: how long the commands that read a folder of runs take (`runs`,
`runs --group`, `report`) on many runs, with short and long histories side by side.

The runs are written by the engine's own writers: the run header (config, discretizer,
dataset facts), real checkpoints of a small model (save_checkpoint) and a training's
events through MetricsWriter. One template is made per history length and copied, its
checkpoint files hard-linked (a listing reads their headers only); each copy gets its own
config.yaml so that groups of 5 seeds form, as `--seeds 5` makes them. Each command runs
as the user runs it, a fresh `python -m tt_tui.cli` process, and its wall time is the
median of `repeats`; "empty folder" is the cost of starting the command at all. With
`against` (another checkout, e.g. an older commit) each command also runs with that
code, alternating, for a before/after measured side by side.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import yaml

from tt_core import events as ev
from tt_core.config import PlanConfig, load_config
from tt_core.data.discretizer import Discretizer
from tt_core.runs.digest import DIGEST_FILE, ConfigFacts, cached_metrics, digest_json, stamp_of
from tt_core.runs.checkpoint import RunFiles, save_checkpoint, write_run_header
from tt_core.runs.metrics import MetricsWriter

GROUP_SIZE = 5  # seeds per group, as `--seeds 5`
EVAL_EPISODES = 8
COMMANDS = {"runs": ["runs"], "runs --group": ["runs", "--group"], "report": ["report", "--format", "csv"]}


@dataclass(frozen=True)
class ListingRow:
    command: str
    runs: int
    history: int  # TrainStep records per run
    seconds: list[float]  # wall time of each repeat
    against: Optional[list[float]] = None  # the same with the other checkout's code (--against)


def _events(lines: int, eval_every: int, plan: PlanConfig) -> list:
    """A finished training's metric events: `lines` TrainSteps (10 steps apart), a
    checkpoint every 25, an evaluation every `eval_every` and a final one."""
    rng = np.random.default_rng(0)
    total = 10 * lines
    out: list = [ev.TrainStarted("run", total, 0, 5056, "cpu", 361024, "local/hopper/medium-v0")]

    def evaluation(step: int) -> list:
        results = tuple({"env_index": i, "seed": 1000 + i, "episode_return": float(200 + 50 * rng.random()),
                         "length": 100, "status": "done", "score": float(30 + 5 * rng.random()), "error": None}
                        for i in range(EVAL_EPISODES))
        returns = [r["episode_return"] for r in results]
        summary = {"episodes": EVAL_EPISODES, "failed": 0, "return_mean": float(np.mean(returns)),
                   "return_std": float(np.std(returns)), "score_mean": 32.0, "score_std": 1.0, "plans": 800}
        model = {"n_layers": 3, "embedding_dim": 64, "transition_dim": 16, "seq_len": 5, "action_dim": 3}
        return [ev.EvalStarted("Hopper-v5", EVAL_EPISODES, "run", "cpu", plan, model),
                ev.EvalFinished(results, summary, step)]

    for i in range(1, lines + 1):
        step = 10 * i
        losses = [float(x) for x in 3 + rng.random(4)]
        out.append(ev.TrainStep(step, step / 300, step * 5056, sum(losses), *losses, 6e-4, 20000.0))
        if i % 25 == 0:
            out.append(ev.Checkpointed(step, f"checkpoints/step_{step:09d}"))
        if i % eval_every == 0 or i == lines:
            out += evaluation(step)
    return out + [ev.TrainFinished(total, "run", False)]


def make_template(root: Path, lines: int) -> Path:
    """One finished run with `lines` TrainStep records, written by the engine's writers."""
    import torch

    from tt_core.model.gpt import GPTConfig, TrajectoryGPT

    cfg = load_config(None, ["dataset.id=local/hopper/medium-v0", "model.n_layers=3", "model.embedding_dim=64",
                             "train.group=g0", "train.seed=0"])
    run = RunFiles(root)
    disc = Discretizer.fit(np.random.default_rng(0).normal(size=(1000, 16)), cfg.dataset.num_bins, "quantile")
    meta = {"dataset_id": cfg.dataset.id, "env_id": "Hopper-v5", "observation_dim": 11, "action_dim": 3,
            "transitions": 100000, "episodes": 1024, "ref_min_score": -20.3, "ref_max_score": 3234.3}
    write_run_header(run, cfg, disc, meta)
    model = TrajectoryGPT(GPTConfig.from_config(cfg, 11, 3))
    optimizer = torch.optim.AdamW(model.parameters())
    save_checkpoint(run, 10 * lines, model.state_dict(), {"optimizer": optimizer.state_dict(), "step": 10 * lines})
    writer = MetricsWriter(run.metrics)
    for event in _events(lines, eval_every=max(1, lines // 5), plan=cfg.plan):
        writer(event)
    writer.close()
    return root


def clone_runs(template: Path, folder: Path, count: int) -> None:
    """`count` copies of `template` under `folder`, in groups of GROUP_SIZE seeds, each
    with the listing.json its writer would have kept (the template's metrics digest, its
    own config's facts)."""
    config = yaml.safe_load((template / "config.yaml").read_text())
    metrics_stamp = stamp_of(template / "metrics.jsonl")
    digest = cached_metrics(json.loads((template / DIGEST_FILE).read_text()), metrics_stamp)
    for i in range(count):
        dest = folder / f"run-{i:05d}"
        shutil.copytree(template, dest, copy_function=os.link)
        config["train"].update(group=f"g{i // GROUP_SIZE}", seed=i % GROUP_SIZE)
        for name in ("config.yaml", DIGEST_FILE):  # the template's, hard-linked: replaced, never written through
            (dest / name).unlink()
        (dest / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        facts = (stamp_of(dest / "config.yaml"), ConfigFacts.of(config))
        (dest / DIGEST_FILE).write_text(digest_json((metrics_stamp, digest), facts))


def time_command(args: list[str], repeats: int, against: Optional[Path] = None) -> tuple[list[float], Optional[list[float]]]:
    """Wall seconds of `tt-tui ARGS` in a fresh process, `repeats` times; with `against`
    (another checkout), also with its code, the two alternating so both see the same load."""
    mine: list[float] = []
    other: list[float] = []
    for _ in range(repeats):
        mine.append(_timed(args, None))
        if against is not None:
            other.append(_timed(args, against))
    return mine, (other if against is not None else None)


def _timed(args: list[str], checkout: Optional[Path]) -> float:
    """Seconds of one `tt-tui ARGS` with the code of `checkout` (None: this process's own),
    run from there: `python -m` puts the working folder first on the path."""
    code = Path(checkout).resolve() if checkout is not None else Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(code), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tt_tui.cli", *args], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False, env=env, cwd=code)
    return time.perf_counter() - start


def bench_listing(runs: int, histories: tuple[int, ...], repeats: int, keep: Optional[Path] = None,
                  against: Optional[Path] = None) -> list[ListingRow]:
    """Each command over `runs` runs of each history length, and on an empty folder."""
    base = Path(tempfile.mkdtemp(prefix="tt-bench-runs-")) if keep is None else Path(keep).resolve()
    rows: list[ListingRow] = []
    try:
        empty = base / "empty"
        empty.mkdir(parents=True, exist_ok=True)
        rows.append(ListingRow("runs (empty folder)", 0, 0, *time_command(["runs", str(empty)], repeats, against)))
        for lines in histories:
            folder = base / f"history-{lines}"
            if not folder.is_dir():
                template = make_template(base / f"template-{lines}", lines)
                folder.mkdir()
                clone_runs(template, folder, runs)
            for name, args in COMMANDS.items():
                rows.append(ListingRow(name, runs, lines, *time_command([*args, str(folder)], repeats, against)))
    finally:
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)
    return rows


def listing_table(rows: list[ListingRow]) -> str:
    """Markdown: median and spread of each command's wall time, and per run; with
    --against, the other checkout's median and how many times slower it is."""
    against = any(r.against is not None for r in rows)
    head = "| command | runs | log lines per run | median s | min-max s | ms per run |"
    rule = "|---|---:|---:|---:|---:|---:|"
    if against:
        head, rule = head + " other checkout, median s | ratio |", rule + "---:|---:|"
    lines = [head, rule]
    for r in rows:
        median = statistics.median(r.seconds)
        per_run = f"{1000 * median / r.runs:.2f}" if r.runs else "-"
        line = f"| {r.command} | {r.runs} | {r.history} | {median:.2f} | {min(r.seconds):.2f}-{max(r.seconds):.2f} | {per_run} |"
        if r.against is not None:
            other = statistics.median(r.against)
            line += f" {other:.2f} | {other / median:.1f}x |"
        lines.append(line)
    return "\n".join(lines)
