"""Vector-env evaluation, recording and the eval/record commands on a tiny trained run."""

import json
import os
import subprocess
import sys
from dataclasses import replace

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv

from conftest import write_tiny_config
from tt_core.plan.agent import load_agent
from tt_core.config import EvalConfig, load_config
from tt_core.controls import Controls
from tt_core.device import COMPUTE_DTYPES
from tt_core.events import (
    AttentionMaps,
    EpisodeEnd,
    EvalFinished,
    EvalStarted,
    Message,
    EventBus,
    PlanParamsApplied,
    PlanParamsRefused,
    PlanSnapshot,
    PredictionErrors,
    RecordingStopped,
)
from tt_core.plan.gif import GifRecorder
from tt_core.data.discretizer import Discretizer
from tt_core.plan.rollout import Rollout, env_tokens, normalized_score, transition_tokens
from tt_core.train.trainer import Trainer


class FlakyHopper(HopperEnv):
    """Hopper whose episode reset with seed 101 raises at step 3, and with seed 102
    returns a NaN observation at step 4: one failure of each kind."""

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._tt_seed = seed
        self._tt_t = 0
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self._tt_t += 1
        obs, reward, terminated, truncated, info = super().step(action)
        if getattr(self, "_tt_seed", None) == 101 and self._tt_t == 3:
            raise RuntimeError("simulated physics blow-up")
        if getattr(self, "_tt_seed", None) == 102 and self._tt_t == 4:
            obs = np.full_like(obs, np.nan)
        return obs, reward, terminated, truncated, info


gym.register("TTFlakyHopper-v0", entry_point=FlakyHopper, max_episode_steps=1000)


class ShortHopper(HopperEnv):
    """Hopper whose episode with reset seed s terminates at step 5 + 3 * (s % 4), however
    well the agent plays: envs of one batch finish at known, different steps."""

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._tt_end = 5 + 3 * (seed % 4)
        self._tt_t = 0
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self._tt_t += 1
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated or self._tt_t >= self._tt_end, truncated, info


gym.register("TTShortHopper-v0", entry_point=ShortHopper, max_episode_steps=1000)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rollout")
    cfg = load_config(write_tiny_config(root / "c.yaml", root / "runs", max_steps=40))
    return Trainer(cfg, EventBus()).run()


@pytest.fixture(scope="module")
def agent(tiny_run):
    return load_agent(tiny_run, torch.device("cpu"))


def _events(bus):
    seen = []
    bus.subscribe(seen.append)
    return seen


def test_env_values_are_binned_from_their_float64_value_as_the_dataset_was():
    # an edge at 0.1: just below it is bin 0, although the float32 copy rounds up to the edge
    disc = Discretizer(np.array([[0.0, 0.1, 1.0]] * 3))
    below = np.nextafter(0.1, 0.0)
    assert np.float32(below) >= 0.1  # the rounding the old float32 path suffered from
    obs = np.array([[below, 0.1, 0.5]])
    assert env_tokens(disc, obs, slice(0, 3), torch.device("cpu")).tolist() == [[0, 1, 1]]
    # the history's action and reward tokens take the same path
    row = transition_tokens(disc, torch.zeros(1, 1, dtype=torch.long), np.array([[below]]), np.array([below]))
    assert row.tolist() == [[0, 0, 0, 0]]


def test_normalized_score_prefers_reference_scores_then_behaviour_mean():
    assert normalized_score(50.0, {"ref_min_score": 0.0, "ref_max_score": 200.0}) == 25.0
    assert normalized_score(30.0, {"behaviour_mean_return": 20.0}) == 150.0
    assert normalized_score(30.0, {}) is None


