"""Trainer: loss weighting, schedule, events and exact resume."""

import math
import shutil

import pytest
import torch

from conftest import write_tiny_config
from tt_core.runs import checkpoint as ckpt
from tt_core.config import load_config
from tt_core.controls import Controls
from tt_core.errors import ConfigError
from tt_core.events import Checkpointed, EventBus, TrainFinished, TrainStarted, TrainStep, to_record
from tt_core.runs.reader import read_metrics
from tt_core.train.trainer import Trainer, target_kinds, weighted_loss


def _collect_events(bus: EventBus) -> list:
    events: list = []
    bus.subscribe(events.append)
    return events


def test_target_kinds_follow_the_transition_layout():
    # O=2, A=1: transition [o0 o1 a r v]; target j is sequence position j + 1.
    kinds = target_kinds(9, observation_dim=2, action_dim=1)
    assert kinds.tolist() == [0, 1, 2, 3, 0, 0, 1, 2, 3]


def test_weighted_loss_is_the_original_masked_mean():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    targets = torch.randint(0, 7, (2, 5))
    mask = torch.tensor([[1.0, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    kind = torch.tensor([1, 2, 3, 0, 0])
    weights = torch.tensor([1.0, 5.0, 2.0, 3.0])
    loss, kind_sum, kind_count = weighted_loss(logits, targets, mask, kind, weights)
    per_kind = kind_sum / kind_count.clamp_min(1)
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    expected = (ce * weights[kind] * mask).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # per-kind losses are unweighted means over unmasked targets of that kind
    assert per_kind[0].item() == pytest.approx(ce[0, 3:].mean().item(), rel=1e-6)
    assert per_kind[1].item() == pytest.approx(ce[:, 0].mean().item(), rel=1e-6)
    assert per_kind[3].item() == pytest.approx(ce[0, 2].item(), rel=1e-6)


def test_training_emits_events_writes_metrics_and_checkpoints(tiny_config):
    cfg = load_config(tiny_config)
    bus = EventBus()
    events = _collect_events(bus)
    run_dir = Trainer(cfg, bus).run()
    kinds = [type(e) for e in events]
    assert kinds.count(TrainStarted) == 1 and kinds[-1] is TrainFinished
    steps = [e for e in events if isinstance(e, TrainStep)]
    assert [s.step for s in steps] == [5, 10, 15, 20, 25, 30]
    assert all(math.isfinite(s.loss) and s.tokens_per_s > 0 for s in steps)
    assert [e.step for e in events if isinstance(e, Checkpointed)] == [10, 20, 30]
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r.step for r in records.of(TrainStep)] == [5, 10, 15, 20, 25, 30] and records.skipped == 0
    assert load_config(run_dir / "config.yaml") == cfg
    assert ckpt.load_run(run_dir).step == 30


def test_learnable_parts_of_the_loss_fall_on_the_tiny_dataset(tmp_path):
    """Random-policy actions stay unpredictable; dynamics, rewards and values do not."""
    cfg = load_config(
        write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=100, log_every=10,
                          checkpoint_every=1000, batch_size=32, lr=3e-3)
    )
    bus = EventBus()
    events = _collect_events(bus)
    Trainer(cfg, bus).run()
    first, last = [e for e in events if isinstance(e, TrainStep)][:: 9]
    assert last.loss_obs < 0.85 * first.loss_obs
    assert last.loss_reward < 0.3 * first.loss_reward
    assert last.loss_value < 0.9 * first.loss_value
    assert last.loss < first.loss


def test_resume_continues_exactly_where_the_run_stopped(tmp_path):
    """30 steps in one go == 10 steps, stop, resume to 30: same weights, bit for bit."""
    config = write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=30)
    cfg = load_config(config)
    straight = Trainer(cfg, EventBus())
    straight.run()

    controls = Controls()
    bus = EventBus()
    # stop after step 10 is logged: the trainer saves before returning
    bus.subscribe(lambda e: controls.request_stop() if isinstance(e, TrainStep) and e.step == 10 else None)
    first = Trainer(load_config(config), bus, controls)
    run_dir = first.run()
    assert ckpt.load_run(run_dir).step == 10

    resumed = Trainer(load_config(run_dir / "config.yaml"), EventBus(), resume=run_dir)
    assert resumed.step == 10
    # the lr schedule's count came back with the checkpoint; one saved without it
    # replays the batches trained on and finds the same count
    # (on a copy of the run: `resumed` holds the run's lock, one writer per run)
    older = shutil.copytree(run_dir, tmp_path / "older")
    trainer_file = older / "checkpoints" / "step_000000010" / "trainer.pt"
    state = torch.load(trainer_file, weights_only=True)
    counted = state.pop("schedule_tokens")
    assert resumed.tokens == counted > 0
    torch.save(state, trainer_file)
    assert Trainer(load_config(older / "config.yaml"), EventBus(), resume=older).tokens == counted
    resumed.run()
    for name, p in straight.model.state_dict().items():
        assert torch.equal(p, resumed.model.state_dict()[name]), name


