"""Key/value caches for `TrajectoryGPT.decode`: where a layer's keys live and how it attends.

The network (tt_core/model/gpt.py) projects each new token's query, key and value and hands
them to the cache: `cache.attend(layer, qkv)` stores the keys and values and returns the
attention of q over every key the new tokens can see, under the model's own mask. Only
the cache knows its layout, so one network code path (any block class) serves both:

- `FlatCache`: one independent sequence per row, preallocated for a whole window.
- `CascadeCache`: batched beam search, where rows share their past. Level 0 holds the
  context once per env, level 1 each beam's tokens after it, level 2 the current step's
  tokens of each candidate (the `sample_expand` copies of a beam). `cascade.level(j)` is
  the cache a decode at level j uses: its rows attend to level j and to the one row of
  every level above that they descend from (candidates of a parent are adjacent rows),
  and the parts are merged by their log-sum-exp, which equals one softmax over the whole
  window. Beam selection copies level 1 and the chosen candidates' level-2 tokens;
  level 0 is never copied. (After a crop re-encodes the window, the kept transitions
  that belong to each beam live in level 1, so selection then copies them too.)

What `decode` asks of a cache (both layouts and every level view):

    batch, length          rows decoded; tokens each of them already sees
    begin(idx, mask)       the new ids [batch, n] and the model's boolean mask
    attend(layer, qkv)     qkv [batch, n, 3, heads, head_dim] (the fused projection of the
                           new tokens) -> attention output [batch, n, heads * head_dim]
    end()                  the n new tokens are now held
    cut(drop)              forget the first `drop` tokens; [(cache, kept ids)] to re-encode
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch.nn import functional as F

from tt_core.model.cache_size import kv_dtype

_DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16"}  # plan.dtype's names


class FlatCache:
    """Keys and values of the tokens decoded so far, for every layer, plus their ids.

    One independent sequence per row (e.g. a batch of windows decoded token by token).
    `kv` is one preallocated tensor [n_layers, 2, batch, n_heads, block_size, head_dim];
    positions [:length] are live. `tokens` [batch, block_size] keeps the ids held, so
    `TrajectoryGPT.crop` can re-encode without the caller passing the history back. All
    rows hold the same number of tokens. Create with `TrajectoryGPT.new_cache`.
    """

    def __init__(self, n_layers, batch, n_heads, block_size, head_dim, device=None, dtype=None):
        if batch < 0:
            raise ValueError(f"need batch >= 0, got {batch}")
        self.kv = torch.empty(n_layers, 2, batch, n_heads, block_size, head_dim, device=device, dtype=dtype)
        self.tokens = torch.zeros(batch, block_size, dtype=torch.long, device=device)
        self._new = 0  # tokens of the decode in progress
        self._mask: Optional[torch.Tensor] = None
        self.batch = batch
        self.length = 0

    @property
    def nbytes(self) -> int:
        """Bytes of the key/value buffers (the token ids beside them add < 1 %)."""
        return self.kv.nbytes

    def token_ids(self) -> torch.Tensor:
        """The token ids held, [batch, length] (a view; clone before keeping it)."""
        return self.tokens[: self.batch, : self.length]

    # ---- the decode interface

    def begin(self, idx: torch.Tensor, mask: torch.Tensor) -> None:
        s, n = self.length, idx.shape[1]
        self.tokens[: self.batch, s : s + n] = idx
        self._new = n
        # The new queries see every key so far: only the static value-column mask applies.
        self._mask = mask[s : s + n, : s + n]

    def attend(self, layer: int, qkv: torch.Tensor) -> torch.Tensor:
        q, K, V = self._store(layer, qkv)
        y = F.scaled_dot_product_attention(q, K, V, attn_mask=self._mask)
        return y.transpose(1, 2).reshape(self.batch, self._new, -1)

    def _store(self, layer: int, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Hold the new tokens' keys and values; (their queries [B, H, n, hd], every key
        and value they see [B, H, length + n, hd])."""
        B, s, n = self.batch, self.length, self._new
        kv = self.kv[layer, :, :B, :, : s + n]  # [2, B, H, s + n, hd]
        kv[:, :, :, s:] = qkv[:, :, 1:].permute(2, 0, 3, 1, 4)
        return qkv[:, :, 0].transpose(1, 2), kv[0], kv[1]

    def end(self) -> None:
        self.length += self._new

    def cut(self, drop: int) -> list[tuple["FlatCache", torch.Tensor]]:
        kept = self.tokens[: self.batch, drop : self.length].clone()
        self.length = 0
        return [(self, kept)]


