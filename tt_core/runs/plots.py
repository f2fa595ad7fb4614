"""The report's figures, PNG and SVG: training loss per kind against tokens seen and
evaluation return against the training step (the mean over seeds with a band of one
std), the normalised scores as bars with their standard error, like the TT paper's, and
the plans' prediction errors against the step into the plan (runs that measured them),
and the attention maps a row's run kept from its latest evaluation (PNG only, drawn
like record's: tt_core/runs/attention_figure.py).

matplotlib is an optional extra (`pip install -e ".[plots]"`); without it `write_plots`
raises a ConfigError saying how to install it. No torch here.
"""

from __future__ import annotations

import math
from pathlib import Path

from tt_core.errors import ConfigError
from tt_core.runs.attention_figure import attention_image
from tt_core.runs.attention_file import read_attention
from tt_core.runs.report import KINDS, Row, Stats, final_prediction, run_curves


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError('--plots needs matplotlib: pip install -e ".[plots]" (or pip install matplotlib)') from None
    return plt


def _plot_band(ax, series: list[dict[int, float]], **style) -> None:
    """The mean over `series` at the x values they all have, with a band of one std."""
    xs = sorted(set.intersection(*(set(s) for s in series))) if series else []
    stats = [Stats.of(s[x] for s in series) for x in xs]
    line, = ax.plot(xs, [st.mean for st in stats], **style)
    ax.fill_between(xs, [st.mean - st.std for st in stats], [st.mean + st.std for st in stats],
                    color=line.get_color(), alpha=0.25, linewidth=0)


def _save(fig, folder: Path, name: str) -> list[Path]:
    paths = [folder / f"{name}.png", folder / f"{name}.svg"]
    for path in paths:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return paths


def write_plots(rows: list[Row], folder: Path) -> list[Path]:
    """Write the three figures for `rows` into `folder`; the paths written."""
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    label = [f"{row.dataset} {row.group} ({row.seeds} seeds)" for row in rows]
    curves = [[run_curves(Path(run)) for run in row.runs] for row in rows]
    written = []

    fig, axes = plt.subplots(1, len(KINDS), figsize=(4 * len(KINDS), 3.2))
    for ax, kind in zip(axes, KINDS):
        for name, runs in zip(label, curves):
            _plot_band(ax, [losses[kind] for losses, _ in runs], label=name)
        ax.set_title(kind.replace("loss_", "") + " loss")
        ax.set_xlabel("tokens seen")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=max(1, min(3, len(names))), fontsize="small",
               bbox_to_anchor=(0.5, -0.12 * max(1, math.ceil(len(names) / 3))))
    written += _save(fig, folder, "loss")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, runs in zip(label, curves):
        _plot_band(ax, [returns for _, returns in runs], marker="o", label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel("evaluation return")
    ax.legend(fontsize="small")
    written += _save(fig, folder, "eval-return")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(rows) + 2), 3.5))
    heights = [row.scores.mean if row.scores else row.returns.mean for row in rows]
    errors = [row.scores.sem if row.scores else row.returns.sem for row in rows]
    ax.bar(range(len(rows)), heights, yerr=errors, capsize=4, color="#4c72b0")
    ax.set_xticks(range(len(rows)), [f"{row.dataset}\n{row.group}" for row in rows], fontsize="small")
    ax.set_ylabel("normalised score" if all(row.scores for row in rows) else
                  "return" if not any(row.scores for row in rows) else "normalised score (return: no reference)")
    written += _save(fig, folder, "scores")
    plt.close(fig)
    return written + _prediction_figure(plt, rows, label, folder) + _attention_figures(rows, folder)


def _attention_figures(rows: list[Row], folder: Path) -> list[Path]:
    """Per row, the attention maps its first run kept from its latest evaluation (every
    layer and head over the window of env 0's first plan; tt_core/runs/attention_file.py)
    as `attention-<row>.png`; none for rows whose runs kept none (runs trained before
    they were kept, or a damaged file)."""
    import imageio.v3 as iio

    written = []
    for n, row in enumerate(rows, 1):
        kept = next(((run, k) for run in row.runs if (k := read_attention(run)) is not None), None)
        if kept is None:
            continue
        run, (maps, step) = kept
        title = (f"{Path(run).name} ({row.dataset}, step {step}): attention over the window of the first plan "
                 f"of its latest evaluation")
        path = folder / f"attention-{n}.png"
        iio.imwrite(path, attention_image(maps.weights, maps.observation_dim, maps.action_dim, maps.context, title),
                    extension=".png")
        written.append(path)
    return written


def _prediction_figure(plt, rows: list[Row], label: list[str], folder: Path) -> list[Path]:
    """Observation, reward and value prediction errors against the step into the plan,
    from each run's last evaluation: the mean over seeds, a band of one std; none when no
    run has them (runs evaluated before values were compared have no value errors)."""
    predictions = [[p for p in map(final_prediction, row.runs) if p] for row in rows]
    if not any(predictions):
        return []
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for ax, kind, unit in zip(axes, ("observation", "reward", "value"), ("data stds", "reward units", "return units")):
        for name, runs in zip(label, predictions):
            series = [{k: v for k, v in enumerate(p.get(kind, ())) if v is not None} for p in runs]
            if any(series):
                _plot_band(ax, [s for s in series if s], marker="o", label=name)
        ax.set_title(f"{kind} prediction error")
        ax.set_xlabel("step into the plan")
        ax.set_ylabel(unit)
    axes[0].legend(fontsize="small")
    written = _save(fig, folder, "prediction-error")
    plt.close(fig)
    return written
