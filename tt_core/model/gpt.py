"""The Trajectory Transformer network (Janner et al., 2021) and its key/value cache.

One readable file in the spirit of nanoGPT. A trajectory is a flat sequence of
tokens; a transition is `[obs (O), action (A), reward, value]`, so T = O + A + 2
tokens, and position p of a sequence (counted from the start of the window) is
dimension p % T. Windows always start at dimension 0.

What differs from a plain GPT, and why:

- Inputs are per-dimension bin ids in [0, N). They are shifted by (p % T) * N so one
  embedding table of T * N + 1 rows serves every dimension: bin 3 of the reward and
  bin 3 of obs[0] are different tokens. Id N in any dimension is the stop token, which
  follows an episode's end; it takes the last row, T * N, as in the original.
- Each transition dimension has its own output head (weight [T, V, E], bias-free,
  like the original EinLinear, initialized like it); position p uses head p % T. With
  the stop token (the original's, `stop_token`) V = N + 1: every dimension can predict
  an end. Models without it (runs made before it, FTT imports) have V = N.
- Attention is causal and additionally hides every value token: key columns at
  positions p with p % T == T - 1 are masked for all queries, the value token's own
  query included. Values are Monte-Carlo returns-to-go, a function of the future;
  hiding them keeps later predictions from conditioning on that leaked future.
  Position 0 is obs[0] and never masked, so no query row is empty.
- Dropout modules are called only in training: a planner decodes one token at a time
  for a few dozen rows, where every Python-level call is a measurable share of a step.

Inference: `TrajectoryGPT.decode` appends tokens to a key/value cache (tt_core/model/cache.py)
through the same blocks `forward` runs: each attention layer projects the new tokens
once and asks the cache to store their keys/values and attend under the model's mask.
This is the only inference path; the planner's cascade cache is one of the caches, so a
block variant (e.g. an FTT checkpoint's norm-residual block, tt_core/pretrained/ftt/weights.py) is
planned with exactly the code it is evaluated with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn as nn
from torch.nn import functional as F

from tt_core.model.attention import Dropout, causal_attention
from tt_core.model.cache import AttentionMapsCache, FlatCache
from tt_core.config import Config


@dataclass
class GPTConfig:
    observation_dim: int
    action_dim: int
    num_bins: int  # N: bins per transition dimension
    seq_len: int  # context window, in transitions
    embedding_dim: int = 128
    n_layers: int = 4
    n_heads: int = 4
    dropout: float = 0.1
    stop_token: bool = True  # one more output per dimension: id N, "the episode has ended"
    init: str = "ftt"  # initial weights: "original" (the original TT's GPT) or "ftt" (the seed's)

    def __post_init__(self) -> None:
        if self.embedding_dim % self.n_heads != 0:
            raise ValueError(
                f"embedding_dim ({self.embedding_dim}) must be divisible by n_heads ({self.n_heads})"
            )
        for name in ("observation_dim", "action_dim", "num_bins", "seq_len", "n_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_config(cls, cfg: Config, observation_dim: int, action_dim: int) -> "GPTConfig":
        """The network a run config describes, for data of the given dimensions."""
        m = cfg.model
        return cls(
            observation_dim=observation_dim,
            action_dim=action_dim,
            num_bins=cfg.dataset.num_bins,
            seq_len=cfg.dataset.seq_len,
            embedding_dim=m.embedding_dim,
            n_layers=m.n_layers,
            n_heads=m.n_heads,
            dropout=m.dropout,
            stop_token=m.stop_token,
            init=m.init,
        )

    @property
    def transition_dim(self) -> int:
        return self.observation_dim + self.action_dim + 2  # [obs, act, reward, value]

    @property
    def vocab_size(self) -> int:
        """Outputs per dimension: the N bins, and the stop token if the model has one."""
        return self.num_bins + int(self.stop_token)

    @property
    def num_parameters(self) -> int:
        """Parameters of TrajectoryGPT(self), from the dimensions alone (nothing allocated)."""
        T, N, E = self.transition_dim, self.num_bins, self.embedding_dim
        per_block = 12 * E * E + 13 * E  # 2 LayerNorms, fused qkv, out proj, 4x MLP
        head = T * self.vocab_size * E
        return (T * N + 1) * E + self.block_size * E + self.n_layers * per_block + 2 * E + head

    @property
    def block_size(self) -> int:
        # As in the original TT: a window of seq_len transitions, minus the last
        # token, which is only ever a target.
        return self.seq_len * self.transition_dim - 1

    def token_flops(self, keys: float) -> float:
        """Floating-point operations of one token row's forward pass when it attends to
        `keys` keys (itself included): per block the fused q/k/v, output and 4x MLP
        projections (2 x 12 E^2 multiply-adds) and attention's scores and weighted sum
        (2 x 2 keys E), then its dimension's head (2 E vocab). Embeddings, norms and
        softmaxes are left out (a few percent). A training token costs about 3x this
        (backward: twice the forward's matrix products)."""
        E = self.embedding_dim
        return self.n_layers * (24 * E * E + 4 * keys * E) + 2 * E * self.vocab_size


def crop_drop(held: int, transitions: int, transition_dim: int) -> int:
    """Tokens to drop from the front of `held` tokens to keep the last `transitions`
    transitions, in whole transitions (a trailing partial one counts as kept); <= 0 when
    they already fit."""
    drop = held - transitions * transition_dim
    return -(-drop // transition_dim) * transition_dim if drop > 0 else drop


def attention_mask(block_size: int, transition_dim: int) -> torch.Tensor:
    """Boolean [block, block]; True = query (row) may attend to key (column)."""
    mask = torch.ones(block_size, block_size, dtype=torch.bool).tril()
    mask[:, transition_dim - 1 :: transition_dim] = False  # hide every value token
    return mask


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.layer = layer  # which of a cache's layers this attention reads and writes
        self.c_attn = nn.Linear(cfg.embedding_dim, 3 * cfg.embedding_dim)  # fused q, k, v
        self.c_proj = nn.Linear(cfg.embedding_dim, cfg.embedding_dim)
        self.dropout = cfg.dropout
        self.resid_drop = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor], cache=None) -> torch.Tensor:
        """x: [B, n, E]. Without a cache: the whole window, mask [n, n] (True = attend).
        With one (decode): x holds the new tokens and the cache stores their keys and
        values and attends over everything they may see (see tt_core/model/cache.py)."""
        B, n, E = x.shape
        qkv = self.c_attn(x).view(B, n, 3, self.n_heads, E // self.n_heads)
        if cache is not None:
            y = self.c_proj(cache.attend(self.layer, qkv))
        else:
            q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
            y = causal_attention(q, k, v, mask, self.dropout, self.training)
            y = self.c_proj(y.transpose(1, 2).reshape(B, n, E))
        return self.resid_drop(y) if self.training else y


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.embedding_dim)
        self.attn = CausalSelfAttention(cfg, layer)
        self.ln2 = nn.LayerNorm(cfg.embedding_dim)
        # mlp.0 / mlp.2 hold the weights (the names checkpoints use)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.embedding_dim, 4 * cfg.embedding_dim),
            nn.GELU(),
            nn.Linear(4 * cfg.embedding_dim, cfg.embedding_dim),
        )
        self.mlp_drop = Dropout(cfg.dropout)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        fc, act, proj = self.mlp
        y = proj(act(fc(x)))
        return self.mlp_drop(y) if self.training else y

    def forward(self, x, mask, cache=None):
        x = x + self.attn(self.ln1(x), mask, cache)
        return x + self.feed_forward(self.ln2(x))


class TrajectoryGPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        T, N, E = cfg.transition_dim, cfg.num_bins, cfg.embedding_dim
        self.tok_emb = nn.Embedding(T * N + 1, E)  # the last row: the stop token's
        self.pos_emb = nn.Parameter(torch.zeros(cfg.block_size, E))  # zeros: the original's init
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(E)
        self.head = nn.Parameter(torch.empty(T, cfg.vocab_size, E))  # one [V, E] head per dimension

        # Static per-position tables, not saved with the weights (derived from cfg).
        pos = torch.arange(cfg.block_size)
        self.register_buffer("offsets", (pos % T) * N, persistent=False)
        self.register_buffer("mask", attention_mask(cfg.block_size, T), persistent=False)

        self.apply(self._init_weights)
        # Both sources' EinLinear: kaiming_uniform_(a=sqrt(5)) per dimension, i.e.
        # U(-1/sqrt(E), 1/sqrt(E)) (their GPT init leaves EinLinear alone).
        nn.init.uniform_(self.head, -E**-0.5, E**-0.5)
        if cfg.init == "ftt":
            # The seed's nn.MultiheadAttention keeps its own xavier-uniform in-projection
            # (its GPT init touches only Linear, Embedding and LayerNorm), and it draws
            # positions N(0, 0.02). In short runs this learns the dynamics faster than
            # the original's N(0, 0.02) projections and zero positions (README).
            for block in self.blocks:
                nn.init.xavier_uniform_(block.attn.c_attn.weight)
            nn.init.normal_(self.pos_emb, mean=0.0, std=0.02)
        elif cfg.init != "original":
            raise ValueError(f"unknown init {cfg.init!r} (original or ftt)")

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """nanoGPT's / the original's: N(0, 0.02) weights, zero biases, unit LayerNorms."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ training

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx: [B, t] bin ids in [0, N) (or N, the stop token, if the model has it),
        window starting at dimension 0 -> logits [B, t, V]."""
        t = idx.shape[1]
        if t > self.cfg.block_size:
            raise ValueError(f"sequence of {t} tokens exceeds block_size {self.cfg.block_size}")
        x = self._embed(idx, 0)
        mask = self.mask[:t, :t]
        for block in self.blocks:
            x = block(x, mask)
        return self._logits(self.ln_f(x), 0)

    def _embed(self, idx: torch.Tensor, start: int) -> torch.Tensor:
        t = idx.shape[1]
        ids = idx + self.offsets[start : start + t]
        if self.cfg.stop_token:  # the stop token is one row for every dimension
            T, N = self.cfg.transition_dim, self.cfg.num_bins
            ids = torch.where(idx == N, T * N, ids)
        x = self.tok_emb(ids) + self.pos_emb[start : start + t]
        return self.drop(x) if self.training else x

    def _logits(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Apply head (p % T) to the hidden state at position p, for p = start..start+t-1."""
        B, t, E = x.shape
        T = self.cfg.transition_dim
        if t == 1:  # a single head, a single matmul
            return (x[:, 0] @ self.head[start % T].T).unsqueeze(1)
        # Pad to whole transitions so every column of the reshaped view has one head.
        front = start % T
        back = (-(front + t)) % T
        x = F.pad(x, (0, 0, front, back)).view(B, -1, T, E)
        logits = torch.einsum("bkte,tne->bktn", x, self.head)
        return logits.reshape(B, -1, self.cfg.vocab_size)[:, front : front + t]

    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: decay Linear weights and the output heads; not biases,
        LayerNorms, the token embedding or the positions."""
        decay = {id(self.head)}
        for module in self.modules():
            if isinstance(module, nn.Linear):
                decay.add(id(module.weight))
        params = list(self.parameters())
        return [
            {"params": [p for p in params if id(p) in decay], "weight_decay": weight_decay},
            {"params": [p for p in params if id(p) not in decay], "weight_decay": 0.0},
        ]

    # ----------------------------------------------------------------- inference

    @torch.inference_mode()
    def new_cache(self, batch: int, device=None, dtype=None) -> FlatCache:
        """An empty flat cache for `batch` rows, buffers preallocated for block_size tokens."""
        ref = self.pos_emb
        cfg = self.cfg
        return FlatCache(
            cfg.n_layers,
            batch,
            cfg.n_heads,
            cfg.block_size,
            cfg.embedding_dim // cfg.n_heads,
            device=ref.device if device is None else device,
            dtype=ref.dtype if dtype is None else dtype,
        )

    @torch.inference_mode()
    def attention_maps(self, idx: torch.Tensor) -> torch.Tensor:
        """The attention weights of a window, idx [B, t] (starting at dimension 0), in
        every layer and head: [B, n_layers, n_heads, t, t] (fp32), row = query, column =
        key; rows sum to 1 and are 0 where the model's mask hides a key. From one
        `decode` of the window, the model's own inference path, into a cache that keeps
        the weights (tt_core/model/cache.py, AttentionMapsCache)."""
        cfg = self.cfg
        cache = AttentionMapsCache(cfg.n_layers, idx.shape[0], cfg.n_heads, cfg.block_size,
                                   cfg.embedding_dim // cfg.n_heads, device=self.pos_emb.device, dtype=self.pos_emb.dtype)
        self.decode(idx, cache, logits="none")
        return torch.stack(cache.maps, 1)

    @torch.inference_mode()
    def decode(
        self, idx: torch.Tensor, cache, logits: Literal["all", "next", "none"] = "all"
    ) -> Optional[torch.Tensor]:
        """Append idx [B, n] (n >= 1) at positions cache.length..+n-1 through the blocks.

        Returns the logits [B, n, V] of the new tokens ("all"), only those of the last
        one, i.e. the next token's distribution ([B, V], "next"), or nothing ("none",
        e.g. re-encoding after a crop). Equals
        `forward` on the whole sequence the cache holds (in eval mode), for any cache of
        tt_core/model/cache.py. n > 1 prefills in one batched pass. Raises ValueError past
        block_size: crop first.
        """
        B, n = idx.shape
        start = cache.length
        if B != cache.batch:
            raise ValueError(f"decode got {B} rows for a cache of {cache.batch}")
        if n < 1:
            raise ValueError("decode needs at least one token")
        if start + n > self.cfg.block_size:
            raise ValueError(
                f"decoding {n} token(s) after {start} exceeds block_size "
                f"{self.cfg.block_size}; crop the cache first"
            )
        cache.begin(idx, self.mask)
        x = self._embed(idx, start)
        for block in self.blocks:
            x = block(x, None, cache)
        cache.end()
        if logits == "none":
            return None
        if logits == "next":
            return self.ln_f(x[:, -1]) @ self.head[(start + n - 1) % self.cfg.transition_dim].T
        return self._logits(self.ln_f(x), start)

    @torch.inference_mode()
    def crop(self, cache, transitions: int) -> bool:
        """Keep only the last `transitions` transitions in the cache; True if it cut.

        Positions are absolute learned embeddings, so cached keys cannot simply be
        shifted: the kept tokens are re-encoded from position 0 (through `decode`, level
        by level for a cascade), giving exactly the cache a fresh decode of the cropped
        sequence would build. The window is cut at a transition boundary so it starts at
        dimension 0: with `length` = k*T + r tokens held, the first tokens dropped are
        whole transitions and a trailing partial transition counts as one of the kept
        `transitions`.
        """
        if transitions < 1:
            raise ValueError(f"crop must keep at least one transition, got {transitions}")
        drop = crop_drop(cache.length, transitions, self.cfg.transition_dim)
        if drop <= 0:
            return False
        for part, kept in cache.cut(drop):
            if kept.shape[1]:
                self.decode(kept, part, logits="none")
        return True
