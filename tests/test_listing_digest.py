"""listing.json, the writer's digest of metrics.jsonl and config.yaml (#27 case 15): a
listing that reads it says exactly what reading the whole history says, notices every
edit of the files it digests, never believes a damaged one, and `tt-tui bench runs`
times it on runs written by the engine's own writers."""

import dataclasses
import json
import os
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from tt_core import events as ev
from tt_core.config import PlanConfig
from tt_core.runs.digest import DIGEST_FILE, cached_config, cached_metrics, stamp_of
from tt_core.runs.listing import list_runs, summary_of
from tt_core.runs.metrics import MetricsWriter, truncate_after_step
from tt_core.runs.reader import read_run_files
from tt_core.runs.report import result_of

NOW = 2e9  # a fixed "now" for the heartbeat rule
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([1e200, 1.7e308, 0.0])
STEP = st.integers(0, 10 ** 6)


def _episode(draw) -> dict:
    return {"env_index": 0, "seed": 0, "episode_return": draw(ANY_FLOAT), "length": 1, "status": "done",
            "score": draw(st.none() | ANY_FLOAT), "error": draw(st.none() | st.just("boom"))}


@st.composite
def an_event(draw):
    """Any event a run records, numbers included that no reader can use (NaN, inf, 1e200)."""
    kind = draw(st.sampled_from(["start", "step", "step", "step", "ckpt", "eval_start", "eval", "finish", "fail", "msg"]))
    if kind == "start":
        return ev.TrainStarted("r", draw(st.integers(1, 10 ** 6)), 0, 10, "cpu", 5, "d")
    if kind == "step":
        return ev.TrainStep(draw(STEP), 0.5, 100, draw(ANY_FLOAT), 1.0, 1.0, 1.0, 1.0, 6e-4, 10.0)
    if kind == "ckpt":
        return ev.Checkpointed(draw(STEP), "checkpoints/x")
    if kind == "eval_start":
        return ev.EvalStarted("Hopper-v5", 2, "r", "cpu", PlanConfig(beam_width=draw(st.integers(1, 64))), {})
    if kind == "eval":
        results = tuple(_episode(draw) for _ in range(draw(st.integers(0, 3))))
        summary = {"episodes": len(results), "return_mean": draw(ANY_FLOAT), "score_mean": draw(st.none() | ANY_FLOAT),
                   "stopped": draw(st.booleans())}
        return ev.EvalFinished(results, summary, draw(st.none() | STEP))
    if kind == "finish":
        return ev.TrainFinished(draw(STEP), "r", draw(st.booleans()))
    if kind == "fail":
        return ev.Failed(draw(st.text(max_size=10)))
    return ev.Message("hello")


def _run_dir(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump({"train": {"group": "g", "seed": 3}, "eval": {"max_steps": 50}}))
    return root


def _write(root: Path, events: list, reopen_at: int) -> None:
    """The events through MetricsWriter, closed and reopened (a resume) at `reopen_at`."""
    writer = MetricsWriter(root / "metrics.jsonl")
    for i, event in enumerate(events):
        if i == reopen_at:
            writer.close()
            writer = MetricsWriter(root / "metrics.jsonl")
        writer(event)
    writer.close()


def _answer(root: Path) -> tuple:
    """Everything a listing and a report say of run `root`."""
    files = read_run_files(root)
    summary = summary_of(files, now=NOW)
    return dataclasses.asdict(files.digest), files.config, summary, result_of(files, summary), files.problems


def _full_read(root: Path) -> tuple:
    """`_answer` from the whole history (listing.json set aside)."""
    digest = root / DIGEST_FILE
    kept = digest.read_bytes() if digest.exists() else None
    digest.unlink(missing_ok=True)
    try:
        return _answer(root)
    finally:
        if kept is not None:
            digest.write_bytes(kept)


def _digest_used(root: Path) -> bool:
    return cached_metrics(json.loads((root / DIGEST_FILE).read_text()), stamp_of(root / "metrics.jsonl")) is not None


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(an_event(), min_size=1, max_size=25), reopen=st.integers(0, 30))
def test_the_writers_digest_says_what_reading_the_whole_history_says(tmp_path, events, reopen):
    root = _run_dir(tmp_path / os.urandom(4).hex())
    _write(root, events, reopen)
    assert _digest_used(root)
    assert _answer(root) == _full_read(root)


@settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(an_event(), min_size=4, max_size=25), step=STEP)
def test_a_resume_that_cuts_the_history_keeps_the_digest_true(tmp_path, events, step):
    root = _run_dir(tmp_path / os.urandom(4).hex())
    _write(root, events[:-2], reopen_at=-1)
    truncate_after_step(root / "metrics.jsonl", step)  # what a resume at `step` does before it reopens
    _write(root, events[-2:], reopen_at=-1)
    assert _digest_used(root)
    assert _answer(root) == _full_read(root)


def _finished_run(root: Path) -> Path:
    _run_dir(root)
    _write(root, [ev.TrainStarted("r", 20, 0, 10, "cpu", 5, "d"),
                  ev.TrainStep(10, 0.5, 100, 2.5, 1.0, 1.0, 1.0, 1.0, 6e-4, 10.0),
                  ev.EvalStarted("Hopper-v5", 1, "r", "cpu", PlanConfig(), {}),
                  ev.EvalFinished(({"episode_return": 10.0, "score": None, "error": None},),
                                  {"return_mean": 10.0}, 20),
                  ev.TrainFinished(20, "r", False)], reopen_at=-1)
    return root


def test_a_hand_edit_of_metrics_that_keeps_its_size_is_still_read(tmp_path):
    root = _finished_run(tmp_path / "run")
    metrics = root / "metrics.jsonl"
    text = metrics.read_text()
    edited = text.replace('"loss": 2.5', '"loss": 7.5')
    assert len(edited) == len(text) and edited != text
    metrics.write_text(edited)
    assert not _digest_used(root)
    assert summary_of(read_run_files(root), now=NOW).last_loss == 7.5
    metrics.write_text(text.replace('"loss": 2.5', '"loss": "x"'))  # a damaged line: the run says so
    assert list_runs(tmp_path)[0].state == "damaged"


def test_a_regrouped_config_is_read_again(tmp_path):
    root = _finished_run(tmp_path / "run")
    (root / "config.yaml").write_text(yaml.safe_dump({"train": {"group": "renamed", "seed": 9}}))
    summary = list_runs(tmp_path)[0]
    assert (summary.group, summary.seed) == ("renamed", 9)


LISTING_FIELDS = ["version", "metrics.stamp", "metrics.lines", "metrics.started", "metrics.step", "metrics.loss",
                  "metrics.evals", "metrics.outcome", "metrics.plan", "metrics.final", "metrics.first_skipped",
                  "config.stamp", "config.group", "config.seed", "config.max_steps"]
WRONG = st.one_of(st.none(), st.booleans(), st.integers(-(10 ** 30), 10 ** 30), st.floats(), st.text(max_size=5),
                  st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=3))


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(LISTING_FIELDS), value=WRONG)
def test_a_damaged_listing_json_is_believed_only_in_fields_of_their_type_and_never_breaks_a_listing(tmp_path, field, value):
    root = _finished_run(tmp_path / os.urandom(4).hex())
    truth = _full_read(root)
    data = json.loads((root / DIGEST_FILE).read_text())
    *parents, key = field.split(".")
    target = data
    for part in parents:
        target = target[part]
    changed = target[key] != value
    target[key] = value
    (root / DIGEST_FILE).write_text(json.dumps(data))
    digest, config, *_ = _answer(root)  # never raises
    config_used = cached_config(data, stamp_of(root / "config.yaml")) is not None
    if not _digest_used(root):
        assert digest == truth[0]
    if not config_used:
        assert config == truth[1]
    if changed and field in ("version", "metrics.stamp"):  # another version's or another file's digest
        assert not _digest_used(root)
    if changed and field in ("version", "config.stamp"):
        assert not config_used


def test_bench_runs_writes_real_runs_that_list_report_and_group_through_their_digests(tmp_path):
    from tt_core.jobs.listing_bench import bench_listing, listing_table

    rows = bench_listing(runs=6, histories=(5,), repeats=1, keep=tmp_path)
    assert [(r.command, r.runs, r.history) for r in rows] == [
        ("runs (empty folder)", 0, 0), ("runs", 6, 5), ("runs --group", 6, 5), ("report", 6, 5)]
    assert "| runs --group | 6 | 5 |" in listing_table(rows)
    folder = tmp_path / "history-5"
    runs = list_runs(folder)
    assert [r.state for r in runs] == ["finished"] * 6
    assert sorted((r.group, r.seed) for r in runs) == [("g0", s) for s in range(5)] + [("g1", 0)]
    for run in folder.iterdir():
        assert _digest_used(run) and _answer(run) == _full_read(run)
