"""Trajectory Transformer beam search, batched over (envs x beams).

`BeamPlanner` decodes every token through the model's own cached decode
(`TrajectoryGPT.decode`) on a `CascadeCache` (tt_core/model/cache.py); `NaivePlanner` runs a
full forward pass of the window for every token and is the oracle of the tests.

`BeamPlanner.plan` runs the original TT `beam_plan` / `sample_n` (Janner et al., 2021)
for E environments at once. Per env: prefix = the last `min(beam_context, seq_len) - 1`
transitions of history + the current observation's tokens (the original crops its input
to `beam_context * T - 1` tokens in whole transitions, which leaves exactly that),
start with `beam_width` identical beams. For each step t: repeat every beam `sample_expand` times, sample A
action tokens (logits / temperature, then the original `filter_cdf` with `cdf_act`,
then top-k with `k_act`, softmax, a draw; tt_core/model/sampling.py), sample the reward
and the value token (top-k `k_reward`, default 1 = greedy as the original's k_rew;
no cdf filter: the original's cdf_rew defaults to None and is not offered) and keep their RAW probabilities (softmax of logits /
temperature, before filtering): rewards[:, t] = E[r_t], rewards[:, t+1] = E[V_t] (the
next step overwrites it with its reward); score = sum_i discount^i rewards[:, i]; keep
the top `beam_width` candidates of each env; unless t is the last step, sample O
observation tokens (`k_obs`, `cdf_obs`). The best final beam of each env is the plan.

Objective (`plan.objective`): "reward" ranks candidates by the score above (the
original's `beam_plan`, the paper's offline RL planner); "likelihood" by the summed
log-probability of every token the candidate's plan sampled so far, observations,
actions, rewards and values, each under the raw distribution softmax(logits /
temperature) before filters (the original's `beam_search`, the paper's imitation planner,
which scores every token of the sequence). Same search, same draws: only the ranking
differs. Unlike the original's `beam_search`, which expands every vocabulary entry of
every token and ranks after each token, candidates are sampled (`sample_expand` per
beam, the filters applied, with replacement: under `likelihood` beams may hold copies of
one sequence) and ranked once per transition, so one batched cascade serves both
objectives.

Stop token (models that have one): every draw and filter acts over all N + 1 outputs,
so a beam can draw the stop token anywhere; it is fed back like any token (the model was
trained on what follows an end). What its probability counts for in the expectations is
`plan.stop_mass`: "renormalize" (the default) takes the expectation given no end; "zero"
drops its column without renormalizing (the original's `value_expectation`,
`probs[:, :, :-1]`), so a likely end pulls a candidate's expected reward and value
toward 0; "lowest" scores an end as the dimension's lowest bin. A stop token in the executed action decodes as the
top bin, as the original's `reconstruct` clips it.

Row order: the `sample_expand` copies of a beam are adjacent (repeat_interleave), so
candidate c of an env is copy c % X of beam c // X. The original tiles (x.repeat);
that only changes which of several exactly tied candidates topk prefers.

Window rule (identical in `BeamPlanner` and `NaivePlanner`): the window holds at most
`block_size` = seq_len * T - 1 tokens and starts at a transition boundary. A token is
fed to the model only when its logits are needed (the last value token of a plan is
sampled, never fed). Before feeding a token at window position `block_size` (it would
not fit), the window is cropped like `TrajectoryGPT.crop(cache, c)`: with L tokens held,
the first ceil((L - c*T) / T) whole transitions are dropped (the partial current
transition counts as one of the c kept) and the kept tokens are re-encoded from
position 0. c = max(1, min(beam_context, seq_len) - 1), so a crop always frees room. At
a plan's start and right after a crop the window is exactly the original's, which keeps
the longest run of whole transitions that fits in `beam_context * T - 1` tokens (at the
start: min(beam_context, seq_len) - 1 past transitions and the current observation; at a
crop, made right before a value token: c whole transitions once it is fed). Between
crops the model sees up to its trained `seq_len` transitions, where the original
re-encodes that sliding window for every token, which a cache cannot do cheaply:
positions are absolute.

Cascade cache (why `BeamPlanner` is fast): all beams of an env share the context
prefix, and the `sample_expand` copies of a beam share everything before the current
step; level 0 holds the prefix once per env, level 1 each beam's tokens after it,
level 2 the current step's action and reward tokens of each candidate. Beam selection
copies level 1 and the chosen candidates' level-2 tokens, never level 0 (after a crop,
the kept transitions are per-beam tokens in level 1 and are copied with it).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from typing import Optional, Protocol

import numpy as np
import torch

from tt_core.model.cache import CascadeCache
from tt_core.config import PlanConfig
from tt_core.data.discretizer import Discretizer
from tt_core.model.decode_graphs import DecodeGraphs
from tt_core.events import BeamSnapshot, BeamStep
from tt_core.model.gpt import TrajectoryGPT, crop_drop
from tt_core.model.sampling import EnvStreams, sample_tokens


@dataclass
class PlanResult:
    actions: np.ndarray  # [E, beam_steps, A] decoded actions of each env's best plan
    sequence: torch.Tensor  # [E, beam_steps, T] token ids of the best plan
    value: np.ndarray  # [E] score of the best plan
    tokens: int  # tokens sampled in this plan (rows x tokens), for tokens/s
    seconds: float
    snapshot: Optional[list[BeamSnapshot]] = None


class PlanHooks(Protocol):
    """Optional interception points (tests, debugging). `env` is the slice of envs the
    call covers; the cached planner covers all envs at once, the naive one one env.
    Returning None keeps the planner's choice; returning a tensor replaces it."""

    def sampled(self, env: slice, kind: str, logits: torch.Tensor, tokens: torch.Tensor):
        """kind in act/reward/value/obs; logits [e, R, V] (/ temperature, unfiltered); tokens [e, R]."""

    def selected(self, env: slice, step: int, scores: torch.Tensor, index: torch.Tensor):
        """scores [e, C] of the candidates; index [e, W] the top-k chosen (per env)."""


