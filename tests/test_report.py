"""Seeds, the results table and its figures (#20): real runs of a tiny config over three
seeds; every number the report prints is recomputed here from the runs' own files."""

import csv
import io
import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import write_tiny_config
from test_cli import _one_error_line, tt
from tt_core.runs.report import Stats

GROUP = "tiny3"
# the tests of the three-seed group share one worker (--dist loadgroup): it is trained once
ONE_WORKER = pytest.mark.xdist_group("three_seeds")


def _config(tmp_path: Path, name: str = "runs") -> Path:
    return write_tiny_config(tmp_path / f"{name}.yaml", tmp_path / name, max_steps=10, checkpoint_every=10,
                             eval_every=10)


@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory) -> Path:
    """A group of three finished runs (seeds 0, 1, 2), trained in sequence."""
    tmp = tmp_path_factory.mktemp("seeds")
    result = tt("train", _config(tmp), f"train.group={GROUP}", "--seeds", "3", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"group {GROUP}: all 3 seeds finished; the table: tt-tui report {GROUP}" in result.stdout
    return tmp / "runs"


def _final_episodes(run: Path) -> list[dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r.get("event") == "EvalFinished"][-1]["results"]


@ONE_WORKER
def test_seeds_make_one_named_run_per_seed_in_a_group(three_seeds):
    runs = sorted(p.name for p in three_seeds.iterdir())
    assert runs == [f"{GROUP}-seed0", f"{GROUP}-seed1", f"{GROUP}-seed2"]
    for seed, name in enumerate(runs):
        assert f"seed: {seed}" in (three_seeds / name / "config.yaml").read_text()
    line = tt("runs", three_seeds, "--group")
    assert line.returncode == 0 and line.stdout.startswith(f"{GROUP}  3 runs (3 finished)  score ")


@ONE_WORKER
def test_the_table_is_the_pooled_final_evaluations_recomputed_from_the_runs_files(three_seeds):
    result = tt("report", GROUP, "--runs-dir", three_seeds, "--format", "csv")
    assert result.returncode == 0, result.stderr
    (row,) = list(csv.DictReader(io.StringIO(result.stdout)))
    episodes = [e for run in sorted(three_seeds.iterdir()) for e in _final_episodes(run)]
    returns = [e["episode_return"] for e in episodes]
    scores = [e["score"] for e in episodes]
    mean = sum(returns) / len(returns)
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / len(returns))  # np.std, as the original
    assert (row["seeds"], row["episodes"]) == ("3", str(len(returns)))
    assert float(row["return"]) == pytest.approx(mean, abs=0.005)
    assert float(row["return std"]) == pytest.approx(std, abs=0.005)
    assert float(row["return sem"]) == pytest.approx(std / math.sqrt(len(returns)), abs=0.005)
    assert float(row["score"]) == pytest.approx(sum(scores) / len(scores), abs=0.005)
    per_seed = [sum(e["score"] for e in _final_episodes(run)) / len(_final_episodes(run))
                for run in sorted(three_seeds.iterdir())]
    assert float(row["seed spread"]) == pytest.approx(Stats.of(per_seed).std, abs=0.005)


@ONE_WORKER
def test_markdown_and_latex_carry_the_same_numbers_as_the_csv(three_seeds, tmp_path):
    assert tt("report", three_seeds, "--out", tmp_path / "t.csv").returncode == 0
    assert tt("report", three_seeds, "--out", tmp_path / "t.md").returncode == 0
    assert tt("report", three_seeds, "--format", "latex", "--out", tmp_path / "t.txt").returncode == 0
    (row,) = list(csv.DictReader(io.StringIO((tmp_path / "t.csv").read_text())))
    md = (tmp_path / "t.md").read_text().splitlines()
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", md[2].strip("|"))]
    assert cells == [row["dataset"], row["env"], row["group"], row["setting"], row["seeds"], row["episodes"],
                     f"{row['score']} ± {row['score sem']}", f"{row['return']} ± {row['return sem']}"]
    tex = (tmp_path / "t.txt").read_text()
    assert re.search(rf"& {row['seeds']} & {row['episodes']} & \$"
                     rf"{re.escape(row['score'])} \\pm {re.escape(row['score sem'])}\$ & "
                     rf"\${re.escape(row['return'])} \\pm {re.escape(row['return sem'])}\$ \\\\", tex), tex
    assert tex.startswith(r"\begin{tabular}") and r"test/hopper/tiny-v0" in tex


@ONE_WORKER
def test_the_figures_are_valid_png_and_svg_files(three_seeds, tmp_path):
    import matplotlib.image

    result = tt("report", three_seeds, "--plots", tmp_path / "figs")
    assert result.returncode == 0, result.stderr
    for name in ("loss", "eval-return", "scores", "prediction-error"):
        png = matplotlib.image.imread(tmp_path / "figs" / f"{name}.png")
        assert png.ndim == 3 and png.shape[0] >= 300 and png.shape[1] >= 400
        root = ET.parse(tmp_path / "figs" / f"{name}.svg").getroot()
        assert root.tag.endswith("svg") and float(root.get("width").rstrip("pt")) > 200