def mask_bias(mask: torch.Tensor, device, dtype: torch.dtype) -> torch.Tensor:
    """A boolean attention mask (True = attend) as the additive bias the products path
    adds to the scores: 0 where attended, -inf where hidden."""
    return torch.zeros(mask.shape, device=device, dtype=dtype).masked_fill(~mask.to(device), -math.inf)


class AttentionMapsCache(FlatCache):
    """A FlatCache that attends by the written-out products (`_attend_by_products`, the
    formula the cascade's small parts use) and keeps each layer's attention weights of
    the tokens decoded: `maps[layer]` [batch, heads, new tokens, keys], fp32. For
    `TrajectoryGPT.attention_maps`: the model's own decode, its weights made visible."""

    def __init__(self, n_layers, batch, n_heads, block_size, head_dim, device=None, dtype=None):
        super().__init__(n_layers, batch, n_heads, block_size, head_dim, device=device, dtype=dtype)
        self.maps: list[Optional[torch.Tensor]] = [None] * n_layers
        self.scale = 1 / math.sqrt(head_dim)
        self._bias: Optional[torch.Tensor] = None

    def begin(self, idx: torch.Tensor, mask: torch.Tensor) -> None:
        super().begin(idx, mask)
        # the decode's mask as an additive bias, once for all layers
        self._bias = mask_bias(self._mask, idx.device, torch.float32)

    def attend(self, layer: int, qkv: torch.Tensor) -> torch.Tensor:
        q, K, V = self._store(layer, qkv)
        y, _, self.maps[layer] = _attend_by_products(q, K, V, self._bias, self.scale)
        return y.transpose(1, 2).reshape(self.batch, self._new, -1).to(qkv.dtype)


# ---------------------------------------------------------------------- cascade