def test_finished_envs_leave_the_planning_batch(agent):
    short = replace(agent, dataset_meta={**agent.dataset_meta, "env_id": "TTShortHopper-v0"})
    bus = EventBus()
    events = _events(bus)
    rollout = Rollout(short, agent.config.plan, EvalConfig(episodes=4, max_steps=25, seed=3), bus)
    batch_sizes = []
    real_plan = rollout.planner.plan

    def spy(history, obs, **kw):
        batch_sizes.append(obs.shape[0])
        return real_plan(history, obs, **kw)

    rollout.planner.plan = spy
    results = rollout.run()
    ends = [e for e in events if isinstance(e, EpisodeEnd)]
    assert sorted(e.env_index for e in ends) == [0, 1, 2, 3]
    # planned rows always equal the envs still running at that step
    lengths = sorted(r.length for r in results)
    expected = [sum(length > t for length in lengths) for t in range(max(lengths))]
    assert batch_sizes == expected
    assert all(r.status in ("done", "truncated") for r in results)
    # seeds 3..6 end at steps 14, 5, 8, 11 at the latest (a fall may come first)
    assert all(r.length <= 5 + 3 * (r.seed % 4) for r in results) and len(set(batch_sizes)) > 1


def test_an_env_that_raises_or_returns_nan_fails_alone(agent):
    flaky = replace(agent, dataset_meta={**agent.dataset_meta, "env_id": "TTFlakyHopper-v0"})
    bus = EventBus()
    results = Rollout(flaky, agent.config.plan, EvalConfig(episodes=3, max_steps=8, seed=100), bus).run()
    by_seed = {r.seed: r for r in results}
    assert by_seed[101].status == "failed" and "simulated physics blow-up" in by_seed[101].error
    assert by_seed[102].status == "failed" and "NaN" in by_seed[102].error
    assert by_seed[100].status != "failed" and by_seed[100].length > 4


def test_live_planning_edits_apply_at_the_next_plan_or_are_refused(agent):
    bus, controls = EventBus(), Controls()
    events = _events(bus)
    rollout = Rollout(agent, agent.config.plan, EvalConfig(episodes=1, max_steps=6, seed=0), bus, controls)
    widths = []
    real_plan = rollout.planner.plan

    def spy(history, obs, **kw):
        widths.append(rollout.plan_cfg.beam_width)
        if len(widths) == 2:
            controls.request_plan_params(beam_width=7)
        if len(widths) == 4:
            controls.request_plan_params(beam_width=0)
        return real_plan(history, obs, **kw)

    rollout.planner.plan = spy
    rollout.run()
    assert widths[:2] == [4, 4] and set(widths[2:]) == {7}
    (applied,) = [e for e in events if isinstance(e, PlanParamsApplied)]
    assert applied.changed == ("beam_width",) and applied.plan.beam_width == 7
    assert applied.cache_bytes == rollout.planner.cache.nbytes  # what the planner holds for width 7
    (refused,) = [e for e in events if isinstance(e, PlanParamsRefused)]
    assert refused.error.startswith("plan.beam_width: 0 must be in [1, 4096]")


def test_snapshots_are_emitted_only_when_asked(agent):
    for wanted in (False, True):
        bus = EventBus()
        events = _events(bus)
        Rollout(agent, agent.config.plan, EvalConfig(episodes=2, max_steps=2), bus, snapshots=wanted).run()
        snaps = [e for e in events if isinstance(e, PlanSnapshot)]
        assert bool(snaps) == wanted
        if wanted:
            assert {s.env_index for s in snaps} == {0, 1}


def test_toggled_recording_writes_a_gif_of_the_recorded_steps(agent, tmp_path):
    bus, controls = EventBus(), Controls()
    events = _events(bus)
    recorder = GifRecorder(tmp_path, "run", agent.env_id, fps=10)
    rollout = Rollout(agent, agent.config.plan, EvalConfig(episodes=2, max_steps=30, seed=5), bus,
                      controls, recorder=recorder, render_size=64)
    calls = []
    real_plan = rollout.planner.plan

    def spy(history, obs, **kw):
        calls.append(1)
        if len(calls) in (2, 5):  # start, then stop after 3 steps
            controls.toggle_recording(1)
        return real_plan(history, obs, **kw)

    rollout.planner.plan = spy
    rollout.run()
    (gif,) = tmp_path.glob("*.gif")
    assert gif.name == "run-Hopper-v5-episode001.gif"
    frames = iio.imread(gif, index=None)
    assert frames.shape[0] == 3 and frames.shape[1:3] == (64, 64)
    assert [(e.env_index, e.path) for e in events if isinstance(e, RecordingStopped)] == [(1, str(gif))]