@ONE_WORKER
def test_a_damaged_or_unevaluated_run_is_skipped_with_its_reason(three_seeds, tmp_path):
    import shutil

    folder = tmp_path / "mixed"
    shutil.copytree(three_seeds, folder)
    broken = folder / f"{GROUP}-seed1"
    newest = json.loads((broken / "latest.json").read_text())["checkpoint"]
    (broken / newest / "trainer.pt").unlink()
    plain = write_tiny_config(tmp_path / "plain.yaml", folder, max_steps=5, checkpoint_every=5)
    assert tt("train", plain, "--headless").returncode == 0  # no eval_every: no evaluation
    result = tt("report", folder, "--format", "csv")
    assert result.returncode == 0
    assert f"skipped {broken}: damaged ({newest}/trainer.pt is missing)" in result.stderr
    assert "no evaluation in its metrics" in result.stderr
    assert list(csv.DictReader(io.StringIO(result.stdout)))[0]["seeds"] == "2"


def test_parallel_seeds_train_the_same_runs_as_sequential_ones(tmp_path):
    """With the thread count fixed: a run's numbers depend on it, and parallel seeds share
    the cores (each computes with fewer threads than a seed running alone)."""
    quiet = ("train.eval_every=null", "device.threads=1")  # the weights are what is compared
    assert tt("train", _config(tmp_path, "seq"), *quiet, "train.group=g", "--seeds", "0,1", timeout=600).returncode == 0
    par = tt("train", _config(tmp_path, "par"), *quiet, "train.group=g", "--seeds", "0,1", "--parallel", "2", timeout=600)
    assert par.returncode == 0, par.stdout + par.stderr
    assert "[seed 0]" in par.stdout and "[seed 1]" in par.stdout
    for seed in (0, 1):
        a = load_file(str(tmp_path / "seq" / f"g-seed{seed}" / "checkpoints" / "step_000000010" / "model.safetensors"))
        b = load_file(str(tmp_path / "par" / f"g-seed{seed}" / "checkpoints" / "step_000000010" / "model.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a)
    seed0 = load_file(str(tmp_path / "seq" / "g-seed0" / "checkpoints" / "step_000000010" / "model.safetensors"))
    assert not torch.equal(seed0["head"], b["head"])  # and the seeds differ


@pytest.mark.parametrize("args, message", [
    (("--seeds", "a,b"), "give seeds as 0,1,2 or a count"),
    (("--seeds", "\u00b2"), "give seeds as 0,1,2 or a count"),  # a digit to str.isdigit, not to int
    (("--seeds", "1,\u00b2"), "give seeds as 0,1,2 or a count"),
    (("--seeds", "1,1"), "a seed is given twice"),
    (("--seeds", "0"), "a count must be in [1, 1000]"),
    (("--parallel", "2"), "--parallel runs the seeds of --seeds at once"),
])
def test_bad_seed_flags_are_one_line_exit_2(tiny_config, args, message):
    result = tt("train", tiny_config, *args)
    assert result.returncode == 2
    assert message in _one_error_line(result)


def test_report_of_nothing_known_is_one_line(tmp_path):
    result = tt("report", "no-such-group", "--runs-dir", tmp_path)
    assert result.returncode == 2
    assert "no-such-group: no run directory, folder of runs or group of runs" in _one_error_line(result)


# ------------------------------------------------------------------ runs side by side


def _written_run(folder: Path, seed: int, losses: list[float], returns: dict[int, float]) -> Path:
    """A finished run's files, written through the run's own writers (fixed numbers: the
    picture must not depend on this machine's floating point)."""
    from tt_core.events import EvalFinished, EvalStarted, TrainFinished, TrainStarted, TrainStep
    from tt_core.config import PlanConfig
    from tt_core.runs.metrics import MetricsWriter

    run = folder / f"demo-seed{seed}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"train: {{seed: {seed}, group: demo}}\n")
    (run / "dataset.json").write_text(json.dumps({"dataset_id": "local/hopper/random-v0", "env_id": "Hopper-v5"}))
    writer = MetricsWriter(run / "metrics.jsonl")
    writer(TrainStarted(str(run), len(losses), 0, 1000, "cpu", 1, "local/hopper/random-v0"))
    for i, loss in enumerate(losses, 1):
        writer(TrainStep(i, i / 10, 1000 * i, loss, loss * 0.9, loss * 1.2, loss * 0.5, loss * 0.7, 1e-3, 1.0))
        if i in returns:
            writer(EvalStarted("Hopper-v5", 2, str(run), "cpu", PlanConfig(), {}))
            results = tuple({"episode_return": returns[i], "score": returns[i] / 2, "error": None} for _ in range(2))
            writer(EvalFinished(results, {"return_mean": returns[i]}, step=i))
    writer(TrainFinished(len(losses), str(run), False))
    writer.close()
    return run


def test_show_draws_two_runs_side_by_side_snapshot(snap_compare, tmp_path):
    from tt_tui.compare import CompareApp

    runs = [_written_run(tmp_path, 0, [3.0 - 0.1 * i for i in range(20)], {10: 20.0, 20: 35.0}),
            _written_run(tmp_path, 1, [3.2 - 0.08 * i for i in range(20)], {10: 15.0, 20: 42.0})]
    assert snap_compare(CompareApp(runs, poll_s=60), terminal_size=(120, 32))


@ONE_WORKER
def test_show_of_a_group_reads_every_run_of_it(three_seeds):
    import asyncio

    from textual.widgets import DataTable

    from tt_core.runs.report import find_runs
    from tt_tui.compare import CompareApp

    app = CompareApp(find_runs([GROUP], three_seeds), poll_s=60)

    async def drive():
        async with app.run_test(size=(120, 32)) as pilot:
            await pilot.pause(0.2)
            table = app.query_one(DataTable)
            rows = [table.get_row_at(i) for i in range(table.row_count)]
            assert [r[1] for r in rows] == [f"{GROUP}-seed{s}" for s in range(3)]
            assert all(r[2] == "finished" and r[3] == "10/10" for r in rows)
            await pilot.press("l")
            assert app.kind == 1
            await pilot.press("q")

    asyncio.run(drive())


@ONE_WORKER
def test_eval_of_several_runs_writes_their_results_and_append_adds_to_them(three_seeds, tmp_path):
    runs = sorted(three_seeds.iterdir())
    out = tmp_path / "results.json"
    first = tt("eval", runs[0], runs[1], "--episodes", "1", "--json", out, "--headless")
    assert first.returncode == 0, first.stderr
    reports = json.loads(out.read_text())
    assert [r["source"] for r in reports] == [str(runs[0]), str(runs[1])]
    again = tt("eval", runs[2], "--episodes", "1", "--json", out, "--append", "--headless")
    assert again.returncode == 0, again.stderr
    assert [r["source"] for r in json.loads(out.read_text())] == [str(r) for r in runs]
    out.write_text("[1, 2]")
    refused = tt("eval", runs[2], "--episodes", "1", "--json", out, "--append", "--headless")
    assert refused.returncode == 3 and "does not hold tt-tui results" in _one_error_line(refused)
    assert out.read_text() == "[1, 2]"  # nothing planned, nothing overwritten


def test_runs_of_other_groups_or_settings_are_never_pooled_and_cells_are_escaped():
    from tt_core.runs.report import RunResult, table_rows, to_markdown

    def result(group, seed, settings="a", dataset="d"):
        return RunResult(f"r-{group}-{seed}", group, seed, dataset, "Env-v5", "beam 4 x 2", settings, 10,
                         (1.0, 3.0), (10.0, 30.0), 0)

    rows = table_rows([result("g1", 0), result("g1", 1), result("g2", 0), result("g1", 2, settings="b"),
                       result("g1", 0, dataset="x|y")])
    assert [(r.group, r.seeds, r.episodes) for r in rows] == [("g1", 2, 4), ("g2", 1, 2), ("g1", 1, 2), ("g1", 1, 2)]
    md = to_markdown(rows).splitlines()
    assert md[-1].startswith(r"| x\|y | Env-v5 | g1 |") and len(re.split(r"(?<!\\)\|", md[-1].strip("|"))) == 8


def test_a_group_is_never_trained_twice_under_one_name(tmp_path):
    cfg = write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=2, checkpoint_every=2)
    assert tt("train", cfg, "train.group=once", "--seeds", "0,1").returncode == 0
    again = tt("train", cfg, "train.group=once", "--seeds", "1,2")
    assert again.returncode == 2
    assert "group once already has a run of seed 1" in _one_error_line(again)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["once-seed0", "once-seed1"]


def test_ctrl_c_stops_the_running_seed_cleanly_and_starts_no_other(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    cfg = write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=100_000, checkpoint_every=100_000)
    proc = subprocess.Popen([sys.executable, "-m", "tt_tui.cli", "train", str(cfg), "train.group=cc", "--seeds", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "runs").glob("cc-seed0/metrics.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl+C does: the whole foreground group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "group cc: stopped by Ctrl+C; seed(s) 1, 2 not started" in err
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["cc-seed0"]
    from tt_core.runs.listing import STOPPED, summarize_run

    assert summarize_run(tmp_path / "runs" / "cc-seed0").state == STOPPED  # it saved and stopped


def test_a_likelihood_evaluation_is_its_own_row_named_by_its_objective():
    from tt_core.runs.report import setting_of

    plan = {"beam_width": 32, "beam_steps": 5, "beam_context": 3, "sample_expand": 2, "stop_mass": "renormalize"}
    assert setting_of(plan) == setting_of({**plan, "objective": "reward"})  # runs from before objectives: reward
    assert setting_of({**plan, "objective": "likelihood"}) == setting_of(plan) + ", by likelihood"