class _Level:
    """One level of the cascade: keys/values [n_layers, 2, capacity, H, S, hd] + ids."""

    def __init__(self, n_layers, capacity, H, S, hd, device, dtype):
        self.kv = torch.empty(n_layers, 2, capacity, H, S, hd, device=device, dtype=dtype)
        self.tok = torch.zeros(capacity, S, dtype=torch.long, device=device)
        self.rows = 0
        self.length = 0
        self._views: tuple[tuple[int, int], list] = ((-1, -1), [])

    def layer_views(self, rows: int, keys: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the (keys, values) views [rows, H, keys, hd]. Memoized: the levels
        above the one being decoded keep their size for many decodes, and rebuilding the
        views is a dozen tensor ops per decode on the per-token path."""
        if self._views[0] != (rows, keys):
            live = self.kv[:, :, :rows, :, :keys]
            self._views = ((rows, keys), [(live[i, 0], live[i, 1]) for i in range(live.shape[0])])
        return self._views[1]

    def fits(self, rows: int, size: int, dtype: torch.dtype) -> bool:
        return self.kv.shape[2] >= rows and self.kv.shape[4] >= size and self.kv.dtype == dtype

    @property
    def nbytes(self) -> int:
        return self.kv.nbytes


class _Part:
    """What the queries of one decode read from one level (shared by all layers)."""

    __slots__ = ("kv", "rows", "group", "bias", "dead")

    def __init__(self, kv, rows, group, bias, dead):
        # kv: per layer, the level's live (keys, values) [rows, H, keys, hd]
        self.kv, self.rows, self.group, self.bias, self.dead = kv, rows, group, bias, dead


class CascadeCache:
    """The three-level cache of batched beam search; see the module doc.

    `reset` sizes the levels for one plan (buffers are reused while they fit),
    `level(j)` is the cache to decode into level j, `select` performs beam selection and
    `clear(2)` empties the candidates' level for the next step.
    """

    LEVELS = 3

    def __init__(self, n_layers: int, n_heads: int, head_dim: int, device, dtype: torch.dtype):
        self.n_layers, self.H, self.hd = n_layers, n_heads, head_dim
        self.device = torch.device(device)
        # the dtype keys and values are held and attended in: kv_dtype's rule
        name = _DTYPE_NAMES.get(dtype)
        self.dtype = torch.float32 if name and kv_dtype(name, self.device.type) == "fp32" else dtype
        self.scale = 1.0 / math.sqrt(head_dim)
        self.levels: list[Optional[_Level]] = [None] * self.LEVELS
        self._spare: Optional[_Level] = None  # level 1's ping-pong partner for `select`
        self._home: Optional[_Level] = None  # the buffer every plan starts level 1 on
        self._views = [CascadeLevel(self, j) for j in range(self.LEVELS)]
        self._mask_src: Optional[torch.Tensor] = None
        self._bias: Optional[torch.Tensor] = None  # _mask_src as an additive bias
        # CPU path: the fused flash kernel returns the log-sum-exp the merge needs.
        self._flash = self.device.type == "cpu" and hasattr(
            torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"
        )

    @property
    def nbytes(self) -> int:
        """Bytes of the key/value buffers held (the token ids beside them add < 1 %)."""
        return sum(lv.nbytes for lv in (*self.levels, self._spare) if lv is not None)

    def _fit(self, lev: Optional[_Level], rows: int, size: int) -> _Level:
        if lev is None or not lev.fits(rows, size, self.dtype):
            lev = _Level(self.n_layers, rows, self.H, size, self.hd, self.device, self.dtype)
        lev.rows, lev.length = rows, 0
        return lev

    def reset(self, rows: tuple[int, int, int], sizes: tuple[int, int, int]) -> None:
        """Empty every level; level j gets rows[j] rows for up to sizes[j] tokens.

        Every plan starts level 1 on the same one of its two buffers (each `select`
        swaps them), so a plan of any step count walks the buffer addresses of the plan
        before it (what lets tt_core/model/decode_graphs.py replay its graphs)."""
        if self._spare is not None and self._spare is self._home:
            self.levels[1], self._spare = self._spare, self.levels[1]
        for j in range(self.LEVELS):
            self.levels[j] = self._fit(self.levels[j], rows[j], sizes[j])
        self._spare = self._fit(self._spare, rows[1], sizes[1])
        self._home = self.levels[1]

    def level(self, j: int) -> "CascadeLevel":
        return self._views[j]

    def clear(self, j: int) -> None:
        self.levels[j].length = 0

    @torch.inference_mode()
    def select(self, parent: torch.Tensor, cand: torch.Tensor) -> None:
        """Level 1 <- level 1[parent] ++ level 2[cand] (each chosen candidate's step tokens);
        level 2 is emptied."""
        src, lv2 = self.levels[1], self.levels[2]
        L, n, rows = src.length, lv2.length, parent.numel()
        dst = self._spare
        if not dst.fits(rows, L + n, self.dtype):
            dst = _Level(self.n_layers, rows, self.H, max(src.kv.shape[4], L + n), self.hd, self.device, self.dtype)
        for lev, index, a, b in ((src, parent, 0, L), (lv2, cand, L, L + n)):
            if b == a:
                continue
            for i in range(self.n_layers):
                for kv in range(2):
                    torch.index_select(lev.kv[i, kv, : lev.rows, :, : b - a], 0, index,
                                       out=dst.kv[i, kv, :rows, :, a:b])
            torch.index_select(lev.tok[: lev.rows, : b - a], 0, index, out=dst.tok[:rows, a:b])
        dst.rows, dst.length = rows, L + n
        lv2.length = 0
        self.levels[1], self._spare = dst, src

    def _masks(self, mask: torch.Tensor) -> tuple[torch.Tensor, list[list[int]]]:
        """The model's boolean mask as an additive bias (compute dtype, on the device) and
        as host lists seen[q][k] = keys < k visible to query q, so deciding which levels a
        decode reads costs no device work or sync."""
        if mask is not self._mask_src:
            self._bias = mask_bias(mask, self.device, self.dtype)
            counts = mask.cpu().to(torch.int32).cumsum(1)
            self._seen = torch.cat([torch.zeros(len(mask), 1, dtype=torch.int32), counts], 1).tolist()
            self._mask_src = mask
        return self._bias, self._seen


def flash_wins(rows: int, queries: int, heads: int) -> bool:
    """Whether torch's fused CPU flash-attention kernel is faster than two batched matrix
    products (`_attend_by_products`) for one cache part: `rows` rows of `queries` queries
    each, over `heads` heads. The kernel sets up a task per (row, head, block of up to 32
    queries), which pays off for a few rows of many queries (the context level, one row
    per env) and not for many rows of one or two (the beams' and candidates' levels):
    at 800 rows of 2 queries it took 13.4 ms against 3.1 ms (4 heads of 32, 2 threads;
    docs/benchmarks.md#attention-kernels)."""
    if rows == 1 or queries >= 32:
        return True
    tasks = rows * heads
    return tasks < 512 if queries == 1 else tasks * queries < 256


def _attend_by_products(q, K, V, bias, scale) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """softmax(q K^T * scale + bias) V, the scores' log-sum-exp and the weights (both
    fp32), for q [rows, H, m, hd] and K, V [rows, H, keys, hd]."""
    s = torch.matmul(q, K.transpose(-1, -2)).float().mul_(scale).add_(bias)
    lse = torch.logsumexp(s, -1)
    weights = s.sub_(lse.unsqueeze(-1)).exp_()
    return torch.matmul(weights.to(V.dtype), V), lse, weights


def _merge(outs: list[torch.Tensor], lses: list[torch.Tensor]) -> torch.Tensor:
    """One softmax over the keys of every part, from each part's own softmax: part i
    weighs exp(lse_i - logsumexp(lse)). Blended in fp32 (lse is fp32 for any dtype)."""
    dtype = outs[0].dtype
    if dtype != torch.float32:
        outs = [o.float() for o in outs]
    if len(outs) == 2:  # a decode at level 1, the most frequent: one fused blend
        y = torch.lerp(outs[0], outs[1], torch.sigmoid(lses[1] - lses[0]).unsqueeze(-1))
    else:
        w = torch.softmax(torch.stack(lses), 0).unsqueeze(-1)  # [parts, B, n, H, 1]
        y = (torch.stack(outs) * w).sum(0)
    return y.to(dtype)


class CascadeLevel:
    """`CascadeCache` seen from level j: the cache interface of a decode into level j."""

    def __init__(self, cascade: CascadeCache, j: int):
        self.cascade, self.j = cascade, j
        self._parts: list[_Part] = []
        self._new = 0

    @property
    def batch(self) -> int:
        return self.cascade.levels[self.j].rows

    @property
    def length(self) -> int:
        return sum(lv.length for lv in self.cascade.levels[: self.j + 1])

    def begin(self, idx: torch.Tensor, mask: torch.Tensor) -> None:
        levels = self.cascade.levels[: self.j + 1]
        own = levels[-1]
        B, n = idx.shape
        pos0 = self.length
        own.tok[:B, own.length : own.length + n] = idx
        bias_all, seen = self.cascade._masks(mask)
        parts = []
        a = 0  # absolute position of the level's first key
        for lev in levels:
            keys = lev.length + (n if lev is own else 0)
            # queries that see none of this level's keys (seen = visible keys, cumulated)
            if n == 1:
                dead = [seen[pos0][a + keys] == seen[pos0][a]]
            else:
                dead = [seen[p][a + keys] == seen[p][a] for p in range(pos0, pos0 + n)]
            if keys and not all(dead):  # else every key is hidden (e.g. a lone value token)
                group = B // lev.rows
                bias = bias_all[pos0 : pos0 + n, a : a + keys]
                if n == 1:
                    bias = bias.view(1, 1, 1, keys)
                    dead_rows = None
                else:
                    if group > 1:
                        bias = bias.repeat(group, 1)  # query rows: group-major, then position
                    dead_rows = torch.tensor(dead, device=self.cascade.device) if any(dead) else None
                parts.append(_Part(lev.layer_views(lev.rows, keys), lev.rows, group, bias, dead_rows))
            a += lev.length
        self._parts, self._new = parts, n
        self._dst = own.kv[:, :, :B, :, own.length : own.length + n]  # where the new keys go

    def attend(self, layer: int, qkv: torch.Tensor) -> torch.Tensor:
        c = self.cascade
        B, n, _, H, hd = qkv.shape
        self._dst[layer] = qkv[:, :, 1:].permute(2, 0, 3, 1, 4)  # converted to the cache's dtype
        q = qkv[:, :, 0].to(c.dtype)
        outs, lses = [], []
        for part in self._parts:
            # the `group` query rows of one level row attend to it in one kernel call
            qp = (q if part.group == 1 else q.reshape(part.rows, part.group * n, H, hd)).transpose(1, 2)
            K, V = part.kv[layer]
            if c._flash and flash_wins(part.rows, part.group * n, H):
                o, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                    qp, K, V, 0.0, False, attn_mask=part.bias, scale=c.scale
                )[:2]
            else:
                o, lse, _ = _attend_by_products(qp, K, V, part.bias, c.scale)
            if len(self._parts) == 1:
                return o.transpose(1, 2).reshape(B, n, H * hd).to(qkv.dtype)
            if n == 1 and part.group == 1:  # [B, H, 1, hd] is already [B, 1, H, hd] in memory
                o, lse = o.view(B, n, H, hd), lse.view(B, n, H)
            else:
                o = o.transpose(1, 2).reshape(B, n, H, hd)
                lse = lse.transpose(1, 2).reshape(B, n, H)  # float32 for every input dtype
            if part.dead is not None:
                lse = lse.masked_fill(part.dead.view(1, n, 1), -math.inf)
                o = o.masked_fill(part.dead.view(1, n, 1, 1), 0.0)
            outs.append(o)
            lses.append(lse)
        return _merge(outs, lses).reshape(B, n, H * hd).to(qkv.dtype)

    def end(self) -> None:
        self.advance(self._new)

    def mark(self) -> int:
        """Tokens this level holds now; `rewind(mark)` returns to it."""
        return self.cascade.levels[self.j].length

    def rewind(self, mark: int) -> None:
        """Forget the tokens held since `mark`: a decode that failed part-way (the next
        decode rewrites their keys and values)."""
        self.cascade.levels[self.j].length = mark

    def advance(self, n: int) -> None:
        """The n tokens written at the end of this level are now held (the host half of
        a decode; a replayed CUDA graph wrote the device half, tt_core/model/decode_graphs.py)."""
        self.cascade.levels[self.j].length += n

    def layout(self) -> tuple:
        """What fixes every shape and address a decode into this level touches: per level
        read, its key/value and token buffers, rows and length; and the mask bias."""
        bias = self.cascade._bias
        return (
            self.j,
            None if bias is None else (bias.data_ptr(), bias.shape),
            *((lev.kv.data_ptr(), lev.kv.shape, lev.tok.data_ptr(), lev.tok.shape, lev.rows, lev.length)
              for lev in self.cascade.levels[: self.j + 1]),
        )

    def cut(self, drop: int) -> list[tuple["CascadeLevel", torch.Tensor]]:
        """Drop the first `drop` tokens of the window (level by level, in window order)."""
        kept = []
        for j, lev in enumerate(self.cascade.levels[: self.j + 1]):
            first = min(drop, lev.length)
            kept.append((self.cascade.level(j), lev.tok[: lev.rows, first : lev.length].clone()))
            drop -= first
            lev.length = 0
        return kept