def test_save_request_checkpoints_at_the_current_step_boundary(tiny_config):
    cfg = load_config(tiny_config)
    controls = Controls()
    bus = EventBus()
    events = _collect_events(bus)
    bus.subscribe(lambda e: controls.request_save() if isinstance(e, TrainStep) and e.step == 5 else None)
    Trainer(cfg, bus, controls).run()
    assert [e.step for e in events if isinstance(e, Checkpointed)] == [5, 10, 20, 30]


def test_resume_refuses_a_changed_model_section(tmp_path):
    config = write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=5)
    run_dir = Trainer(load_config(config), EventBus()).run()
    changed = load_config(run_dir / "config.yaml", ["model.n_layers=2"])
    with pytest.raises(ConfigError, match="'model' section differs"):
        Trainer(changed, EventBus(), resume=run_dir)


def test_training_evaluates_every_n_steps_and_at_the_end(tmp_path):
    """As in the app (watch=True): snapshots flow, metrics.jsonl keeps the eval results."""
    from tt_core.events import EpisodeEnd, EvalFinished, EvalStarted, PlanSnapshot

    config = write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=20, eval_every=10)
    cfg = load_config(config, ["eval.episodes=2", "eval.max_steps=3"])
    bus = EventBus()
    events = _collect_events(bus)
    trainer = Trainer(cfg, bus, watch=True)
    run_dir = trainer.run()
    assert any(isinstance(e, PlanSnapshot) for e in events)
    kinds = [type(r.event).__name__ for r in read_metrics(run_dir / "metrics.jsonl").records]
    assert kinds.count("EvalFinished") == 2 and kinds.count("EpisodeEnd") == 4
    assert "PlanSnapshot" not in kinds and "EnvStep" not in kinds
    order = [type(e).__name__ for e in events if isinstance(e, (EvalStarted, EvalFinished, TrainFinished))]
    assert order == ["EvalStarted", "EvalFinished", "EvalStarted", "EvalFinished", "TrainFinished"]
    ends = [e for e in events if isinstance(e, EpisodeEnd)]
    assert len(ends) == 4 and all(e.length <= 3 for e in ends)
    assert trainer.model.training  # back to training mode after each evaluation


def test_resume_after_a_kill_leaves_one_record_per_step_and_no_save_residue(tmp_path):
    """What a SIGKILL after the checkpoint at step 20 leaves: metrics logged up to step
    25, a temp file of latest.json and a half-written checkpoint directory."""
    import json

    cfg = load_config(write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=20, log_every=5))
    run = Trainer(cfg, EventBus()).run()
    metrics = run / "metrics.jsonl"
    with metrics.open("a") as f:
        for step in (25,):
            f.write(json.dumps(to_record(TrainStep(step, 1.0, 100, 9.0, 1.0, 1.0, 1.0, 1.0, 1e-4, 10.0))) + "\n")
        f.write('{"event": "TrainSt')  # torn by the kill
    (run / ".latest.json.k1ll3d").write_text('{"checkp')
    (run / "checkpoints" / ".step_000000030.x").mkdir()

    resumed = load_config(run / "config.yaml", ["train.max_steps=30"])
    Trainer(resumed, EventBus(), resume=run).run()
    steps = read_metrics(metrics).of(TrainStep)
    assert [r.step for r in steps] == [5, 10, 15, 20, 25, 30]  # 25 once: the resumed run's record
    assert all(r.loss != 9.0 for r in steps)
    assert not list(run.glob(".latest.json.*")) and not list((run / "checkpoints").glob(".step_*"))