class _Base:
    def __init__(self, model: TrajectoryGPT, discretizer: Discretizer, params: PlanConfig, device=None):
        self.model = model.eval()
        cfg = model.cfg
        self.O, self.A, self.T, self.N = cfg.observation_dim, cfg.action_dim, cfg.transition_dim, cfg.num_bins
        self.V = cfg.vocab_size  # N, or N + 1 with the stop token
        self.block = cfg.block_size
        if discretizer.dim != self.T:
            raise ValueError(f"discretizer has {discretizer.dim} dims, the model's transitions {self.T}")
        if cfg.seq_len < 2:
            raise ValueError("planning needs a model with seq_len >= 2")
        self.disc = discretizer
        self.device = torch.device(device) if device is not None else model.pos_emb.device
        self.params = params

    def set_params(self, params: PlanConfig) -> None:
        """Takes effect at the next plan; nothing is rebuilt."""
        self.params = replace(params)

    @property
    def history_transitions(self) -> int:
        """Whole past transitions a plan starts from: what is left of `beam_context`
        transitions (or the model's window) once the current observation is in, the
        original's crop to `beam_context * T - 1` tokens."""
        return min(self.params.beam_context, self.model.cfg.seq_len) - 1

    @property
    def context(self) -> int:
        """Transitions a crop keeps, the current partial one included. A crop comes right
        before a value token is fed, which then completes the last of them: the window
        the original's crop leaves there, `history_transitions` whole transitions (at
        least the current one: the original cannot run beam_context 1, its crop would
        leave nothing)."""
        return max(1, self.history_transitions)

    def _prefix(self, history: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        if history.dim() != 3 or history.shape[2] != self.T:
            raise ValueError(f"history must be [E, h, {self.T}], got {tuple(history.shape)}")
        if obs.dim() != 2 or obs.shape[1] != self.O or obs.shape[0] != history.shape[0]:
            raise ValueError(f"obs must be [E, {self.O}], got {tuple(obs.shape)}")
        h = min(history.shape[1], self.history_transitions)
        hist = history[:, history.shape[1] - h :].reshape(history.shape[0], h * self.T)
        return torch.cat([hist, obs], dim=1).to(self.device, torch.long)

    def plan_window(self, history: torch.Tensor, obs: torch.Tensor,
                    sequence: torch.Tensor) -> tuple[torch.Tensor, int]:
        """([E, t] tokens, context): the window the plans `sequence` [E, S, T] were decoded
        in from `history` and `obs` (what `plan` got), up to the first crop: their prefix
        (`context` tokens: past transitions and the current observation), then the plans'
        own tokens after the current observation, cut at block_size. Its attention maps
        are the weights the model predicted those tokens with."""
        prefix = self._prefix(history, obs)
        plans = sequence.reshape(sequence.shape[0], -1)[:, self.O :].to(prefix.device)
        return torch.cat([prefix, plans], dim=1)[:, : self.block], prefix.shape[1]

    def _expect(self, probs: torch.Tensor, dim: int) -> torch.Tensor:
        """E[value] of dimension `dim` under `probs` [..., V]. The stop token's mass
        (models that have one) counts as `plan.stop_mass` says: 0 (the original's
        value_expectation drops its column), the expectation given no end, or the
        dimension's lowest bin."""
        bins = probs[..., : self.N]
        expected = self.disc.expectation(bins.unsqueeze(-2), slice(dim, dim + 1)).squeeze(-1)
        rule = self.params.stop_mass
        if self.V == self.N or rule == "zero":
            return expected
        if rule == "renormalize":
            return expected / bins.sum(-1).clamp_min(torch.finfo(bins.dtype).tiny)
        lowest = float(self.disc.centers[dim, 0])
        return expected + probs[..., self.N] * lowest

    def _decode_actions(self, ids: np.ndarray) -> np.ndarray:
        """Action token ids [..., A] -> values; a stop token clips to the top bin, as the
        original's `reconstruct` clips out-of-range ids."""
        return self.disc.decode(np.minimum(ids, self.N - 1), slice(self.O, self.O + self.A))



class _SnapshotLog:
    """What a plan's beam tree shows, recorded step by step on the device (no host
    copies while planning) and turned into BeamSnapshots after it."""

    def __init__(self, n_expand: int) -> None:
        self.n_expand = n_expand
        self.parents, self.scores, self.actions, self.rewards, self.values = [], [], [], [], []

    def record(self, t, top, scores, actions, rewards, values) -> None:
        """Step t's kept beams: `top` the chosen candidates per env, then their scores,
        action tokens, expected rewards and expected values."""
        self.parents.append(top // self.n_expand if t else torch.zeros_like(top))  # step 0: one root
        self.scores.append(scores)
        self.actions.append(actions)
        self.rewards.append(rewards)
        self.values.append(values)  # E[V_t], until the next step replaces it with a reward

    def snapshots(self, planner: "_Base", E: int, W: int) -> list[BeamSnapshot]:
        def host(xs):
            return [x.view(E, W).float().cpu().numpy() for x in xs]

        par = [p.view(E, W).cpu().numpy() for p in self.parents]
        val, rew, vtg = host(self.scores), host(self.rewards), host(self.values)
        act = [planner._decode_actions(a.view(E, W, planner.A).cpu().numpy()) for a in self.actions]
        out = []
        for e in range(E):
            steps = [BeamStep(par[t][e], val[t][e], act[t][e], rew[t][e], vtg[t][e]) for t in range(len(par))]
            chosen = [int(np.argmax(val[-1][e]))]
            for t in range(len(par) - 1, 0, -1):
                chosen.append(int(par[t][e][chosen[-1]]))
            out.append(BeamSnapshot(steps, chosen[::-1]))
        return out


# ------------------------------------------------------------------ naive oracle


class NaivePlanner(_Base):
    """One env at a time; a FULL forward pass of the current window for every token.

    Written for clarity: the oracle of the tests and the benchmark baseline.
    """

    @torch.inference_mode()
    def plan(self, history, obs, generator=None, snapshot=False, hooks: Optional[PlanHooks] = None) -> PlanResult:
        t0 = time.perf_counter()
        p = self.params
        prefix = self._prefix(history, obs)
        E = prefix.shape[0]
        seqs, values, snaps, tokens = [], [], [], 0
        for e in range(E):
            gen = generator.subset([e]) if isinstance(generator, EnvStreams) else generator
            seq, val, snap, n = self._plan_one(prefix[e : e + 1], p, gen, snapshot, hooks, slice(e, e + 1))
            seqs.append(seq)
            values.append(val)
            tokens += n
            if snapshot:
                snaps.append(snap[0])
        sequence = torch.stack(seqs)
        acts = self._decode_actions(sequence[:, :, self.O : self.O + self.A].cpu().numpy())
        return PlanResult(acts, sequence, np.array(values), tokens, time.perf_counter() - t0, snaps if snapshot else None)

    def _next_logits(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Crop the window by the window rule if the last token does not fit; logits of its last position."""
        if window.shape[1] > self.block:
            window = window[:, crop_drop(window.shape[1] - 1, self.context, self.T) :]
        return window, self.model(window)[:, -1]

    def _plan_one(self, prefix, p: PlanConfig, gen, snapshot, hooks, env):
        O, A, T = self.O, self.A, self.T
        W, X, S = p.beam_width, p.sample_expand, p.beam_steps
        temp = p.temperature
        window = prefix.repeat(W, 1)  # [W, len]
        plan = prefix[:, -O:].repeat(W, 1)  # the plan's own tokens, from the current obs
        rewards = torch.zeros(W, S + 1, device=self.device)
        discounts = p.discount ** torch.arange(S + 1, device=self.device, dtype=torch.float32)
        likelihood = p.objective == "likelihood"
        logp = torch.zeros(W, device=self.device)  # summed log-probability of each row's sampled tokens
        n_tokens = 0
        log = _SnapshotLog(X) if snapshot else None

        def sample(kind, k, cdf):
            """Draw every row's next token and append it to its window and plan; the logits / temperature."""
            nonlocal window, plan, logp
            window, logits = self._next_logits(window)
            logits = logits / temp
            tok = sample_tokens(logits, k, cdf, gen)
            if hooks is not None:
                r = hooks.sampled(env, kind, logits.unsqueeze(0), tok.unsqueeze(0))
                tok = tok if r is None else r.reshape(-1).to(tok)
            if likelihood:  # the reward objective never reads it: the baseline's time stays its own
                logp = logp + torch.log_softmax(logits, -1)[torch.arange(len(tok)), tok]
            window = torch.cat([window, tok[:, None]], 1)
            plan = torch.cat([plan, tok[:, None]], 1)
            return logits

        for t in range(S):
            window = window.repeat_interleave(X, 0)
            plan = plan.repeat_interleave(X, 0)
            rewards = rewards.repeat_interleave(X, 0)
            logp = logp.repeat_interleave(X, 0)
            for _ in range(A):
                sample("act", p.k_act, p.cdf_act)
            r = self._expect(sample("reward", p.k_reward, None).softmax(-1), O + A)
            v = self._expect(sample("value", p.k_reward, None).softmax(-1), O + A + 1)
            n_tokens += W * X * (A + 2)
            rewards[:, t] = r
            rewards[:, t + 1] = v
            scores = logp if likelihood else (rewards * discounts).sum(-1)
            idx = torch.topk(scores, W).indices
            if hooks is not None:
                rr = hooks.selected(env, t, scores.unsqueeze(0), idx.unsqueeze(0))
                idx = idx if rr is None else rr.reshape(-1).to(idx)
            window, plan, rewards, value, logp = window[idx], plan[idx], rewards[idx], scores[idx], logp[idx]
            if log is not None:
                log.record(t, idx, value, plan[:, -(A + 2) : -2], rewards[:, t].clone(), rewards[:, t + 1].clone())
            if t < S - 1:
                for _ in range(O):
                    sample("obs", p.k_obs, p.cdf_obs)
                n_tokens += W * O
        best = int(torch.argmax(value))
        snap = log.snapshots(self, 1, W) if log is not None else None
        return plan[best].view(S, T), float(value[best]), snap, n_tokens


# ------------------------------------------------------------------ cached planner


class BeamPlanner(_Base):
    """Batched TT beam search on the model's own cached decoding (`TrajectoryGPT.decode`)
    over a `CascadeCache` (see the module doc).

    `dtype` (default: the model's) is the compute dtype of the network (and of the KV
    cache, except on a CPU, where it is fp32: `kv_dtype`): torch.bfloat16 plans with a
    bf16 copy of the model (the model itself is untouched; the copy follows its weights
    when they change, e.g. during training) while logits, probabilities and the scores
    stay fp32. bf16 plans are not
    token-for-token equal to fp32 ones; fp32 equals `NaivePlanner` up to float
    reassociation.

    On CUDA the one-token decodes run as CUDA graphs (tt_core/model/decode_graphs.py), equal to
    the eager decode; `graphs=False` keeps them eager.
    """

    def __init__(
        self, model, discretizer, params, device=None, dtype: Optional[torch.dtype] = None, graphs: bool = True
    ):
        super().__init__(model, discretizer, params, device)
        self.model.to(self.device)
        cfg = model.cfg
        self.dtype = model.pos_emb.dtype if dtype is None else dtype
        self.cache = CascadeCache(cfg.n_layers, cfg.n_heads, cfg.embedding_dim // cfg.n_heads, self.device, self.dtype)
        self._copy: Optional[TrajectoryGPT] = None  # the model in `dtype`, when that differs
        self._copy_key = None
        self.graphs = DecodeGraphs(self.device, enabled=graphs)

    def _network(self) -> TrajectoryGPT:
        """The model in the compute dtype. A lower-precision copy is refreshed when the
        model's weights changed since the last plan (in-place optimizer steps bump
        tensor versions)."""
        if self.dtype == self.model.pos_emb.dtype:
            return self.model
        key = tuple((q.data_ptr(), q._version) for q in self.model.parameters())
        if self._copy is None:
            self._copy = copy.deepcopy(self.model).to(self.dtype).eval()
        elif key != self._copy_key:
            for mine, theirs in zip(self._copy.parameters(), self.model.parameters()):
                mine.copy_(theirs)
        self._copy_key = key
        return self._copy

    # ---- the search

    @torch.inference_mode()
    def plan(self, history, obs, generator=None, snapshot=False, hooks: Optional[PlanHooks] = None) -> PlanResult:
        """The original's `beam_plan` for every env at once; each step's comment is its own."""
        t0 = time.perf_counter()
        p = self.params
        beam_width, n_expand, n_steps = p.beam_width, p.sample_expand, p.beam_steps
        prefix = self._prefix(history, obs)
        n_envs = prefix.shape[0]
        search = _CascadeSearch(self, prefix, _TokenSampler(p.temperature, generator, hooks, n_envs))
        log = _SnapshotLog(n_expand) if snapshot else None

        ## the history once per env, shared by its `beam_width` beams
        beam_logits = search.start(prefix)
        ## rewards and discounts, to estimate the values of partial plans
        rewards = torch.zeros(n_envs * beam_width, n_steps + 1, device=self.device)
        discounts = p.discount ** torch.arange(n_steps + 1, device=self.device, dtype=torch.float32)
        for t in range(n_steps):
            ## repeat every beam `n_expand` times, then sample the candidates' actions
            logits = search.sample_actions(beam_logits.repeat_interleave(n_expand, 0))
            ## sample reward and value; their expectations estimate the candidate's value
            r_t, V_t = search.sample_reward_and_value(logits)
            rewards = rewards.repeat_interleave(n_expand, 0)
            rewards[:, t] = r_t
            rewards[:, t + 1] = V_t
            if search.logp is not None:
                ## the likelihood objective: the log-probability of every token sampled so far
                values = search.logp.view(n_envs, beam_width * n_expand)
            else:
                ## rewards up to `t` and the terminal value at `t`, discounted
                values = (rewards * discounts).view(n_envs, beam_width * n_expand, n_steps + 1).sum(-1)
            ## the `beam_width` best candidates of each env (rows of all envs' candidates)
            top = search.sampler.selected(t, values, torch.topk(values, beam_width, dim=1).indices)
            inds = (top + search.env_base).reshape(-1)
            rewards, values = rewards[inds], values.reshape(-1)[inds]
            search.keep(t, inds)
            if log is not None:
                log.record(t, top, values, search.candidate_tokens[inds, : self.A], r_t[inds], V_t[inds])
            ## sample the next observation, unless this was the last step
            if t < n_steps - 1:
                beam_logits = search.sample_observation(t)

        ## the best sequence of each env
        best = values.view(n_envs, beam_width).argmax(1) + torch.arange(n_envs, device=self.device) * beam_width
        sequence = search.plan[best].view(n_envs, n_steps, self.T)
        actions = self._decode_actions(sequence[:, :, self.O : self.O + self.A].cpu().numpy())
        seconds = time.perf_counter() - t0  # the plan; the snapshot's copies are the view's cost
        snaps = log.snapshots(self, n_envs, beam_width) if log is not None else None
        return PlanResult(actions, sequence.cpu(), values[best].cpu().numpy(), search.n_tokens, seconds, snaps)


class _TokenSampler:
    """Token draws of one plan: logits / temperature, the original's filters and a draw
    (tt_core/model/sampling.py), and the test hooks (PlanHooks) that may replace them."""

    def __init__(self, temperature: float, generator, hooks: Optional[PlanHooks], n_envs: int) -> None:
        self.temperature, self.generator, self.hooks = temperature, generator, hooks
        self.envs = slice(0, n_envs)

    def __call__(self, kind: str, logits: torch.Tensor, k, cdf, rows_per_env: int):
        """(the logits drawn from, the tokens) for `logits` [rows, V]."""
        if self.temperature != 1.0:  # x / 1.0 == x exactly: skip the op on the per-token path
            logits = logits / self.temperature
        tokens = sample_tokens(logits, k, cdf, self.generator)
        if self.hooks is not None:
            E = self.envs.stop
            replaced = self.hooks.sampled(self.envs, kind, logits.view(E, rows_per_env, -1),
                                          tokens.view(E, rows_per_env))
            tokens = tokens if replaced is None else replaced.reshape(-1).to(tokens)
        return logits, tokens

    def selected(self, step: int, values: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
        """The chosen candidates [E, W] of each env (a hook may choose others)."""
        if self.hooks is None:
            return top
        replaced = self.hooks.selected(self.envs, step, values, top)
        return top if replaced is None else replaced.to(top)


class _CascadeSearch:
    """The buffers and decodes of one BeamPlanner.plan over the cascade cache: level 0
    holds each env's prefix, level 1 each beam's planned tokens, level 2 the candidates'
    current action and reward tokens (the value token is fed after selection)."""

    def __init__(self, planner: "BeamPlanner", prefix: torch.Tensor, sampler: _TokenSampler) -> None:
        p, dev = planner.params, planner.device
        O, A, T = planner.O, planner.A, planner.T
        E, W, X, S = prefix.shape[0], p.beam_width, p.sample_expand, p.beam_steps
        self.planner, self.params, self.sampler = planner, p, sampler
        self.net, self.cache, self.graphs = planner._network(), planner.cache, planner.graphs
        self.cache.reset((E, E * W, E * W * X), (planner.block, planner.block, A + 1))
        self.context, self.beams, self.candidates = (self.cache.level(i) for i in range(3))
        self.graphs.begin_plan(self.net, (E, W, X, planner.dtype))
        self.plan = torch.empty(E * W, S * T, dtype=torch.long, device=dev)  # each beam's tokens
        self._spare = torch.empty_like(self.plan)  # selection copies into it, then swaps
        self.plan[:, :O] = prefix[:, -O:].repeat_interleave(W, 0)
        self.candidate_tokens = torch.empty(E * W * X, A + 2, dtype=torch.long, device=dev)
        self.env_base = (torch.arange(E, device=dev) * (W * X)).unsqueeze(1)  # first candidate row
        self.rows = E * W  # beams, all envs
        self.n_tokens = 0
        # the likelihood objective: each row's summed log-probability of its sampled tokens
        # (beams between steps, candidates within one); None for the reward objective
        self.logp = torch.zeros(E * W, device=dev) if p.objective == "likelihood" else None

    def _count(self, logits: torch.Tensor, tokens: torch.Tensor) -> None:
        """Add the log-probabilities of `tokens` under `logits` (already / temperature,
        before any filter) to the rows' scores (likelihood objective only)."""
        if self.logp is not None:
            self.logp += logits.log_softmax(-1).gather(1, tokens.unsqueeze(1)).squeeze(1)

    def _feed(self, tokens: torch.Tensor, level) -> torch.Tensor:
        """Decode one token per row at `level` (window rule first); fp32 logits [rows, V]."""
        if level.length >= self.planner.block:
            self.net.crop(level, self.planner.context)
        return self.graphs.decode(self.net, tokens, level).float()

    def start(self, prefix: torch.Tensor) -> torch.Tensor:
        """Encode each env's prefix once; the next-token logits of every beam."""
        logits = self.net.decode(prefix, self.context, logits="next").float()
        return logits.repeat_interleave(self.params.beam_width, 0)

    def sample_actions(self, logits: torch.Tensor) -> torch.Tensor:
        """Draw and feed each candidate's A action tokens; the reward token's logits."""
        p, X = self.params, self.params.sample_expand
        self.cache.clear(2)
        if self.logp is not None:  # each candidate starts from its beam's score
            self.logp = self.logp.repeat_interleave(X, 0)
        for j in range(self.planner.A):
            scaled, tokens = self.sampler("act", logits, p.k_act, p.cdf_act, self.params.beam_width * X)
            self._count(scaled, tokens)
            self.candidate_tokens[:, j] = tokens
            logits = self._feed(tokens, self.candidates)
        return logits

    def sample_reward_and_value(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw the reward token (fed) and the value token (fed after selection); the
        expectations E[r_t], E[V_t] under their raw probabilities."""
        A, O, p = self.planner.A, self.planner.O, self.params
        rows = p.beam_width * p.sample_expand
        logits, tokens = self.sampler("reward", logits, p.k_reward, None, rows)
        r_t = self.planner._expect(logits.softmax(-1), O + A)
        self._count(logits, tokens)
        self.candidate_tokens[:, A] = tokens
        logits, tokens = self.sampler("value", self._feed(tokens, self.candidates), p.k_reward, None, rows)
        V_t = self.planner._expect(logits.softmax(-1), O + A + 1)
        self._count(logits, tokens)
        self.candidate_tokens[:, A + 1] = tokens
        self.n_tokens += self.rows * p.sample_expand * (A + 2)
        return r_t, V_t

    def keep(self, t: int, inds: torch.Tensor) -> None:
        """Keep candidates `inds`: their beams' tokens and cache rows, and this step's tokens."""
        O, T = self.planner.O, self.planner.T
        parents = torch.div(inds, self.params.sample_expand, rounding_mode="floor")
        torch.index_select(self.plan, 0, parents, out=self._spare)
        self.plan, self._spare = self._spare, self.plan
        self.plan[:, t * T + O : (t + 1) * T] = self.candidate_tokens[inds]
        self.cache.select(parents, inds)
        if self.logp is not None:
            self.logp = self.logp[inds]

    def sample_observation(self, t: int) -> torch.Tensor:
        """Feed the kept value token, then draw and feed the next observation's O tokens;
        the next step's action logits."""
        O, T, p = self.planner.O, self.planner.T, self.params
        logits = self._feed(self.plan[:, (t + 1) * T - 1], self.beams)  # value: its keys are masked for all
        for j in range(O):
            scaled, tokens = self.sampler("obs", logits, p.k_obs, p.cdf_obs, p.beam_width)
            self._count(scaled, tokens)
            self.plan[:, (t + 1) * T + j] = tokens
            logits = self._feed(tokens, self.beams)
        self.n_tokens += self.rows * O
        return logits
