"""Results over runs: the final evaluation of each run, pooled into one table row per
dataset, env and planning setting, as the TT paper reports them.

Like the original's `plotting/read_results.py`, a row's ± is the standard error over
all its evaluation episodes, std / sqrt(episodes) with the population std (np.std);
the row also gives the std, the number of seeds (runs) and episodes, and the spread of
the per-seed means. Only what the runs saved is read (metrics.jsonl, config.yaml,
dataset.json): nothing is evaluated again. No torch here.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from tt_core import events as ev
from tt_core.errors import ConfigError
from tt_core.runs.listing import FINISHED, RunSummary, list_runs, run_dirs, summary_of
from tt_core.files import RunFileError
from tt_core.runs.reader import RunFilesRead, read_metrics, read_run_files


@dataclass(frozen=True)
class RunResult:
    """The final evaluation of one finished run."""

    run: str
    group: Optional[str]
    seed: Optional[int]
    dataset: str
    env: str
    setting: str  # the planning settings the evaluation ran with, in short
    settings: str  # all of them (the whole plan section and eval.max_steps): what rows are keyed by
    step: Optional[int]  # the training step of the weights evaluated
    returns: tuple[float, ...]  # one per completed episode
    scores: tuple[float, ...]  # normalised, one per completed episode (empty: no reference)
    failed: int  # episodes that ended in an error (not pooled)


@dataclass(frozen=True)
class Stats:
    mean: float
    std: float  # population std, as np.std
    sem: float  # std / sqrt(n): the original's "err"

    @classmethod
    def of(cls, values: Iterable[float]) -> Optional["Stats"]:
        xs = list(values)
        if not xs:
            return None
        mean = math.fsum(xs) / len(xs)
        std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / len(xs))
        return cls(mean, std, std / math.sqrt(len(xs)))


@dataclass(frozen=True)
class Row:
    """One table row: the runs of one dataset, env and setting, their episodes pooled."""

    dataset: str
    env: str
    group: str  # train.group of the runs ("-" for runs outside a group)
    setting: str
    runs: tuple[str, ...]
    seeds: int  # distinct seeds among the runs
    episodes: int  # completed episodes pooled
    failed: int  # episodes that ended in an error, left out
    returns: Stats
    scores: Optional[Stats]
    seed_spread: Optional[float]  # std of the per-seed mean scores (returns without scores)


@dataclass(frozen=True)
class Reference:
    """A published row to print beside the table (from a pretrained manifest)."""

    env: str
    what: str
    mean: float
    error: Optional[float]


def setting_of(plan: dict) -> str:
    """The planning settings a result depends on, in one short phrase."""
    stop, objective = plan.get("stop_mass"), plan.get("objective", "reward")  # runs before objectives: reward
    return (f"beam {plan.get('beam_width')} x {plan.get('beam_steps')}, context {plan.get('beam_context')}, "
            f"expand {plan.get('sample_expand')}" + ("" if stop == "zero" else f", stop mass {stop}")
            + ("" if objective == "reward" else f", by {objective}"))


def run_result(root: Path) -> tuple[Optional[RunResult], Optional[str]]:
    """(the run's final evaluation, None), or (None, why it is skipped)."""
    return result_of(read_run_files(Path(root)))


def result_of(files: RunFilesRead, summary: Optional[RunSummary] = None) -> tuple[Optional[RunResult], Optional[str]]:
    """`run_result` of a run's files already read (and summarized)."""
    summary = summary or summary_of(files)
    if summary.state != FINISHED:
        return None, f"{summary.state} ({summary.why})"
    final = files.digest.final
    if final is None:
        return None, "no evaluation in its metrics (train.eval_every unset?)"
    if final["stopped"]:
        return None, "its final evaluation was stopped early (its episodes were cut short)"
    returns, scores = tuple(final["returns"]), tuple(final["scores"])
    if not returns:
        return None, "its final evaluation has no completed episode"
    plan, max_steps = final["plan"], files.config.max_steps
    settings = json.dumps({"plan": plan, "max_steps": max_steps}, sort_keys=True, default=str)
    return RunResult(str(files.root), summary.group, summary.seed, summary.dataset or "?", summary.env or "?",
                     f"{setting_of(plan)}, max steps {max_steps}", settings, final["step"], returns,
                     scores if len(scores) == len(returns) else (), final["failed"]), None


def find_runs(targets: list[str], runs_dir: Path) -> list[Path]:
    """The run directories `targets` name: a run directory, a folder of runs, or a group
    (train.group) of the runs under `runs_dir`."""
    found: list[Path] = []
    for target in targets:
        path = Path(target)
        if (path / "config.yaml").is_file():
            found.append(path)
        elif path.is_dir():  # every run in it; one that cannot be looked into is reported as skipped, with why
            roots, unreadable = run_dirs(path)
            found += sorted(roots + [p for p, _ in unreadable])
        else:
            members = [Path(r.path) for r in list_runs(runs_dir) if r.group == target]
            if not members:
                raise ConfigError(f"{target}: no run directory, folder of runs or group of runs under {runs_dir}/")
            found += sorted(members)
    return list(dict.fromkeys(found))


KINDS = ("loss_obs", "loss_action", "loss_reward", "loss_value")  # TrainStep's losses per target kind


def run_curves(run: Path) -> tuple[dict[str, dict[int, float]], dict[int, float]]:
    """A run's training curves from its metrics: (per loss kind, and "loss" the weighted
    total, the value by tokens seen; the mean evaluation return by training step). A
    metrics file that cannot be read has no curves (its listing says why)."""
    losses: dict[str, dict[int, float]] = {k: {} for k in (*KINDS, "loss")}
    returns: dict[int, float] = {}
    try:
        metrics = read_metrics(Path(run) / "metrics.jsonl")
    except RunFileError:
        return losses, returns
    for e in metrics.of(ev.TrainStep, ev.EvalFinished):
        if isinstance(e, ev.TrainStep):
            for k, series in losses.items():
                series[e.tokens] = getattr(e, k)
        elif e.step is not None and e.summary.get("return_mean") is not None:
            returns[e.step] = float(e.summary["return_mean"])
    return losses, returns


def final_prediction(run: Path) -> dict | None:
    """The prediction errors of a run's last evaluation (tt_core/plan/prediction.py), None
    when it has none (runs evaluated before they were measured, non-MuJoCo envs)."""
    try:
        metrics = read_metrics(Path(run) / "metrics.jsonl")
    except RunFileError:
        return None
    finished = metrics.of(ev.EvalFinished)
    return finished[-1].summary.get("prediction") if finished else None


def table_rows(results: list[RunResult]) -> list[Row]:
    """One row per dataset, env, group and settings, in the order they first appear: runs
    of other groups, or evaluated with other planning settings, are never pooled."""
    keys: dict[tuple[str, str, str, str], list[RunResult]] = {}
    for r in results:
        keys.setdefault((r.dataset, r.env, r.group or "-", r.settings), []).append(r)
    rows = []
    for (dataset, env, group, _), runs in keys.items():
        scored = all(r.scores for r in runs)
        per_seed = [Stats.of(r.scores if scored else r.returns).mean for r in runs]
        rows.append(Row(
            dataset, env, group, runs[0].setting, tuple(r.run for r in runs),
            len({r.seed if r.seed is not None else r.run for r in runs}),
            sum(len(r.returns) for r in runs), sum(r.failed for r in runs),
            Stats.of(x for r in runs for x in r.returns),
            Stats.of(x for r in runs for x in r.scores) if scored else None,
            Stats.of(per_seed).std if len(runs) > 1 else None,
        ))
    return rows


# ------------------------------------------------------------------ file formats

COLUMNS = ("dataset", "env", "group", "setting", "seeds", "episodes", "failed", "score", "score sem", "score std",
           "return", "return sem", "return std", "seed spread")


def _cells(row: Row) -> list[str]:
    def num(x: Optional[float]) -> str:
        return "" if x is None else f"{x:.2f}"

    s = row.scores
    return [row.dataset, row.env, row.group, row.setting, str(row.seeds), str(row.episodes), str(row.failed),
            num(s and s.mean), num(s and s.sem), num(s and s.std),
            num(row.returns.mean), num(row.returns.sem), num(row.returns.std), num(row.seed_spread)]


def to_csv(rows: list[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(_cells(r) for r in rows)
    return out.getvalue()


def _pm(mean: str, sem: str) -> str:
    return f"{mean} ± {sem}" if mean else ""


def _md(text: str) -> str:
    """`text` inside a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|")


def to_markdown(rows: list[Row], references: list[Reference] = ()) -> str:
    lines = ["| dataset | env | group | setting | seeds | episodes | normalised score (± sem) | return (± sem) |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    for row in rows:
        c = dict(zip(COLUMNS, _cells(row)))
        lines.append(f"| {_md(row.dataset)} | {_md(row.env)} | {_md(row.group)} | {_md(row.setting)} | {row.seeds} | "
                     f"{row.episodes} | {_pm(c['score'], c['score sem'])} | {_pm(c['return'], c['return sem'])} |")
    for ref in references:
        err = "" if ref.error is None else f" ± {ref.error:.2f}"
        lines.append(f"| {_md(ref.what)} | {_md(ref.env)} | | published | | | {ref.mean:.2f}{err} | |")
    return "\n".join(lines) + "\n"


_TEX = {"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}",
        "~": r"\textasciitilde{}", "^": r"\^{}", "\\": r"\textbackslash{}"}


def _tex(text: str) -> str:
    """`text` as LaTeX source (its special characters escaped)."""
    return "".join(_TEX.get(c, c) for c in text)


def to_latex(rows: list[Row], references: list[Reference] = ()) -> str:
    lines = [r"\begin{tabular}{llllrrrr}", r"\toprule",
             r"Dataset & Env & Group & Setting & Seeds & Episodes & Score & Return \\", r"\midrule"]
    for row in rows:
        c = dict(zip(COLUMNS, _cells(row)))
        score = f"${c['score']} \\pm {c['score sem']}$" if c["score"] else ""
        lines.append(f"{_tex(row.dataset)} & {_tex(row.env)} & {_tex(row.group)} & {_tex(row.setting)} & "
                     f"{row.seeds} & {row.episodes} & {score} & ${c['return']} \\pm {c['return sem']}$ \\\\")
    for ref in references:
        err = "" if ref.error is None else f" \\pm {ref.error:.2f}"
        lines.append(f"{_tex(ref.what)} & {_tex(ref.env)} & & published & & & ${ref.mean:.2f}{err}$ & \\\\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
