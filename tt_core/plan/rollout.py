"""Vector-env evaluation: plan -> act -> extend the context, for N episodes at once.

One gymnasium vector env holds one episode per sub-env. Every env step, the envs still
running are planned for in one batch (finished envs leave the batch at once), the first
action of each best plan (or the next one, with plan_every > 1) is executed, and the
executed transition is appended to that env's token history. Results are reported as
events; `run()` also returns them.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from tt_core.plan.agent import Agent
from tt_core.config import EvalConfig, PlanConfig, apply_plan_update
from tt_core.controls import Controls
from tt_core.data.discretizer import Discretizer
from tt_core.data.reference import ReferenceScores
from tt_core.device import COMPUTE_DTYPES, planning_dtype, set_compute_threads
from tt_core.model.cache_size import cascade_cache_bytes, kv_dtype
from tt_core.distributed import World
from tt_core.errors import ConfigError
from tt_core.mujoco_import import import_glfw_shielded
from tt_core.events import (
    AttentionMaps,
    EnvStep,
    EpisodeEnd,
    EvalFinished,
    EvalStarted,
    EventBus,
    Message,
    PlanParamsApplied,
    PlanParamsRefused,
    PlanSnapshot,
    PredictionErrors,
    RecordingStarted,
    RecordingStopped,
    Throughput,
)
from tt_core.plan.beam_search import BeamPlanner
from tt_core.plan.gif import GifRecorder
from tt_core.plan.plan_frames import PlanRenderer
from tt_core.plan.prediction import HorizonErrors, RealizedValues, observation_scale, plan_errors, predicted_rows
from tt_core.runs.attention_figure import attention_image
from tt_core.model.sampling import EnvStreams

RUNNING, DONE, TRUNCATED, FAILED = "running", "done", "truncated", "failed"
# The app's attention panel redraws a few times a second; maps more often would be lost work.
MAPS_INTERVAL_S = 0.25


@dataclass(frozen=True)
class EpisodeResult:
    env_index: int
    seed: int
    episode_return: float
    length: int
    status: str
    score: float | None
    error: str | None = None


def normalized_score(episode_return: float, meta: dict) -> float | None:
    """D4RL-style 100 * (R - min) / (max - min) when the dataset has reference scores,
    else 100 * R / behaviour mean return (the dataset's own policy = 100)."""
    lo, hi = meta.get("ref_min_score"), meta.get("ref_max_score")
    if lo is not None and hi is not None and hi != lo:
        return ReferenceScores(lo, hi).normalize(episode_return)
    mean = meta.get("behaviour_mean_return")
    if mean:
        return 100.0 * episode_return / abs(mean)
    return None


def score_basis(meta: dict) -> str:
    if meta.get("ref_min_score") is not None and meta.get("ref_max_score") is not None:
        return "normalized (reference min/max)"
    return "% of the dataset's behaviour mean return"


def env_tokens(disc: Discretizer, values: np.ndarray, dims: slice, device: torch.device) -> torch.Tensor:
    """Bin ids of values from the env, on `device`. Binned from the values themselves
    (float64, as the dataset was and as the original bins them): a float32 copy can round
    across a bin edge and give the plan a token the data never would."""
    return torch.as_tensor(disc.encode(values, dims=dims), device=device)  # numpy: float64


def transition_tokens(disc: Discretizer, obs_tok: torch.Tensor, actions: np.ndarray,
                      rewards: np.ndarray) -> torch.Tensor:
    """Tokens [k, T] of k executed transitions for the history: the observation tokens
    the plan started from, the executed actions and rewards (NaN as 0), and a value
    placeholder 0 (the model never attends to value tokens)."""
    O, A = obs_tok.shape[1], actions.shape[1]
    act_rew = np.concatenate([actions, np.nan_to_num(rewards)[:, None]], axis=1)
    row = torch.zeros(len(obs_tok), O + A + 2, dtype=torch.long, device=obs_tok.device)
    row[:, :O] = obs_tok
    row[:, O : O + A + 1] = env_tokens(disc, act_rew, slice(O, O + A + 1), obs_tok.device)
    return row


class _CatchStepErrors(gym.Wrapper):
    """Turn an exception inside one sub-env into a terminated step flagged in `info`,
    so a vector step never loses the other envs' progress."""

    def step(self, action):
        try:
            return self.env.step(action)
        except Exception as exc:  # any physics / env bug fails this episode only
            obs = np.full(self.observation_space.shape, np.nan, dtype=np.float64)
            return obs, 0.0, True, False, {"tt_error": f"{type(exc).__name__}: {exc}"}


def make_vector_env(
    env_id: str, n: int, mode: str, max_steps: int, render_size: int | None = None
) -> gym.vector.VectorEnv:
    kwargs: dict[str, Any] = {"max_episode_steps": max_steps}
    if render_size is not None:
        kwargs.update(render_mode="rgb_array", width=render_size, height=render_size)

    def make() -> gym.Env:
        return _CatchStepErrors(gym.make(env_id, **kwargs))

    try:
        gym.spec(env_id)
    except Exception as exc:
        raise ConfigError(f"cannot make environment '{env_id}': {exc}") from None
    import_glfw_shielded()  # here, not in each env: async workers inherit it
    fns = [make] * n
    if mode == "async":
        return gym.vector.AsyncVectorEnv(fns)
    return gym.vector.SyncVectorEnv(fns)


@dataclass
class _Episodes:
    """What a rollout knows of its envs between steps (index i: this rank's i-th episode)."""

    obs: np.ndarray  # the envs' current observations
    window: int  # transitions of history kept: the model's whole window
    history: torch.Tensor  # [n, <= window, T] executed transitions as tokens
    status: list[str]
    errors: list[str | None]
    returns: np.ndarray
    lengths: np.ndarray
    planned: np.ndarray  # [n, plan length, A]: each env's latest plan
    plan_pos: int = 0  # actions of the current plans executed so far
    plan_seconds: float = 0.0
    plan_tokens: float = 0.0
    plans: int = 0

    def active(self) -> np.ndarray:
        return np.flatnonzero([s == RUNNING for s in self.status])

    def take_plan(self, idx: np.ndarray, actions: np.ndarray, seconds: float, tokens: int) -> None:
        if self.planned.shape[1] != actions.shape[1]:
            self.planned = np.zeros((len(self.status), actions.shape[1], actions.shape[2]), dtype=np.float32)
        self.planned[idx] = actions
        self.plan_pos = 0
        self.plan_seconds += seconds
        self.plan_tokens += tokens
        self.plans += 1

    def next_actions(self, idx: np.ndarray) -> np.ndarray:
        """[n, A]: the active envs' next planned actions (zeros for the others)."""
        actions = np.zeros((len(self.status), self.planned.shape[2]), dtype=np.float32)
        actions[idx] = self.planned[idx, self.plan_pos]
        self.plan_pos += 1
        return actions

    def extend_history(self, idx: np.ndarray, rows: torch.Tensor) -> None:
        """Append the active envs' executed transitions (zeros for the others: they
        have left the batch), keeping the last `window`."""
        grown = torch.zeros(len(self.status), 1, rows.shape[1], dtype=torch.long, device=rows.device)
        grown[torch.as_tensor(idx, device=rows.device), 0] = rows
        self.history = torch.cat([self.history, grown], dim=1)[:, -self.window:]


class Rollout:
    """Runs `episodes` episodes of `agent` in parallel; see the module docstring."""

    def __init__(
        self,
        agent: Agent,
        plan: PlanConfig,
        eval_cfg: EvalConfig,
        bus: EventBus,
        controls: Controls | None = None,
        device: torch.device | None = None,
        recorder: GifRecorder | None = None,
        record_all: bool = False,
        render_size: int | None = None,
        snapshots: bool = False,
        world: World | None = None,
        threads: int | None = None,
        plans_every: int | None = None,
        attention_every: int | None = None,
        first_maps: bool = False,
    ) -> None:
        """`world`: under torchrun each rank plays its share of the episodes and every rank
        returns all results (rank 0 reports them). `threads`: device.threads (None: chosen,
        and lowered while the machine is oversubscribed; `threads_text` says how).
        `plans_every` N (with a recorder): every N-th plan of each recorded env is also
        written as a GIF, its predicted observations beside a simulator rollout of its
        actions (tt_core/plan/plan_frames.py)."""
        self.agent = agent
        self.world = world or World()
        self.eval_cfg = eval_cfg
        self.bus = bus
        self.controls = controls or Controls()
        self.device = device or next(agent.model.parameters()).device
        self.recorder = recorder
        self.record_all = record_all
        self.render_size = render_size if recorder is not None else None
        self.snapshots = snapshots
        self.plans_every = plans_every if recorder is not None else None
        self.attention_every = attention_every if recorder is not None else None
        self._maps_sent = -math.inf  # when AttentionMaps last went out
        self._first_maps = first_maps
        self.plan_cfg, self.dtype_text = self._resolve_dtype(plan)
        self.planner = self._make_planner(self.plan_cfg)
        self._plans_said = False
        self._attention_said = False
        # simulators that play plans, by frame size (None: playing only, for the prediction
        # errors), made at first use; None when the env's observation is not its MuJoCo state
        self._simulators: dict[int | None, PlanRenderer] | None = {}
        self._errors = HorizonErrors()
        data = agent.config.dataset
        self._values = RealizedValues(agent.discretizer, data.discount, data.termination_penalty)
        self._error_scale, self._error_basis = observation_scale(agent.discretizer, agent.dataset_meta,
                                                                 agent.observation_dim)
        self._fallback_said = False
        self._threads, self.threads_text = set_compute_threads(threads, self.device)

    def _resolve_dtype(self, plan: PlanConfig) -> tuple[PlanConfig, str]:
        """`plan` with its dtype resolved for this device (auto -> fp32 or bf16), and the
        line that says so ("" when the config named it)."""
        dtype, why = planning_dtype(plan.dtype, self.device)
        return replace(plan, dtype=dtype), (f"planning in {dtype} ({why})" if plan.dtype == "auto" else "")

    def _make_planner(self, plan: PlanConfig) -> BeamPlanner:
        return BeamPlanner(self.agent.model, self.agent.discretizer, plan, device=self.device,
                           dtype=COMPUTE_DTYPES[plan.dtype],
                           graphs=plan.cuda_graphs)

    def _apply_live_edits(self) -> None:
        update = self.controls.take_plan_params()
        if not update:
            return
        try:
            new, _ = self._resolve_dtype(apply_plan_update(self.plan_cfg, update))
        except ConfigError as exc:
            self.bus.emit(PlanParamsRefused(str(exc)))
            return
        if new.dtype != self.plan_cfg.dtype:
            self.planner = self._make_planner(new)
        else:
            self.planner.set_params(new)
        self.plan_cfg = new
        self.bus.emit(PlanParamsApplied(new, tuple(update), self.cache_bytes(new)))

    def cache_bytes(self, plan: PlanConfig) -> int:
        """The planner's key/value cache for this rank's envs with `plan` (layout, dtype)."""
        gpt = self.agent.model.cfg
        return cascade_cache_bytes(
            len(self.world.share(self.eval_cfg.episodes)), plan.beam_width, plan.sample_expand,
            n_layers=gpt.n_layers, embedding_dim=gpt.embedding_dim, block_tokens=gpt.block_size,
            action_dim=gpt.action_dim, dtype=kv_dtype(plan.dtype, self.device.type),
        )

    def run(self) -> list[EpisodeResult]:
        """Every episode's result (all ranks' under torchrun), reported as EvalFinished."""
        ids = self.world.share(self.eval_cfg.episodes)  # this rank's episodes
        self._ids = list(ids)
        results, stats = self._play() if len(ids) else ([], (0.0, 0.0, 0.0))
        shares = self.world.gather((results, stats, self._errors))
        results = sorted((r for share, _, _ in shares for r in share), key=lambda r: r.env_index)
        tokens, seconds, plans = (sum(s[k] for _, s, _ in shares) for k in range(3))
        summary = summarize(results, self.agent.dataset_meta, tokens, seconds, plans)
        errors = HorizonErrors()
        for _, _, share in shares:
            errors.merge(share)
        summary["prediction"] = errors.summary(self._error_basis) if self._simulators is not None else None
        summary["stopped"] = bool(self.controls.stop_requested)  # its truncated episodes were cut short
        self.bus.emit(EvalFinished(tuple(asdict(r) for r in results), summary, self.agent.step))
        return results

    def _play(self) -> tuple[list[EpisodeResult], tuple[float, float, float]]:
        """This rank's episodes, one per sub-env: plan where due, step the envs, extend
        the histories, report; (results, (planning tokens, planning seconds, plans))."""
        cfg = self.eval_cfg
        seeds = [cfg.seed + i for i in self._ids]
        envs = make_vector_env(self.agent.env_id, len(seeds), cfg.vector, cfg.max_steps, self.render_size)
        self._report_start()
        streams = EnvStreams.seeded(seeds, self.device)  # an env's draws are its own
        try:
            ep = self._reset(envs, seeds)
            t_start = time.perf_counter()
            for step in range(cfg.max_steps):
                if not self._keep_going(ep):
                    break
                idx = ep.active()
                obs_tok = self._observation_tokens(ep, idx)
                self._plan_if_due(envs, ep, idx, obs_tok, streams, step)
                actions = ep.next_actions(idx)
                rewards = self._step_envs(envs, ep, idx, actions)
                ep.extend_history(idx, transition_tokens(self.agent.discretizer, obs_tok, actions[idx], rewards[idx]))
                self._report_step(ep, idx, rewards, step, t_start)
        finally:
            envs.close()
            for sim in (self._simulators or {}).values():
                sim.close()
            if self._simulators is not None:
                self._simulators = {}
        return self._results(ep, seeds), (ep.plan_tokens, ep.plan_seconds, ep.plans)

    # ---- the named steps of _play

    def _report_start(self) -> None:
        agent, gpt = self.agent, self.agent.model.cfg
        model = {"n_layers": gpt.n_layers, "embedding_dim": gpt.embedding_dim,
                 "transition_dim": gpt.transition_dim, "seq_len": gpt.seq_len, "action_dim": gpt.action_dim}
        free = torch.cuda.mem_get_info(self.device)[0] if self.device.type == "cuda" else None
        self.bus.emit(
            EvalStarted(agent.env_id, self.eval_cfg.episodes, str(agent.source), str(self.device),
                        self.plan_cfg, model, free, self.cache_bytes(self.plan_cfg))
        )

    def _reset(self, envs: gym.vector.VectorEnv, seeds: list[int]) -> "_Episodes":
        obs, _ = envs.reset(seed=seeds)
        n, gpt = len(seeds), self.agent.model.cfg
        if self.record_all and self.recorder is not None:
            for i in range(n):
                self.recorder.start(i)
            self._capture(envs)
        return _Episodes(
            obs=obs, window=self.agent.config.dataset.seq_len,
            history=torch.zeros(n, 0, gpt.transition_dim, dtype=torch.long, device=self.device),
            status=[RUNNING] * n, errors=[None] * n, returns=np.zeros(n),
            lengths=np.zeros(n, dtype=int), planned=np.zeros((n, 1, gpt.action_dim), dtype=np.float32),
        )

    def _keep_going(self, ep: "_Episodes") -> bool:
        """Pauses, stop requests and recording toggles; False when nothing is left to play."""
        self.controls.wait_while_paused()
        if self.controls.stop_requested:
            self.bus.emit(Message("evaluation stopped"))
            return False
        self._apply_record_toggles(len(ep.status), ep.status)
        return len(ep.active()) > 0

    def _observation_tokens(self, ep: "_Episodes", idx: np.ndarray) -> torch.Tensor:
        """The active envs' observations as tokens: the plans' prefix, the histories' next row."""
        return env_tokens(self.agent.discretizer, ep.obs[idx], slice(0, self.agent.observation_dim), self.device)

    def _plan_if_due(self, envs: gym.vector.VectorEnv, ep: "_Episodes", idx: np.ndarray, obs_tok: torch.Tensor,
                     streams: EnvStreams, step: int) -> None:
        """Plan for the active envs every plan_every steps (and when a plan runs out)."""
        if ep.plan_pos % self.plan_cfg.plan_every and ep.plan_pos < ep.planned.shape[1]:
            return
        self._apply_live_edits()
        ids = torch.as_tensor(idx, device=self.device)
        result = self.planner.plan(ep.history[ids], obs_tok, generator=streams.subset(idx),
                                   snapshot=self.snapshots)
        ep.take_plan(idx, result.actions, result.seconds, result.tokens)
        wanted = self._plan_gifs_wanted(idx, ep.plans)
        if self._simulator(None) is not None:
            states = envs.call("state_vector")  # the envs' true states (the planner never moves them)
            tokens = result.sequence.cpu().numpy()
            self._check_predictions(idx, tokens, states, ep.lengths)
            if wanted:
                self._write_plans(idx, tokens, step, wanted, states)
        self._attention(ep, idx, ids, obs_tok, result.sequence, step)
        if self._threads is not None:
            self._threads.tick()
        if self.planner.graphs.fallback is not None and not self._fallback_said:  # said once a run
            self._fallback_said = True
            self.bus.emit(Message(self.planner.graphs.fallback, level="warning"))
        for j, i in enumerate(idx if result.snapshot is not None else ()):
            self.bus.emit(PlanSnapshot(step, self._ids[i], result.snapshot[j]))

    def _step_envs(self, envs: gym.vector.VectorEnv, ep: "_Episodes", idx: np.ndarray,
                   actions: np.ndarray) -> np.ndarray:
        """One vector step: returns, lengths and each active env's status; an env that
        raised or returned NaN/inf fails alone. The rewards received (float64)."""
        ep.obs, rewards, terminated, truncated, infos = envs.step(actions)
        self._capture(envs)
        rewards = np.asarray(rewards, dtype=np.float64)
        # the vector env gathers per-env info keys into arrays with a "_key" mask
        err_mask = infos.get("_tt_error", np.zeros(len(ep.status), dtype=bool))
        err_text = infos.get("tt_error")
        for i in idx:
            err = str(err_text[i]) if err_mask[i] else None
            if err is None and not (np.isfinite(ep.obs[i]).all() and math.isfinite(rewards[i])):
                err = "environment returned NaN/inf"
            if err is not None:
                ep.status[i], ep.errors[i] = FAILED, err
                continue
            ep.returns[i] += rewards[i]
            ep.lengths[i] += 1
            self._values.rewarded(i, rewards[i])
            if terminated[i]:
                ep.status[i] = DONE
            elif truncated[i] or ep.lengths[i] >= self.eval_cfg.max_steps:
                ep.status[i] = TRUNCATED
        return rewards

    def _report_step(self, ep: "_Episodes", idx: np.ndarray, rewards: np.ndarray, step: int,
                     t_start: float) -> None:
        self.bus.emit(EnvStep(step + 1, tuple(ep.returns.tolist()),
                              tuple(float(x) for x in np.nan_to_num(rewards)), tuple(ep.status)))
        for i in idx:
            if ep.status[i] != RUNNING:
                self._finish_episode(int(i), ep.returns[i], ep.lengths[i], ep.status[i], ep.errors[i])
        elapsed = time.perf_counter() - t_start
        self.bus.emit(
            Throughput(
                planning_tokens_per_s=ep.plan_tokens / max(ep.plan_seconds, 1e-9),
                ms_per_plan=1000 * ep.plan_seconds / max(ep.plans, 1),
                env_steps_per_s=float(ep.lengths.sum()) / max(elapsed, 1e-9),
            )
        )

    def _results(self, ep: "_Episodes", seeds: list[int]) -> list[EpisodeResult]:
        for i, status in enumerate(ep.status):
            if status == RUNNING:  # stopped early or hit max_steps without a flag
                ep.status[i] = TRUNCATED
                self._finish_episode(i, ep.returns[i], ep.lengths[i], TRUNCATED, None)
        meta = self.agent.dataset_meta
        return [
            EpisodeResult(self._ids[i], seeds[i], float(ep.returns[i]), int(ep.lengths[i]), ep.status[i],
                          normalized_score(float(ep.returns[i]), meta), ep.errors[i])
            for i in range(len(seeds))
        ]

    def _finish_episode(self, i: int, ret: float, length: int, status: str, error: str | None) -> None:
        value_errors = self._values.ended(i, terminated=status == DONE)
        if status != FAILED and value_errors:
            for errors in value_errors:
                self._errors.add("value", errors)
            self._emit_errors()
        self.bus.emit(EpisodeEnd(self._ids[i], float(ret), int(length), status,
                                 normalized_score(float(ret), self.agent.dataset_meta), error))
        if self.recorder is not None and i in self.recorder.recording:
            path = self.recorder.stop(i)
            self.bus.emit(RecordingStopped(self._ids[i], None if path is None else str(path)))

    def _apply_record_toggles(self, n: int, status: list[str]) -> None:
        for i in self.controls.take_record_toggles():
            if self.recorder is None or not 0 <= i < n:
                self.bus.emit(Message(f"cannot record env {i}", level="error"))
            elif i in self.recorder.recording:
                path = self.recorder.stop(i)
                self.bus.emit(RecordingStopped(i, None if path is None else str(path)))
            elif status[i] != RUNNING:
                self.bus.emit(Message(f"env {i} has finished; nothing to record", level="warning"))
            else:
                self.recorder.start(i)
                self.bus.emit(RecordingStarted(i))

    def _simulator(self, size: int | None) -> PlanRenderer | None:
        """The simulator that plays plans, rendering `size`-pixel frames (None: playing
        only), made at first use; None, said once, where the env's observation is not its
        MuJoCo state (no prediction errors, no plan GIFs: the evaluation goes on)."""
        if self._simulators is None:
            return None
        if size not in self._simulators:
            try:
                self._simulators[size] = PlanRenderer(self.agent.env_id, size)
            except ConfigError as exc:
                self._simulators = None
                self.bus.emit(Message(f"no prediction errors or plan GIFs: {exc}", level="warning"))
                return None
        return self._simulators[size]

    def _check_predictions(self, idx: np.ndarray, tokens: np.ndarray, states, steps: np.ndarray) -> None:
        """Each env's best plan ([S, T] tokens in `tokens`, row j for env idx[j]) played in
        the simulator from its true state: the errors of its predictions per step into
        the plan (tt_core/plan/prediction.py); its values are kept until its episode's
        returns are known. `steps`: each env's steps taken."""
        O, A = self.agent.observation_dim, self.agent.action_dim
        for j, i in enumerate(idx):
            obs_err, rew_err = plan_errors(self._simulator(None), self.agent.discretizer, tokens[j], states[i],
                                           self._error_scale, O, A, self.agent.config.dataset.termination_penalty)
            self._errors.add("observation", obs_err)
            self._errors.add("reward", rew_err)
            self._values.planned(int(i), int(steps[i]), tokens[j], O)
        self._emit_errors()

    def _emit_errors(self) -> None:
        now = self._errors.summary(self._error_basis)
        self.bus.emit(PredictionErrors(tuple(now["observation"]), tuple(now["reward"]), tuple(now["value"]),
                                       self._error_basis))

    def _attention(self, ep: "_Episodes", idx: np.ndarray, ids: torch.Tensor, obs_tok: torch.Tensor,
                   sequence: torch.Tensor, step: int) -> None:
        """The attention maps of the plans just made, for the env a view shows (a few a
        second) and, every `attention_every` plans, the recorded envs (PNG files)."""
        shown = self.controls.attention_env
        local = self._ids.index(shown) if shown in self._ids else None
        live = local in idx and time.monotonic() - self._maps_sent >= MAPS_INTERVAL_S
        if self._first_maps and len(idx):
            self._first_maps = False
            local, live = int(idx[0]), True
        files = set()
        if self.attention_every is not None and (ep.plans - 1) % self.attention_every == 0:
            files = set(self.recorder.recording) & set(idx.tolist())
        wanted = sorted(files | ({local} if live else set()))
        if not wanted:
            return
        rows = [int(np.flatnonzero(idx == i)[0]) for i in wanted]
        window, context = self.planner.plan_window(ep.history[ids[rows]], obs_tok[rows], sequence[rows])
        maps = self.agent.model.attention_maps(window.to(self.device)).cpu().numpy()
        for i, weights in zip(wanted, maps):
            event = AttentionMaps(self._ids[i], step, weights, self.agent.observation_dim, self.agent.action_dim,
                                  context)
            if i == local and live:
                self._maps_sent = time.monotonic()
                self.bus.emit(event)
            if i in files:
                self._write_attention(event, i)

    def _write_attention(self, maps: AttentionMaps, i: int) -> None:
        title = (f"{self.recorder.run_name} {self.agent.env_id}: attention over the window of the plan of "
                 f"episode {maps.env_index} at step {maps.step}")
        image = attention_image(maps.weights, maps.observation_dim, maps.action_dim, maps.context, title)
        path = self.recorder.write_attention(i, maps.step, image)
        if not self._attention_said:
            self._attention_said = True
            self.bus.emit(Message(f"writing attention maps ({_every(self.attention_every)}) to {path.parent}, "
                                  f"e.g. {path.name}"))

    def _plan_gifs_wanted(self, idx: np.ndarray, plans: int) -> set[int]:
        """The envs whose plan just made is to be written: asked for with the app's key
        (`Controls.request_plan_gif`), and with `plans_every` N every N-th plan of the
        recorded envs."""
        asked = set(self.controls.take_plan_gif_requests())
        for i in sorted(asked - set(idx.tolist())):
            self.bus.emit(Message(f"env {i} is not planning now; no plan GIF", level="warning"))
        if asked and self.recorder is None:
            self.bus.emit(Message("plan GIFs need a recording folder (tt-tui eval in the app, or record)",
                                  level="error"))
            return set()
        wanted = asked & set(idx.tolist())
        if self.plans_every is not None and (plans - 1) % self.plans_every == 0:
            wanted |= set(self.recorder.recording)
        return wanted

    def _write_plans(self, idx: np.ndarray, tokens: np.ndarray, step: int, wanted: set[int], states) -> None:
        """The plans ([S, T] tokens, row j for env idx[j]) of the envs in `wanted`, each
        beside a rollout of its actions from the env's true state, as a GIF."""
        renderer = self._simulator(self.render_size)
        if renderer is None:
            return
        O, A, disc = self.agent.observation_dim, self.agent.action_dim, self.agent.discretizer
        for j, i in ((j, i) for j, i in enumerate(idx) if i in wanted):
            rows = predicted_rows(tokens[j], O, disc.num_bins)
            if len(rows) == 0:
                continue
            observations = disc.decode(rows[:, :O], slice(0, O))
            actions = disc.decode(rows[:, O : O + A], slice(O, O + A))
            path = self.recorder.write_plan(i, step, renderer.plan_frames(observations, actions, states[i]))
            if self.plans_every is None:  # asked for with a key: each one said
                self.bus.emit(Message(f"plan of env {i} at step {step} beside the simulator: {path}"))
            elif not self._plans_said:
                self._plans_said = True
                self.bus.emit(Message(f"writing plan GIFs ({_every(self.plans_every)}; the model's predictions "
                                      f"beside the simulator) to {path.parent}, e.g. {path.name}"))

    def _capture(self, envs: gym.vector.VectorEnv) -> None:
        if self.recorder is None or not self.recorder.recording:
            return
        if isinstance(envs, gym.vector.SyncVectorEnv):
            for i in self.recorder.recording:
                self.recorder.add(i, envs.envs[i].render())
        else:
            frames = envs.call("render")
            for i in self.recorder.recording:
                self.recorder.add(i, frames[i])


def _every(n: int) -> str:
    """How often a file is written, in words: every plan, every 5 plans."""
    return "every plan" if n == 1 else f"every {n} plans"


def summarize(results: list[EpisodeResult], meta: dict, tokens: float, seconds: float, plans: float) -> dict:
    rets = np.array([r.episode_return for r in results if r.status != FAILED])
    scores = np.array([r.score for r in results if r.status != FAILED and r.score is not None])
    return {
        "episodes": len(results),
        "failed": sum(r.status == FAILED for r in results),
        "return_mean": float(rets.mean()) if rets.size else float("nan"),
        "return_std": float(rets.std()) if rets.size else float("nan"),
        "score_mean": float(scores.mean()) if scores.size else None,
        "score_std": float(scores.std()) if scores.size else None,
        "score_basis": score_basis(meta),
        "behaviour_mean_return": meta.get("behaviour_mean_return"),
        "planning_tokens_per_s": tokens / max(seconds, 1e-9),
        "ms_per_plan": 1000 * seconds / max(plans, 1),
        "plans": int(plans),
    }

