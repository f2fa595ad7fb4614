"""Experiment tracking: TensorBoard files read back with tensorboard's own reader, and a
real W&B run in offline mode; a missing package is one line and training goes on."""

import json

import pytest

from conftest import write_tiny_config
from tt_core.train import tracking
from tt_core.config import load_config
from tt_core.events import EvalFinished, EventBus, Message, TrainStep
from tt_core.runs.reader import read_metrics
from tt_core.train.trainer import Trainer


def _train(tmp_path, *overrides):
    cfg = write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=20, log_every=3,
                            checkpoint_every=20, eval_every=10)
    bus = EventBus()
    events: list = []
    bus.subscribe(events.append)
    run = Trainer(load_config(cfg, list(overrides)), bus).run()
    return run, events


def test_tensorboard_files_hold_every_logged_loss_and_each_evaluation(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, events = _train(tmp_path, "train.tensorboard=true")
    acc = EventAccumulator(str(run / tracking.TENSORBOARD_DIR))
    acc.Reload()
    steps = [e for e in events if isinstance(e, TrainStep)]
    logged = [(s.step, s.value) for s in acc.Scalars("train/loss")]
    assert [step for step, _ in logged] == [e.step for e in steps] == [3, 6, 9, 12, 15, 18, 20]
    assert [v for _, v in logged] == pytest.approx([e.loss for e in steps], rel=1e-6)
    assert [s.step for s in acc.Scalars("train/lr")] == [3, 6, 9, 12, 15, 18, 20]
    evals = read_metrics(run / "metrics.jsonl").of(EvalFinished)
    returns = [(s.step, s.value) for s in acc.Scalars("eval/return_mean")]
    assert [step for step, _ in returns] == [10, 20]  # the weights' step, not the last logged one
    assert [v for _, v in returns] == pytest.approx([e.summary["return_mean"] for e in evals], rel=1e-6)
    assert "config" in "".join(acc.Tags()["tensors"])  # the resolved config, as text


def test_wandb_offline_logs_the_scalars_the_evaluation_table_and_the_config(tmp_path, monkeypatch):
    seen = {}
    real_close = tracking.WandbLogger.close

    def close(self):  # what the run holds before it is finished and written out
        seen["summary"] = dict(self.run.summary)
        seen["config"] = dict(self.run.config)
        real_close(self)

    monkeypatch.setattr(tracking.WandbLogger, "close", close)
    run, events = _train(tmp_path, "train.wandb={project: tt-test, mode: offline}")
    losses = {e.step: e.loss for e in events if isinstance(e, TrainStep)}
    # the summary holds the committed steps (W&B commits the last one when it finishes)
    assert seen["summary"]["train/loss"] == pytest.approx(losses[seen["summary"]["_step"]])
    assert {"train/lr", "train/tokens_per_s", "train/loss_value", "eval/return_mean"} <= set(seen["summary"])
    assert seen["config"]["train.lr"] == 6e-4 and seen["config"]["dataset.id"] == "test/hopper/tiny-v0"
    (offline,) = (run / "wandb").glob("offline-run-*")
    assert list(offline.glob("run-*.wandb"))  # syncable later with `wandb sync`
    tables = [json.loads(p.read_text())
              for p in (offline / "files" / "media" / "table" / "eval").glob("episodes_*.table.json")]
    assert len(tables) == 2  # one per evaluation
    assert all(t["columns"] == ["episode", "seed", "return", "length", "status", "score"] for t in tables)
    evals = read_metrics(run / "metrics.jsonl").of(EvalFinished)
    logged = sorted(tuple(round(row[2], 6) for row in t["data"]) for t in tables)
    assert logged == sorted(tuple(round(e["episode_return"], 6) for e in r.results) for r in evals)


@pytest.mark.parametrize("override, package", [("train.tensorboard=true", "tensorboard"),
                                               ("train.wandb={mode: offline}", "wandb")])
def test_a_tracker_whose_package_is_missing_is_one_line_and_training_goes_on(tmp_path, monkeypatch, override, package):
    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None if name == package else real(name))
    run, events = _train(tmp_path, override)
    (line,) = [e.text for e in events if isinstance(e, Message) and "not installed" in e.text]
    assert f"the {package} package is not installed (pip install 'tt-tui[{package}]')" in line
    assert (run / "latest.json").exists()