def _losses(tmp_path, name: str, *overrides: str) -> list[float]:
    cfg = write_tiny_config(tmp_path / f"{name}.yaml", tmp_path / name, max_steps=10, log_every=5,
                            checkpoint_every=10)
    bus = EventBus()
    events = _collect_events(bus)
    Trainer(load_config(cfg, ["model.dropout=0.0", *overrides]), bus).run()
    return [e.loss for e in events if isinstance(e, TrainStep)]


def test_compiled_training_logs_the_losses_of_eager_training(tmp_path):
    """train.compile: torch.compile changes how the network runs, not what it computes."""
    eager = _losses(tmp_path, "eager")
    compiled = _losses(tmp_path, "compiled", "train.compile=true")
    assert len(eager) == len(compiled) == 2
    assert compiled == pytest.approx(eager, abs=1e-4)


def test_bf16_autocast_trains_within_bf16_rounding_of_fp32(tmp_path):
    """train.precision bf16: autocast on any device (here the CPU); fp32 weights and loss."""
    fp32 = _losses(tmp_path, "fp32", "train.precision=fp32")
    bf16 = _losses(tmp_path, "bf16", "train.precision=bf16")
    assert bf16 != fp32 and bf16 == pytest.approx(fp32, rel=2e-2)


def test_a_run_saved_before_the_stop_token_and_the_schedule_key_loads_plans_and_resumes_as_before(tmp_path):
    """A config.yaml written before `model.stop_token` and `train.schedule` existed is
    read as what that run was (no stop output, the whole-run schedule): it plans, and it
    resumes on its own windows to the weights of an uninterrupted run, bit for bit."""
    import yaml

    from tt_core.plan.agent import load_agent
    from tt_core.plan.beam_search import BeamPlanner

    config = write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=20)
    legacy = ["model.stop_token=false", "train.schedule=ftt"]
    straight = Trainer(load_config(config, legacy), EventBus())
    straight.run()

    controls = Controls()
    bus = EventBus()
    bus.subscribe(lambda e: controls.request_stop() if isinstance(e, TrainStep) and e.step == 10 else None)
    run_dir = Trainer(load_config(config, legacy), bus, controls).run()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    del saved["model"]["stop_token"], saved["train"]["schedule"]  # as an older tt-tui wrote it
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))

    agent = load_agent(run_dir, torch.device("cpu"))
    assert not agent.model.cfg.stop_token and agent.model.head.shape[1] == agent.model.cfg.num_bins
    assert agent.config.train.schedule == "ftt"
    T, O = agent.model.cfg.transition_dim, agent.model.cfg.observation_dim
    plan = BeamPlanner(agent.model, agent.discretizer, agent.config.plan).plan(
        torch.zeros(2, 0, T, dtype=torch.long), torch.ones(2, O, dtype=torch.long))
    assert plan.actions.shape[0] == 2 and (plan.sequence < agent.model.cfg.num_bins).all()

    resumed = Trainer(load_config(run_dir / "config.yaml", saved_run=True), EventBus(), resume=run_dir)
    assert resumed.windows.stop_id is None and len(resumed.windows) == len(straight.windows)
    resumed.run()
    for name, p in straight.model.state_dict().items():
        assert torch.equal(p, resumed.model.state_dict()[name]), name


def test_a_batch_larger_than_the_dataset_is_cut_to_its_windows_with_a_warning(tmp_path):
    from tt_core.events import Message

    cfg = load_config(write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=1, batch_size=5000))
    bus = EventBus()
    events = _collect_events(bus)
    trainer = Trainer(cfg, bus)
    trainer.run()
    (warning,) = [e for e in events if isinstance(e, Message) and "train.batch_size=5000" in e.text]
    assert warning.level == "warning" and f"each batch holds all {trainer.sampler.batch}" in warning.text
    assert trainer.sampler.batch == trainer.sampler.num_windows < 5000
