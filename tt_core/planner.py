"""Trajectory Transformer beam search, batched over (envs x beams), on a cascade KV cache.

`BeamPlanner.plan` runs the original TT `beam_plan` / `sample_n` (Janner et al., 2021)
for E environments at once. Per env: crop the history to the last `beam_context`
transitions, prefix = history + current observation tokens, start with `beam_width`
identical beams. For each step t: repeat every beam `sample_expand` times, sample A
action tokens (logits / temperature, then the original `filter_cdf` with `cdf_act`,
then top-k with `k_act`, softmax, multinomial), sample the reward and the value token
(top-k `k_reward`, no cdf) and keep their RAW probabilities (softmax of logits /
temperature, before filtering): rewards[:, t] = E[r_t], rewards[:, t+1] = E[V_t] (the
next step overwrites it with its reward); score = sum_i discount^i rewards[:, i]; keep
the top `beam_width` candidates of each env; unless t is the last step, sample O
observation tokens (`k_obs`, `cdf_obs`). The best final beam of each env is the plan.

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
position 0. c = min(beam_context, seq_len - 1), so a crop always frees room; the
history is cut to the last c transitions for the same reason.

Cascade cache (why `BeamPlanner` is fast): all beams of an env share the context
prefix, and the `sample_expand` copies of a beam share everything before the current
step. The cache is three levels: level 0 holds the prefix once per env, level 1 the
tokens of each beam after the prefix, level 2 the current step's action and reward
tokens of each candidate. A query attends to each level it descends from (grouped:
the X candidates of a beam read their beam's keys in one kernel call) and the parts
are merged with their log-sum-exp, which equals one softmax over the whole window.
Beam selection gathers level 1 (the short per-beam suffix) and appends the chosen
candidates' level-2 tokens; the prefix is never copied. `NaivePlanner` is the oracle:
one env at a time, a full forward pass of the window for every token.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Optional, Protocol

import numpy as np
import torch
from torch.nn import functional as F

from tt_core.config import PlanConfig
from tt_core.data.discretizer import Discretizer
from tt_core.events import BeamSnapshot, BeamStep
from tt_core.model import TrajectoryGPT


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
        """kind in act/reward/value/obs; logits [e, R, N] (/ temperature, unfiltered); tokens [e, R]."""

    def selected(self, env: slice, step: int, scores: torch.Tensor, index: torch.Tensor):
        """scores [e, C] of the candidates; index [e, W] the top-k chosen (per env)."""


# ------------------------------------------------------------------ sampling


def filter_cdf(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """The original TT filter_cdf: drop the low-probability tail holding < 1 - threshold mass.

    Sort probabilities ascending; p = the largest sorted probability whose cumulative
    mass is still below 1 - threshold (the smallest one if none is); tokens with
    probability <= p get logit -1000.
    """
    probs = logits.softmax(dim=-1)
    probs_sorted, _ = torch.sort(probs, dim=-1)
    probs_cum = torch.cumsum(probs_sorted, dim=-1)
    below = probs_cum < (1 - threshold)
    bins = torch.arange(logits.shape[-1], device=logits.device)
    idx = torch.argmax(below * bins, dim=-1, keepdim=True)
    p = probs_sorted.gather(-1, idx)
    return logits.masked_fill(probs <= p, -1000.0)


def top_k_logits(logits: torch.Tensor, k: int) -> torch.Tensor:
    v = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).values
    return logits.masked_fill(logits < v[:, -1:], -math.inf)


def sample_tokens(
    logits: torch.Tensor, topk: Optional[int], cdf: Optional[float], generator
) -> torch.Tensor:
    """logits [R, N] (already / temperature) -> token ids [R].

    Same distribution as the original (filter_cdf, top-k, softmax, multinomial), drawn
    by inverse CDF with one uniform per row from `generator` (cheaper than multinomial;
    both planners use it). top-k 1 without a cdf filter is argmax (the original keeps
    exactly tied maxima and draws among them; float logits do not tie in practice).
    With a cdf filter and no top-k, the filter's sort is reused: the kept tokens are
    the top of the ascending sort, drawn with probability p / (kept mass).
    """
    R, N = logits.shape
    if topk is not None and topk <= 1 and cdf is None:
        return logits.argmax(-1)
    if cdf is not None and topk is None:
        probs = logits.softmax(dim=-1)
        ps, si = torch.sort(probs, dim=-1)
        cum = torch.cumsum(ps, dim=-1)
        # filter_cdf's threshold: cum is non-decreasing, so `below` is a prefix and
        # argmax(below * bins) is its last index (0 when it is empty)
        nb = (cum < (1 - cdf)).sum(-1, keepdim=True)
        p = ps.gather(-1, (nb - 1).clamp_(min=0))
        ps = ps.masked_fill_(ps <= p, 0.0)
        cum = torch.cumsum(ps, dim=-1)
        u = torch.rand(R, 1, generator=generator, device=logits.device, dtype=cum.dtype) * cum[:, -1:]
        j = torch.searchsorted(cum, u, right=True).clamp_(max=N - 1)
        return si.gather(-1, j).squeeze(1)
    if cdf is not None:
        logits = filter_cdf(logits, cdf)
    if topk is not None:
        logits = top_k_logits(logits, topk)
    cum = logits.softmax(dim=-1).cumsum_(-1)
    u = torch.rand(R, 1, generator=generator, device=logits.device, dtype=cum.dtype) * cum[:, -1:]
    return torch.searchsorted(cum, u, right=True).clamp_(max=N - 1).squeeze(1)


class _Base:
    def __init__(self, model: TrajectoryGPT, discretizer: Discretizer, params: PlanConfig, device=None):
        self.model = model.eval()
        cfg = model.cfg
        self.O, self.A, self.T, self.N = cfg.observation_dim, cfg.action_dim, cfg.transition_dim, cfg.num_bins
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
    def context(self) -> int:
        return min(self.params.beam_context, self.model.cfg.seq_len - 1)

    def _crop_drop(self, held: int) -> int:
        """Tokens to drop from the front of a full window of `held` tokens."""
        T = self.T
        return -(-(held - self.context * T) // T) * T

    def _prefix(self, history: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        if history.dim() != 3 or history.shape[2] != self.T:
            raise ValueError(f"history must be [E, h, {self.T}], got {tuple(history.shape)}")
        if obs.dim() != 2 or obs.shape[1] != self.O or obs.shape[0] != history.shape[0]:
            raise ValueError(f"obs must be [E, {self.O}], got {tuple(obs.shape)}")
        h = min(history.shape[1], self.context)
        hist = history[:, history.shape[1] - h :].reshape(history.shape[0], h * self.T)
        return torch.cat([hist, obs], dim=1).to(self.device, torch.long)

    def _expect(self, probs: torch.Tensor, dim: int) -> torch.Tensor:
        return self.disc.expectation(probs.unsqueeze(-2), slice(dim, dim + 1)).squeeze(-1)

    def _snapshots(self, E, W, parents, scores, actions, rewards, values) -> list[BeamSnapshot]:
        def host(xs):
            return [x.view(E, W).float().cpu().numpy() for x in xs]

        par = [p.view(E, W).cpu().numpy() for p in parents]
        val, rew, vtg = host(scores), host(rewards), host(values)
        act = [self.disc.decode(a.view(E, W, self.A).cpu().numpy(), slice(self.O, self.O + self.A)) for a in actions]
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
            seq, val, snap, n = self._plan_one(prefix[e : e + 1], p, generator, snapshot, hooks, slice(e, e + 1))
            seqs.append(seq)
            values.append(val)
            tokens += n
            if snapshot:
                snaps.append(snap[0])
        sequence = torch.stack(seqs)
        acts = self.disc.decode(sequence[:, :, self.O : self.O + self.A].cpu().numpy(), slice(self.O, self.O + self.A))
        return PlanResult(acts, sequence, np.array(values), tokens, time.perf_counter() - t0, snaps if snapshot else None)

    def _next_logits(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Crop the window by the window rule if the last token does not fit; logits of its last position."""
        if window.shape[1] > self.block:
            window = window[:, self._crop_drop(window.shape[1] - 1) :]
        return window, self.model(window)[:, -1]

    def _plan_one(self, prefix, p: PlanConfig, gen, snapshot, hooks, env):
        O, A, T = self.O, self.A, self.T
        W, X, S = p.beam_width, p.sample_expand, p.beam_steps
        temp = p.temperature
        window = prefix.repeat(W, 1)  # [W, len]
        plan = prefix[:, -O:].repeat(W, 1)  # the plan's own tokens, from the current obs
        rewards = torch.zeros(W, S + 1, device=self.device)
        discounts = p.discount ** torch.arange(S + 1, device=self.device, dtype=torch.float32)
        n_tokens = 0
        parents, vals, acts, rews, vtgs = [], [], [], [], []

        def sample(kind, window, k, cdf):
            window, logits = self._next_logits(window)
            logits = logits / temp
            tok = sample_tokens(logits, k, cdf, gen)
            if hooks is not None:
                r = hooks.sampled(env, kind, logits.unsqueeze(0), tok.unsqueeze(0))
                tok = tok if r is None else r.reshape(-1).to(tok)
            return window, logits, tok

        for t in range(S):
            window = window.repeat_interleave(X, 0)
            plan = plan.repeat_interleave(X, 0)
            rewards = rewards.repeat_interleave(X, 0)
            for _ in range(A):
                window, _, tok = sample("act", window, p.k_act, p.cdf_act)
                window = torch.cat([window, tok[:, None]], 1)
                plan = torch.cat([plan, tok[:, None]], 1)
            window, logits, tok = sample("reward", window, p.k_reward, None)
            r = self._expect(logits.softmax(-1), O + A)
            window = torch.cat([window, tok[:, None]], 1)
            plan = torch.cat([plan, tok[:, None]], 1)
            window, logits, tok = sample("value", window, p.k_reward, None)
            v = self._expect(logits.softmax(-1), O + A + 1)
            window = torch.cat([window, tok[:, None]], 1)
            plan = torch.cat([plan, tok[:, None]], 1)
            n_tokens += W * X * (A + 2)
            rewards[:, t] = r
            rewards[:, t + 1] = v
            scores = (rewards * discounts).sum(-1)
            idx = torch.topk(scores, W).indices
            if hooks is not None:
                rr = hooks.selected(env, t, scores.unsqueeze(0), idx.unsqueeze(0))
                idx = idx if rr is None else rr.reshape(-1).to(idx)
            window, plan, rewards, value = window[idx], plan[idx], rewards[idx], scores[idx]
            if snapshot:
                parents.append(idx // X if t else torch.zeros_like(idx))
                vals.append(value)
                acts.append(plan[:, -(A + 2) : -2])
                rews.append(rewards[:, t].clone())
                vtgs.append(rewards[:, t + 1].clone())  # holds E[V_t] until the next step
            if t < S - 1:
                for _ in range(O):
                    window, _, tok = sample("obs", window, p.k_obs, p.cdf_obs)
                    window = torch.cat([window, tok[:, None]], 1)
                    plan = torch.cat([plan, tok[:, None]], 1)
                n_tokens += W * O
        best = int(torch.argmax(value))
        snap = self._snapshots(1, W, parents, vals, acts, rews, vtgs) if snapshot else None
        return plan[best].view(S, T), float(value[best]), snap, n_tokens


# ------------------------------------------------------------------ cascade cache


class _Level:
    """One level of the cascade cache: keys/values [n_layers, 2, rows, H, S, hd] + ids."""

    def __init__(self, n_layers, rows, H, S, hd, device, dtype):
        self.kv = torch.empty(n_layers, 2, rows, H, S, hd, device=device, dtype=dtype)
        self.tok = torch.zeros(rows, S, dtype=torch.long, device=device)
        self.rows = 0
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.kv.shape[2]


class BeamPlanner(_Base):
    """Batched TT beam search on a three-level cascade KV cache (see the module doc).

    `dtype` (default: the model's) is the compute dtype of the network and the KV
    cache: torch.bfloat16 runs the weights (a private copy, the model is untouched)
    and the cache in bf16 (AMX / tensor cores) while logits, probabilities, the
    log-sum-exp merge and the scores stay fp32. bf16 plans are not token-for-token
    equal to fp32 ones; fp32 is exact up to float reassociation (tests compare it
    with `NaivePlanner`).
    """

    def __init__(self, model, discretizer, params, device=None, dtype: Optional[torch.dtype] = None):
        super().__init__(model, discretizer, params, device)
        self.model.to(self.device)
        cfg = model.cfg
        self.H, self.hd = cfg.n_heads, cfg.embedding_dim // cfg.n_heads
        self.scale = 1.0 / math.sqrt(self.hd)
        self.dtype = model.pos_emb.dtype if dtype is None else dtype
        bias = torch.zeros(self.block, self.block, device=self.device, dtype=self.dtype)
        self.bias = bias.masked_fill(~model.mask.to(self.device), -math.inf)
        self._dead = torch.isinf(self.bias)  # [block, block]: key hidden from query
        self._flash = self.device.type == "cpu" and hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu")
        self.levels: list[Optional[_Level]] = [None, None, None]
        self._spare: Optional[_Level] = None  # level 1's ping-pong partner for beam selection
        self._wkey = None
        self._w = None

    # ---- weights in the compute dtype, and the folded embedding table

    def _weights(self):
        """Per-plan check that the cached weights still match the model (in-place
        optimizer steps bump tensor versions); rebuilt only when they changed."""
        m = self.model
        params = list(m.parameters())
        key = tuple((q.data_ptr(), q._version) for q in params)
        if key != self._wkey:
            dt = self.dtype
            c = lambda t: t.detach().to(self.device, dt)
            N = self.N
            pos = torch.arange(self.block, device=self.device)
            # emb[p, tok] = tok_emb[tok + offset(p)] + pos_emb[p]: one lookup per token
            rows = m.offsets.to(self.device)[:, None] + torch.arange(N, device=self.device)
            emb = (m.tok_emb.weight.detach()[rows] + m.pos_emb.detach()[pos, None]).to(dt)
            blocks = []
            for blk in m.blocks:
                fc, proj = blk.mlp[0], blk.mlp[2]
                blocks.append((c(blk.ln1.weight), c(blk.ln1.bias), blk.ln1.eps,
                               c(blk.attn.c_attn.weight), c(blk.attn.c_attn.bias),
                               c(blk.attn.c_proj.weight), c(blk.attn.c_proj.bias),
                               c(blk.ln2.weight), c(blk.ln2.bias), blk.ln2.eps,
                               c(fc.weight), c(fc.bias), c(proj.weight), c(proj.bias)))
            head_t = m.head.detach().to(self.device, dt).transpose(1, 2).contiguous()  # [T, E, N]
            self._w = (emb.reshape(self.block * N, -1), blocks,
                       (c(m.ln_f.weight), c(m.ln_f.bias), m.ln_f.eps), head_t)
            self._wkey = key
        return self._w

    # ---- cache management

    def _level(self, i: int, rows: int, S: int, spare: bool = False) -> _Level:
        lev = self._spare if spare else self.levels[i]
        if lev is None or lev.capacity < rows or lev.kv.shape[4] < S or lev.kv.dtype != self.dtype:
            cfg = self.model.cfg
            lev = _Level(cfg.n_layers, rows, self.H, S, self.hd, self.device, self.dtype)
        lev.rows, lev.length = rows, 0
        return lev

    # ---- the network, on the cascade

    def _feed(self, idx: torch.Tensor, lvl: int, want_logits: bool = True) -> Optional[torch.Tensor]:
        """Append idx [B, n] to level `lvl` (B = its rows); logits [B, N] (fp32) of the last token."""
        emb, blocks, lnf, head_t = self._w
        levels = self.levels[: lvl + 1]
        own = levels[lvl]
        B, n = idx.shape
        pos0 = sum(lv.length for lv in levels)
        L0 = own.length
        own.tok[:B, L0 : L0 + n] = idx
        if n == 1:
            x = emb.index_select(0, idx.view(-1) + pos0 * self.N).view(B, 1, -1)
        else:
            rows = idx + torch.arange(pos0 * self.N, (pos0 + n) * self.N, self.N, device=idx.device)
            x = emb.index_select(0, rows.view(-1)).view(B, n, -1)
        H, hd = self.H, self.hd
        E = x.shape[-1]
        parts = self._parts(levels, B, pos0, n)
        for i, (w1, b1, e1, wa, ba, wp, bp, w2, b2, e2, wf, bf, wm, bm) in enumerate(blocks):
            h = F.layer_norm(x, (E,), w1, b1, e1)
            qkv = F.linear(h, wa, ba).view(B, n, 3, H, hd)
            own.kv[i, :, :B, :, L0 : L0 + n] = qkv[:, :, 1:].permute(2, 0, 3, 1, 4)
            y = self._attend(qkv[:, :, 0], i, parts, B, n)
            x = x + F.linear(y, wp, bp)
            h = F.layer_norm(x, (E,), w2, b2, e2)
            x = x + F.linear(F.gelu(F.linear(h, wf, bf)), wm, bm)
        own.length = L0 + n
        if not want_logits:
            return None
        xl = F.layer_norm(x[:, -1], (E,), *lnf)
        return torch.mm(xl, head_t[(pos0 + n - 1) % self.T]).float()

    def _parts(self, levels, B, pos0, n):
        """Per feed (shared by the layers): for each non-empty level its rows, key
        count, query group, bias and the query rows that see none of its keys."""
        parts = []
        a = 0  # absolute position of the level's first key
        last = len(levels) - 1
        for j, lev in enumerate(levels):
            Lk = lev.length + (n if j == last else 0)
            if Lk == 0:
                continue
            g = B // lev.rows
            dead = self._dead[pos0 : pos0 + n, a : a + Lk].all(-1)
            if bool(dead.all()):
                a += lev.length
                continue  # every key of this level is hidden (e.g. a lone value token)
            dead = dead if bool(dead.any()) else None
            bias = self.bias[pos0 : pos0 + n, a : a + Lk]
            if n == 1:
                bias = bias.view(1, 1, 1, Lk)
            elif g > 1:
                bias = bias.repeat(g, 1)
            parts.append((lev, Lk, g, bias, dead))
            a += lev.length
        return parts

    def _attend(self, q, layer, parts, B, n):
        """Attention of q [B, n, H, hd] over the parts; merged by their log-sum-exp."""
        H, hd = self.H, self.hd
        outs, lses = [], []
        for lev, Lk, g, bias, dead in parts:
            qp = q.reshape(lev.rows, g * n, H, hd).transpose(1, 2)
            K = lev.kv[layer, 0, : lev.rows, :, :Lk]
            V = lev.kv[layer, 1, : lev.rows, :, :Lk]
            if self._flash:
                o, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                    qp, K, V, 0.0, False, attn_mask=bias, scale=self.scale
                )[:2]
            else:
                s = ((qp @ K.transpose(-1, -2)) * self.scale + bias).float()
                lse = torch.logsumexp(s, -1)
                o = (torch.softmax(s, -1).to(V.dtype) @ V)
            if len(parts) == 1:
                return o.transpose(1, 2).reshape(B, n, H * hd)
            o = o.transpose(1, 2).reshape(B, n, H, hd)
            lse = lse.transpose(1, 2).reshape(B, n, H).float()
            if dead is not None:
                lse = lse.masked_fill(dead.view(1, n, 1), -math.inf)
                o = o.masked_fill(dead.view(1, n, 1, 1), 0.0)
            outs.append(o)
            lses.append(lse)
        w = torch.softmax(torch.stack(lses), 0).unsqueeze(-1)  # [P, B, n, H, 1]
        y = (torch.stack(outs) * w).sum(0) if outs[0].dtype == torch.float32 else (torch.stack(outs).float() * w).sum(0).to(outs[0].dtype)
        return y.reshape(B, n, H * hd)

    def _room(self, lvl: int) -> None:
        """Apply the window rule before feeding one token at level `lvl`."""
        levels = self.levels[: lvl + 1]
        held = sum(lv.length for lv in levels)
        if held < self.block:
            return
        drop = self._crop_drop(held)
        kept = []
        for lv in levels:  # each level's kept tokens, in window order
            cut = min(drop, lv.length)
            kept.append(lv.tok[: lv.rows, cut : lv.length].clone())
            drop -= cut
        for lv in levels:
            lv.length = 0
        for j, tok in enumerate(kept):
            if tok.shape[1]:
                self._feed(tok, j, want_logits=False)

    # ---- the search

    @torch.inference_mode()
    def plan(self, history, obs, generator=None, snapshot=False, hooks: Optional[PlanHooks] = None) -> PlanResult:
        t0 = time.perf_counter()
        p = self.params
        O, A, T, N = self.O, self.A, self.T, self.N
        W, X, S = p.beam_width, p.sample_expand, p.beam_steps
        temp = p.temperature
        prefix = self._prefix(history, obs)
        E = prefix.shape[0]
        envs = slice(0, E)
        dev = self.device

        self._weights()
        self.levels[0] = self._level(0, E, self.block)
        self.levels[1] = self._level(1, E * W, self.block)
        self._spare = self._level(1, E * W, self.block, spare=True)
        self.levels[2] = self._level(2, E * W * X, A + 1)
        lv1 = self.levels[1]
        lv1.rows = E * W
        logits = self._feed(prefix, 0)  # [E, N]: the first action's logits
        beam_logits = logits.repeat_interleave(W, 0)

        plan = torch.empty(E * W, S * T, dtype=torch.long, device=dev)
        plan_spare = torch.empty_like(plan)
        plan[:, :O] = prefix[:, -O:].repeat_interleave(W, 0)
        cand_tok = torch.empty(E * W * X, A + 2, dtype=torch.long, device=dev)
        rewards = torch.zeros(E * W, S + 1, device=dev)
        discounts = p.discount ** torch.arange(S + 1, device=dev, dtype=torch.float32)
        env_base = (torch.arange(E, device=dev) * (W * X)).unsqueeze(1)
        n_tokens = 0
        parents, vals, acts, rews, vtgs = [], [], [], [], []

        def sample(kind, logits, k, cdf, rows_per_env):
            logits = logits / temp
            tok = sample_tokens(logits, k, cdf, generator)
            if hooks is not None:
                r = hooks.sampled(envs, kind, logits.view(E, rows_per_env, N), tok.view(E, rows_per_env))
                tok = tok if r is None else r.reshape(-1).to(tok)
            return logits, tok

        for t in range(S):
            lv2 = self.levels[2]
            lv2.rows, lv2.length = E * W * X, 0
            logits = beam_logits.repeat_interleave(X, 0)
            for j in range(A):
                _, tok = sample("act", logits, p.k_act, p.cdf_act, W * X)
                cand_tok[:, j] = tok
                self._room(2)
                logits = self._feed(tok[:, None], 2)
            logits, tok = sample("reward", logits, p.k_reward, None, W * X)
            r = self._expect(logits.softmax(-1), O + A)
            cand_tok[:, A] = tok
            self._room(2)
            logits = self._feed(tok[:, None], 2)
            logits, tok = sample("value", logits, p.k_reward, None, W * X)
            v = self._expect(logits.softmax(-1), O + A + 1)
            cand_tok[:, A + 1] = tok
            n_tokens += E * W * X * (A + 2)

            cand_rewards = rewards.repeat_interleave(X, 0)
            cand_rewards[:, t] = r
            cand_rewards[:, t + 1] = v
            scores = (cand_rewards * discounts).view(E, W * X, S + 1).sum(-1)
            top = torch.topk(scores, W, dim=1).indices  # [E, W]
            if hooks is not None:
                rr = hooks.selected(envs, t, scores, top)
                top = top if rr is None else rr.to(top)
            cand = (top + env_base).reshape(-1)
            parent = torch.div(cand, X, rounding_mode="floor")
            rewards = cand_rewards[cand]
            value = scores.reshape(-1)[cand]
            torch.index_select(plan, 0, parent, out=plan_spare)
            plan, plan_spare = plan_spare, plan
            plan[:, t * T + O : (t + 1) * T] = cand_tok[cand]
            self._select(parent, cand)
            if snapshot:
                parents.append(top // X if t else torch.zeros_like(top))  # step 0: one root
                vals.append(value)
                acts.append(cand_tok[cand, :A])
                rews.append(r[cand])
                vtgs.append(v[cand])
            if t < S - 1:
                # value token: fed for the next obs' logits (its keys are masked for all)
                self._room(1)
                logits = self._feed(plan[:, (t + 1) * T - 1 : (t + 1) * T], 1)
                for j in range(O):
                    _, tok = sample("obs", logits, p.k_obs, p.cdf_obs, W)
                    plan[:, (t + 1) * T + j] = tok
                    self._room(1)
                    logits = self._feed(tok[:, None], 1)
                beam_logits = logits
                n_tokens += E * W * O

        best = value.view(E, W).argmax(1) + torch.arange(E, device=dev) * W
        sequence = plan[best].view(E, S, T)
        actions = self.disc.decode(sequence[:, :, O : O + A].cpu().numpy(), slice(O, O + A))
        snaps = self._snapshots(E, W, parents, vals, acts, rews, vtgs) if snapshot else None
        return PlanResult(actions, sequence.cpu(), value[best].cpu().numpy(), n_tokens, time.perf_counter() - t0, snaps)

    def _select(self, parent: torch.Tensor, cand: torch.Tensor) -> None:
        """Level 1 <- level 1[parent] ++ level 2[cand] (the chosen candidates' step tokens)."""
        src, dst, lv2 = self.levels[1], self._spare, self.levels[2]
        L, n = src.length, lv2.length
        rows = parent.numel()
        if L + n > dst.kv.shape[4] or rows > dst.capacity:
            dst = _Level(src.kv.shape[0], rows, self.H, max(src.kv.shape[4], L + n), self.hd, self.device, self.dtype)
        if L:
            for i in range(src.kv.shape[0]):
                for j in range(2):
                    torch.index_select(src.kv[i, j, : src.rows, :, :L], 0, parent, out=dst.kv[i, j, :rows, :, :L])
            torch.index_select(src.tok[: src.rows, :L], 0, parent, out=dst.tok[:rows, :L])
        if n:
            for i in range(src.kv.shape[0]):
                for j in range(2):
                    torch.index_select(lv2.kv[i, j, : lv2.rows, :, :n], 0, cand, out=dst.kv[i, j, :rows, :, L : L + n])
            torch.index_select(lv2.tok[: lv2.rows, :n], 0, cand, out=dst.tok[:rows, L : L + n])
        dst.rows, dst.length = rows, L + n
        lv2.length = 0
        self.levels[1], self._spare = dst, src