def tt(*args, cwd=None, drop_env=()):
    env = {k: v for k, v in os.environ.items() if k not in drop_env}
    return subprocess.run([sys.executable, "-m", "tt_tui.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env)


def test_eval_command_prints_the_table_and_writes_json(tiny_run, tmp_path):
    out = tmp_path / "eval.json"
    result = tt("eval", tiny_run, "--episodes", 2, "--max-steps", 10, "--beam-width", 3,
                "--headless", "--json", out)
    assert result.returncode == 0, result.stderr
    assert "return" in result.stdout and "planning" in result.stdout and "tokens/s" in result.stdout
    report = json.loads(out.read_text())
    assert report["plan"]["beam_width"] == 3 and len(report["episodes"]) == 2
    assert report["summary"]["behaviour_mean_return"] > 0
    assert report["summary"]["ms_per_plan"] > 0
    assert report["summary"]["prediction"]["observation_scale"] == "data std"
    assert "prediction error against the simulator" in result.stdout


def test_evaluations_report_the_plans_prediction_errors_per_step_into_the_plan(agent):
    """Every plan of every env is played in the simulator from the env's true state; the
    summary (metrics.jsonl, --json) has the mean error per step into the plan."""
    bus = EventBus()
    events = _events(bus)
    rollout = Rollout(agent, agent.config.plan, EvalConfig(episodes=2, max_steps=3, seed=0), bus, Controls())
    rollout.run()
    (finished,) = [e for e in events if isinstance(e, EvalFinished)]
    prediction = finished.summary["prediction"]
    steps = agent.config.plan.beam_steps
    assert len(prediction["observation"]) == len(prediction["reward"]) == steps
    assert prediction["observation"][0] is None and prediction["observation_count"][0] == 0
    plans = finished.summary["plans"]
    # at most every env's first reward at every plan (fewer where a plan predicts its end)
    assert 0 < prediction["reward_count"][0] <= 2 * plans and prediction["observation_count"][1] > 0
    assert all(v is None or (np.isfinite(v) and v >= 0) for v in prediction["observation"] + prediction["reward"])
    assert prediction["observation_scale"] == "data std"  # the run recorded observation_std


class TrueFuture:
    """A planner hook that replaces every sampled reward and observation token by what the
    simulator does with the plan's own actions from the env's true state: the plans of a
    model that predicts the dynamics perfectly (one env, one beam, one candidate)."""

    def __init__(self, agent, sim, state):
        self.disc, self.sim, self.state = agent.discretizer, sim, state
        self.O, self.A = agent.observation_dim, agent.action_dim
        self.actions, self.obs_at = [], 0

    def _played(self):
        ids = np.minimum(np.array(self.actions).reshape(-1, self.A), self.disc.num_bins - 1)
        return self.sim.play(self.state, self.disc.decode(ids, slice(self.O, self.O + self.A)))

    def sampled(self, env, kind, logits, tokens):
        O, A, disc = self.O, self.A, self.disc
        if kind == "act":
            self.actions.append(int(tokens.reshape(-1)[0]))
            return None
        if kind == "reward":
            played = self._played()
            reward = played.rewards[-1] if len(played.rewards) == len(self.actions) // A else 0.0
            if played.terminated and len(played.rewards) == len(self.actions) // A:
                reward = -100.0  # the termination penalty, as the data scored a fall
            return torch.as_tensor(disc.encode(np.array([[reward]]), slice(O + A, O + A + 1))).reshape(tokens.shape)
        if kind == "obs":
            obs = self._played().observations[-1]
            token = disc.encode(obs[None], slice(0, O))[0, self.obs_at % O]
            self.obs_at += 1
            return torch.full_like(tokens, int(token))
        return None

    def selected(self, env, step, scores, index):
        return None


def test_a_model_that_predicts_the_true_future_has_zero_observation_and_reward_error(agent, monkeypatch):
    """The planner fed the simulator's future (a hook) is a perfect model: its evaluation's
    prediction errors are exactly 0 at every step into the plan."""
    import tt_core.plan.rollout as rollout_module
    from tt_core.plan.plan_frames import PlanRenderer

    assert agent.config.dataset.termination_penalty == -100.0
    made = []
    make = rollout_module.make_vector_env
    monkeypatch.setattr(rollout_module, "make_vector_env", lambda *a, **k: made.append(make(*a, **k)) or made[-1])
    plan = replace(agent.config.plan, beam_width=1, sample_expand=1, beam_steps=4)
    bus = EventBus()
    events = _events(bus)
    rollout = Rollout(agent, plan, EvalConfig(episodes=1, max_steps=3, seed=0), bus, Controls())
    sim = PlanRenderer(agent.env_id, None)
    planned = rollout.planner.plan
    rollout.planner.plan = lambda *a, **k: planned(*a, **k, hooks=TrueFuture(agent, sim, made[-1].call("state_vector")[0]))
    rollout.run()
    sim.close()
    (finished,) = [e for e in events if isinstance(e, EvalFinished)]
    prediction = finished.summary["prediction"]
    assert prediction["observation_count"][1] > 0 and prediction["reward_count"][0] > 0
    assert all(v == 0 for v in prediction["observation"][1:] + prediction["reward"] if v is not None)


def test_evaluations_compare_the_plans_values_with_the_returns_their_episodes_realized(agent):
    """Values are compared once an episode has ended; a truncated one gives the steps whose
    unseen rewards weigh under the tail (with discount 0.1, all but its last step)."""
    short = replace(agent, config=replace(agent.config, dataset=replace(agent.config.dataset, discount=0.1)))
    bus = EventBus()
    events = _events(bus)
    Rollout(short, short.config.plan, EvalConfig(episodes=2, max_steps=3, seed=0), bus, Controls()).run()
    (finished,) = [e for e in events if isinstance(e, EvalFinished)]
    prediction = finished.summary["prediction"]
    assert len(prediction["value"]) == short.config.plan.beam_steps
    assert prediction["value_count"][0] > 0
    assert all(v is None or (np.isfinite(v) and v >= 0) for v in prediction["value"])
    live = [e for e in events if isinstance(e, PredictionErrors)]
    assert list(live[-1].value) == prediction["value"]  # the panel saw the final means


def _planned_sequences(rollout: Rollout) -> list[torch.Tensor]:
    """Every plan's token sequences, as the planner returns them."""
    seen, plan = [], rollout.planner.plan

    def recorded(*args, **kwargs):
        result = plan(*args, **kwargs)
        seen.append(result.sequence.clone())
        return result

    rollout.planner.plan = recorded
    return seen


def test_attention_maps_leave_every_plan_unchanged_token_for_token(agent, tmp_path, monkeypatch):
    """The maps come from a decode of their own after the plan: an evaluation that sends
    them for every plan (and writes them as PNGs) plans exactly what one without them does.
    The maps sent are the model's: every row sums to 1, over the window the plan was made in."""
    import tt_core.plan.rollout as rollout_module

    monkeypatch.setattr(rollout_module, "MAPS_INTERVAL_S", 0.0)
    cfg = EvalConfig(episodes=2, max_steps=4, seed=3)
    plain = Rollout(agent, agent.config.plan, cfg, EventBus(), Controls())
    without = _planned_sequences(plain)
    plain_results = plain.run()

    bus, controls = EventBus(), Controls()
    events = _events(bus)
    controls.show_attention(1)
    shown = Rollout(agent, agent.config.plan, cfg, bus, controls, recorder=GifRecorder(tmp_path, "run", agent.env_id, 10),
                    record_all=True, render_size=32, attention_every=2)
    with_maps = _planned_sequences(shown)
    assert shown.run() == plain_results
    assert len(with_maps) == len(without) > 1
    assert all(torch.equal(a, b) for a, b in zip(with_maps, without))
    maps = [e for e in events if isinstance(e, AttentionMaps)]
    assert [m.env_index for m in maps] == [1] * len(without)
    gpt = agent.model.cfg
    for m in maps:
        L, H, t, _ = m.weights.shape
        assert (L, H) == (gpt.n_layers, gpt.n_heads) and t <= gpt.block_size
        np.testing.assert_allclose(m.weights.sum(-1), 1.0, atol=1e-5)
        assert m.context < t and m.context % gpt.transition_dim == gpt.observation_dim
    assert len(list(tmp_path.glob("run-Hopper-v5-episode00[01]-attention-step*.png"))) == 2 * len(range(0, 4, 2))


def test_eval_rejects_bad_flags_with_exit_2(tiny_run):
    result = tt("eval", tiny_run, "--beam-width", 0, "--headless")
    assert result.returncode == 2
    assert "plan.beam_width: 0 must be in [1, 4096] (from --beam-width 0)" in result.stderr


def test_eval_of_a_missing_run_exits_3(tmp_path):
    result = tt("eval", tmp_path / "nope", "--headless")
    assert result.returncode == 3 and "no such run directory" in result.stderr


def test_record_writes_one_gif_per_episode_with_every_frame(tiny_run, tmp_path):
    # no DIR: the newest run under ./runs is used; no MUJOCO_GL and no display: EGL is chosen
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / tiny_run.name).symlink_to(tiny_run)
    result = tt("record", "--episodes", 2, "--max-steps", 6, "--size", 48, "--fps", 10,
                "--headless", cwd=tmp_path, drop_env=("MUJOCO_GL", "DISPLAY", "WAYLAND_DISPLAY"))
    assert result.returncode == 0, result.stderr
    gifs = sorted((tmp_path / "recordings").glob("*.gif"))
    assert [g.name for g in gifs] == [f"{tiny_run.name}-Hopper-v5-episode00{i}.gif" for i in (0, 1)]
    report_lengths = [int(line.split("length ")[1].split(",")[0])
                      for line in result.stderr.splitlines() if line.startswith("episode ")]
    for gif in gifs:
        frames = iio.imread(gif, index=None)
        assert frames.shape[1:3] == (48, 48)
        assert frames.shape[0] - 1 in report_lengths  # the reset frame + one per step


def test_an_env_that_cannot_be_simulated_from_its_state_gets_one_warning_and_the_evaluation_goes_on(
        agent, tmp_path, monkeypatch):
    """Non-MuJoCo envs (no state_vector) and envs whose observation is not their state
    (Ant): no prediction errors and no plan GIFs, said once; never a crash, also not when
    a plan GIF is asked for."""
    from tt_core.errors import ConfigError

    def not_a_state(env_id, size):
        raise ConfigError(f"{env_id}: plans are rendered for MuJoCo envs only")

    def no_state_vector(self, name, *args, **kwargs):
        assert name != "state_vector", "asked a non-MuJoCo env for its state"
        return real_call(self, name, *args, **kwargs)

    real_call = gym.vector.SyncVectorEnv.call
    monkeypatch.setattr("tt_core.plan.rollout.PlanRenderer", not_a_state)
    monkeypatch.setattr(gym.vector.SyncVectorEnv, "call", no_state_vector)
    bus, controls = EventBus(), Controls()
    events = _events(bus)
    controls.request_plan_gif(0)
    recorder = GifRecorder(tmp_path, "run", agent.env_id, 10)
    rollout = Rollout(agent, agent.config.plan, EvalConfig(episodes=2, max_steps=3, seed=0), bus, controls,
                      recorder=recorder, render_size=32, plans_every=1)
    assert len(rollout.run()) == 2
    warnings = [e.text for e in events if isinstance(e, Message) and "no prediction errors" in e.text]
    assert warnings == ["no prediction errors or plan GIFs: Hopper-v5: plans are rendered for MuJoCo envs only"]
    (finished,) = [e for e in events if isinstance(e, EvalFinished)]
    assert finished.summary["prediction"] is None and not list(tmp_path.glob("*-plan-step*.gif"))


def test_record_plans_writes_every_nth_plan_beside_its_simulator_rollout_and_attention_maps(tiny_run, tmp_path):
    """record --plans 2: the plans made at env steps 0, 2, 4 of each episode, each a GIF of
    one frame per planned transition, [predicted | simulated] side by side; --attention 3:
    the attention maps of the plans made at steps 0 and 3 as PNG figures."""
    from tt_core.plan.plan_frames import GAP, HEADER

    result = tt("record", tiny_run, "--episodes", 1, "--max-steps", 5, "--size", 48, "--plans", 2,
                "--attention", 3, "--headless", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    plans = sorted(p.name for p in tmp_path.glob("*-plan-step*.gif"))
    assert plans == [f"{tiny_run.name}-Hopper-v5-episode000-plan-step{s:04d}.gif" for s in (0, 2, 4)]
    assert "writing plan GIFs (every 2 plans" in result.stdout + result.stderr
    steps = load_config(tiny_run / "config.yaml").plan.beam_steps
    for name in plans:
        frames = iio.imread(tmp_path / name, index=None)
        assert frames.shape[1:3] == (HEADER + 48, 2 * 48 + GAP) and 1 <= frames.shape[0] <= steps
    assert (tmp_path / f"{tiny_run.name}-Hopper-v5-episode000.gif").is_file()  # the episode's own GIF too
    maps = sorted(p.name for p in tmp_path.glob("*-attention-step*.png"))
    assert maps == [f"{tiny_run.name}-Hopper-v5-episode000-attention-step{s:04d}.png" for s in (0, 3)]
    assert "writing attention maps (every 3 plans)" in result.stdout + result.stderr
    assert iio.imread(tmp_path / maps[0]).ndim == 3


def test_bf16_and_auto_planning_run_from_the_cli_and_bad_precision_exits_2(tiny_run):
    from tt_core.device import has_bf16_matrix_units

    ok = tt("eval", tiny_run, "--episodes", 1, "--max-steps", 3, "--dtype", "bf16", "--headless")
    assert ok.returncode == 0, ok.stderr
    auto = tt("eval", tiny_run, "--episodes", 1, "--max-steps", 3, "--dtype", "auto", "--headless")
    assert auto.returncode == 0, auto.stderr
    chosen = "bf16 (auto: this CPU has bf16 matrix units)" if has_bf16_matrix_units() else \
        "fp32 (auto: this CPU has no bf16 matrix units)"
    assert f"planning in {chosen}" in auto.stdout + auto.stderr
    bad = tt("eval", tiny_run, "--dtype", "fp8", "--headless")
    assert bad.returncode == 2 and "plan.dtype: 'fp8' is not one of fp32, bf16, auto" in bad.stderr


@pytest.mark.parametrize("units", [True, False])
def test_auto_precision_is_resolved_once_for_the_device_and_reported(agent, monkeypatch, units):
    """plan.dtype auto becomes a concrete dtype before planning: the planner, the events
    and the memory estimate all see fp32 or bf16, never 'auto'."""
    monkeypatch.setattr("tt_core.device.has_bf16_matrix_units", lambda: units)
    bus = EventBus()
    events = _events(bus)
    plan = replace(agent.config.plan, dtype="auto")
    rollout = Rollout(agent, plan, EvalConfig(episodes=1, max_steps=2, seed=0), bus, Controls())
    want = "bf16" if units else "fp32"
    assert rollout.plan_cfg.dtype == want and rollout.planner.dtype == COMPUTE_DTYPES[want]
    assert rollout.dtype_text.startswith(f"planning in {want} (auto: ")
    rollout.run()
    (started,) = [e for e in events if isinstance(e, EvalStarted)]
    assert started.plan.dtype == want and started.cache_bytes == rollout.planner.cache.nbytes


def test_async_vector_envs_give_the_same_episodes_as_sync(agent):
    """Same seeds, same planner RNG: only where the envs run differs."""
    results = {}
    for mode in ("sync", "async"):
        cfg = EvalConfig(episodes=2, max_steps=6, seed=11, vector=mode)
        results[mode] = Rollout(agent, agent.config.plan, cfg, EventBus()).run()
    assert results["sync"] == results["async"]


def test_a_cuda_graph_fallback_is_said_once_per_run(agent):
    """When the planner's graphs turned themselves off (tt_core/model/decode_graphs.py),
    the rollout reports why in one warning line, once, however many plans follow."""
    from tt_core.events import Message

    bus = EventBus()
    events = _events(bus)
    rollout = Rollout(agent, agent.config.plan, EvalConfig(episodes=2, max_steps=4, seed=0), bus)
    rollout.planner.graphs.fallback = "CUDA graphs failed (RuntimeError: boom); planning eagerly"
    rollout.run()
    said = [e for e in events if isinstance(e, Message) and e.text.startswith("CUDA graphs failed")]
    assert [(m.text, m.level) for m in said] == [(rollout.planner.graphs.fallback, "warning")]


def test_likelihood_planning_runs_from_the_cli_and_an_unknown_objective_exits_2(tiny_run, tmp_path):
    out = tmp_path / "eval.json"
    ok = tt("eval", tiny_run, "--episodes", 1, "--max-steps", 3, "--objective", "likelihood", "--headless",
            "--json", out)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(out.read_text())["plan"]["objective"] == "likelihood"
    assert "by likelihood" in ok.stdout + ok.stderr  # the evaluation's first line says how it ranks
    bad = tt("eval", tiny_run, "--episodes", 1, "--objective", "imitate", "--headless")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "plan.objective" in bad.stderr and "likelihood" in bad.stderr


def test_no_cuda_graphs_flag_reaches_the_plan_config():
    from tt_core.config import Config
    from tt_tui.cli.planning import PLANNING_FLAGS, patch_from_flags

    (flag,) = [f for f in PLANNING_FLAGS if f.key == "plan.cuda_graphs"]
    assert Config().plan.cuda_graphs is True
    assert patch_from_flags({flag: False}).apply(Config()).plan.cuda_graphs is False


def test_bench_precision_compares_greedy_plans_and_returns_of_the_two_dtypes(tiny_run, agent):
    """Greedy plans are deterministic: fp32 against itself agrees on every context, so any
    disagreement the table shows for bf16 is precision's; returns come per seed and dtype."""
    from tt_core.jobs.precision_bench import bench_precision, greedy_agreement, precision_table

    report = bench_precision(tiny_run, episodes=2, seeds=(0, 5), max_steps=4, device="cpu")
    assert report.contexts == 2 * 2 * 4  # 2 seeds x 2 envs x a plan per step
    assert 0 <= report.same_plan <= report.same_first_action <= report.contexts
    assert {d: sorted(r) for d, r in report.returns.items()} == {"fp32": [0, 5], "bf16": [0, 5]}
    assert all(len(returns) == 2 for by_seed in report.returns.values() for returns in by_seed.values())
    contexts = [(torch.zeros(3, 0, agent.observation_dim + agent.action_dim + 2, dtype=torch.long),
                 torch.randint(0, 20, (3, agent.observation_dim)))]
    assert greedy_agreement(agent, contexts, torch.device("cpu"), ("fp32", "fp32")) == (3, 3)
    table = precision_table(report)
    assert f"| {report.contexts} | {report.same_first_action} (" in table
    assert "| fp32 | " in table and "| bf16 | " in table and "(4 episodes) |" in table


def test_bench_precision_of_a_missing_run_says_so_in_one_line(tmp_path):
    missing = tt("bench", "precision", tmp_path / "nothing")
    assert missing.returncode == 3 and len(missing.stderr.strip().splitlines()) == 1, missing.stderr
