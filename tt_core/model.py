"""The Trajectory Transformer network (Janner et al., 2021) and its key/value cache.

One readable file in the spirit of nanoGPT. A trajectory is a flat sequence of
tokens; a transition is `[obs (O), action (A), reward, value]`, so T = O + A + 2
tokens, and position p of a sequence (counted from the start of the window) is
dimension p % T. Windows always start at dimension 0.

What differs from a plain GPT, and why:

- Inputs are per-dimension bin ids in [0, N). They are shifted by (p % T) * N so one
  embedding table of T * N (+1 spare, as in the original) rows serves every
  dimension: bin 3 of the reward and bin 3 of obs[0] are different tokens.
- Each transition dimension has its own output head (weight [T, N, E], bias-free,
  like the original EinLinear); position p uses head p % T.
- Attention is causal and additionally hides every value token: key columns at
  positions p with p % T == T - 1 are masked for all queries, the value token's own
  query included. Values are Monte-Carlo returns-to-go, a function of the future;
  hiding them keeps later predictions from conditioning on that leaked future.
  Position 0 is obs[0] and never masked, so no query row is empty.

Inference uses `KVCache`: each token's keys/values are projected once and written
into preallocated per-layer buffers; `TrajectoryGPT.decode` appends tokens and
attends over the buffers with the same mask, so cached decoding equals `forward`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
from torch.nn import functional as F

from tt_core.config import Config


@dataclass
class GPTConfig:
    observation_dim: int
    action_dim: int
    num_bins: int  # N: bins (vocabulary) per transition dimension
    seq_len: int  # context window, in transitions
    embedding_dim: int = 128
    n_layers: int = 4
    n_heads: int = 4
    dropout: float = 0.1

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
        )

    @property
    def transition_dim(self) -> int:
        return self.observation_dim + self.action_dim + 2  # [obs, act, reward, value]

    @property
    def block_size(self) -> int:
        # As in the original TT: a window of seq_len transitions, minus the last
        # token, which is only ever a target.
        return self.seq_len * self.transition_dim - 1


def attention_mask(block_size: int, transition_dim: int) -> torch.Tensor:
    """Boolean [block, block]; True = query (row) may attend to key (column)."""
    mask = torch.ones(block_size, block_size, dtype=torch.bool).tril()
    mask[:, transition_dim - 1 :: transition_dim] = False  # hide every value token
    return mask


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.c_attn = nn.Linear(cfg.embedding_dim, 3 * cfg.embedding_dim)  # fused q, k, v
        self.c_proj = nn.Linear(cfg.embedding_dim, cfg.embedding_dim)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        k_cache: Optional[torch.Tensor] = None,
        v_cache: Optional[torch.Tensor] = None,
        start: int = 0,
    ) -> torch.Tensor:
        """x: [B, n, E] at positions start..start+n-1; mask: [n, start+n] (True = attend).

        With caches ([B, H, block, head_dim] views), the new keys/values are written at
        start..start+n-1 and the queries attend over everything cached so far.
        """
        B, n, E = x.shape
        q, k, v = self.c_attn(x).view(B, n, 3, self.n_heads, E // self.n_heads).permute(2, 0, 3, 1, 4)
        if k_cache is not None:
            k_cache[:, :, start : start + n] = k
            v_cache[:, :, start : start + n] = v
            k, v = k_cache[:, :, : start + n], v_cache[:, :, : start + n]
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        y = y.transpose(1, 2).reshape(B, n, E)
        return self.resid_drop(self.c_proj(y))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.embedding_dim)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.embedding_dim)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.embedding_dim, 4 * cfg.embedding_dim),
            nn.GELU(),
            nn.Linear(4 * cfg.embedding_dim, cfg.embedding_dim),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x, mask, k_cache=None, v_cache=None, start=0):
        x = x + self.attn(self.ln1(x), mask, k_cache, v_cache, start)
        return x + self.mlp(self.ln2(x))


class KVCache:
    """Keys and values of the tokens decoded so far, for every layer, plus their ids.

    `kv` is one preallocated tensor [n_layers, 2, capacity, n_heads, block_size,
    head_dim]; rows [:batch] and positions [:length] are live. `tokens`
    [capacity, block_size] keeps the token ids held, so `TrajectoryGPT.crop` can
    re-prefill without the caller passing the history back. All rows hold the same
    number of tokens. Create with `TrajectoryGPT.new_cache`.
    """

    def __init__(
        self, n_layers, batch, n_heads, block_size, head_dim, device=None, dtype=None, capacity=None
    ):
        capacity = batch if capacity is None else capacity
        if not 0 <= batch <= capacity:
            raise ValueError(f"need 0 <= batch <= capacity, got batch {batch}, capacity {capacity}")
        self.kv = torch.empty(
            n_layers, 2, capacity, n_heads, block_size, head_dim, device=device, dtype=dtype
        )
        self.tokens = torch.zeros(capacity, block_size, dtype=torch.long, device=device)
        self._scratch: Optional[torch.Tensor] = None  # reorder's gather buffer, made on first use
        self.batch = batch
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.kv.shape[2]

    @property
    def block_size(self) -> int:
        return self.kv.shape[4]

    def layer(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Views of layer i's key and value buffers, [batch, n_heads, block_size, head_dim]."""
        return self.kv[i, 0, : self.batch], self.kv[i, 1, : self.batch]

    def token_ids(self) -> torch.Tensor:
        """The token ids held, [batch, length] (a view; clone before keeping it)."""
        return self.tokens[: self.batch, : self.length]

    def reset(self) -> None:
        """Forget every token; the buffers are kept for reuse."""
        self.length = 0

    @torch.inference_mode()
    def reorder(self, index: torch.Tensor) -> None:
        """rows <- rows[index] (beam selection / expansion / envs finishing).

        `index` is a 1-D LongTensor of row ids in [0, batch); its length becomes the
        new batch and may be larger or smaller. Only the live [:length] positions are
        copied. When the new batch fits the capacity, the gather goes through a reused
        scratch buffer: fresh multi-hundred-MB allocations cost far more on CPU (page
        faults) than the copy itself.
        """
        index = index.to(device=self.kv.device, dtype=torch.long)
        if index.dim() != 1:
            raise ValueError(f"reorder index must be 1-D, got shape {tuple(index.shape)}")
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.batch):
            raise IndexError(f"reorder index out of range for batch {self.batch}")
        new_batch, L = index.numel(), self.length
        n_layers, _, _, H, block, hd = self.kv.shape
        tok = self.tokens[: self.batch, :L].index_select(0, index)
        if new_batch > self.capacity:  # grow: new buffers, gather straight into them
            kv = self.kv.new_empty(n_layers, 2, new_batch, H, block, hd)
            kv[:, :, :, :, :L] = self.kv[:, :, : self.batch, :, :L].index_select(2, index)
            self.kv, self._scratch = kv, None
            self.tokens = self.tokens.new_zeros(new_batch, block)
        else:
            if self._scratch is None:
                self._scratch = self.kv.new_empty(self.capacity * H * block * hd)
            out = self._scratch[: new_batch * H * L * hd].view(new_batch, H, L, hd)
            for i in range(n_layers):
                for j in range(2):
                    torch.index_select(self.kv[i, j, : self.batch, :, :L], 0, index, out=out)
                    self.kv[i, j, :new_batch, :, :L] = out
        self.tokens[:new_batch, :L] = tok
        self.batch = new_batch

    @torch.inference_mode()
    def clone(self, capacity: Optional[int] = None) -> "KVCache":
        """An independent copy of the live rows and positions (capacity default: batch)."""
        n_layers, _, _, H, block, hd = self.kv.shape
        new = KVCache(n_layers, self.batch, H, block, hd, self.kv.device, self.kv.dtype, capacity)
        new.kv[:, :, : self.batch, :, : self.length] = self.kv[:, :, : self.batch, :, : self.length]
        new.tokens[: self.batch, : self.length] = self.tokens[: self.batch, : self.length]
        new.length = self.length
        return new


class TrajectoryGPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        T, N, E = cfg.transition_dim, cfg.num_bins, cfg.embedding_dim
        self.tok_emb = nn.Embedding(T * N + 1, E)  # +1 spare row, as in the original TT
        self.pos_emb = nn.Parameter(torch.zeros(cfg.block_size, E))
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(E)
        self.head = nn.Parameter(torch.empty(T, N, E))  # one [N, E] head per dimension

        # Static per-position tables, not saved with the weights (derived from cfg).
        pos = torch.arange(cfg.block_size)
        self.register_buffer("offsets", (pos % T) * N, persistent=False)
        self.register_buffer("mask", attention_mask(cfg.block_size, T), persistent=False)

        self.apply(self._init_weights)
        nn.init.normal_(self.head, mean=0.0, std=0.02)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ training

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx: [B, t] bin ids in [0, N), window starting at dimension 0 -> logits [B, t, N]."""
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
        x = self.tok_emb(idx + self.offsets[start : start + t]) + self.pos_emb[start : start + t]
        return self.drop(x)

    def _logits(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Apply head (p % T) to the hidden state at position p, for p = start..start+t-1."""
        B, t, E = x.shape
        T = self.cfg.transition_dim
        if t == 1:  # the decode hot path: a single head, a single matmul
            return (x[:, 0] @ self.head[start % T].T).unsqueeze(1)
        # Pad to whole transitions so every column of the reshaped view has one head.
        front = start % T
        back = (-(front + t)) % T
        x = F.pad(x, (0, 0, front, back)).view(B, -1, T, E)
        logits = torch.einsum("bkte,tne->bktn", x, self.head)
        return logits.reshape(B, -1, self.cfg.num_bins)[:, front : front + t]

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
    def new_cache(self, batch: int, device=None, dtype=None, capacity: Optional[int] = None) -> KVCache:
        """An empty cache for `batch` rows, buffers preallocated for block_size tokens.

        `capacity` (>= batch, default batch) preallocates rows for later growth, e.g.
        a cache of envs rows that `reorder` will expand to envs * beams.
        """
        ref = self.pos_emb
        cfg = self.cfg
        return KVCache(
            cfg.n_layers,
            batch,
            cfg.n_heads,
            cfg.block_size,
            cfg.embedding_dim // cfg.n_heads,
            device=ref.device if device is None else device,
            dtype=ref.dtype if dtype is None else dtype,
            capacity=capacity,
        )

    @torch.inference_mode()
    def decode(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Append idx [B, n] (n >= 1) at positions cache.length..+n-1; return logits [B, n, N].

        Equals `forward` on the whole sequence held (in eval mode). n > 1 prefills in
        one batched pass. Raises ValueError past block_size: crop first.
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
        cache.tokens[:B, start : start + n] = idx
        x = self._embed(idx, start)
        # Rows are the new queries, columns every key so far. A single new token sees
        # all earlier keys, so only the static value-column mask applies.
        mask = self.mask[start : start + n, : start + n]
        for i, block in enumerate(self.blocks):
            k_cache, v_cache = cache.layer(i)
            x = block(x, mask, k_cache, v_cache, start)
        cache.length = start + n
        return self._logits(self.ln_f(x), start)

    @torch.inference_mode()
    def crop(self, cache: KVCache, transitions: int) -> Optional[torch.Tensor]:
        """Keep only the last `transitions` transitions in the cache.

        Positions are absolute learned embeddings, so cached keys cannot simply be
        shifted: the kept tokens (from `cache.tokens`) are re-prefilled from position 0,
        giving exactly the cache a fresh `decode` of the cropped sequence would build.
        The window is cut at a transition boundary so it starts at dimension 0: with
        `length` = k*T + r tokens held, the first tokens dropped are whole transitions
        and a trailing partial transition counts as one of the kept `transitions`.

        Returns the logits [B, kept, N] of the re-prefilled tokens, or None when the
        cache already fits (nothing dropped, nothing recomputed).
        """
        if transitions < 1:
            raise ValueError(f"crop must keep at least one transition, got {transitions}")
        T = self.cfg.transition_dim
        drop = cache.length - transitions * T
        if drop <= 0:
            return None
        drop = -(-drop // T) * T  # round up to a whole number of transitions
        kept = cache.tokens[: cache.batch, drop : cache.length].clone()
        cache.reset()
        return self.decode(kept, cache)
