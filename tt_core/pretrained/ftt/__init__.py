"""Import checkpoints of the seed project, faster-trajectory-transformer (Howuhh).

A seed checkpoint is a directory such as `pretrained/hopper/` holding

    config.yaml       OmegaConf dump: dataset / model / trainer sections (resolved)
    discretizer.pt    torch.save of a `trajectory.utils.discretization.KBinsDiscretizer`
    model_last.pt     torch.save(model.state_dict()) (or model_<epoch>.pt)

`load_ftt_checkpoint` turns it into the `LoadedRun` a tt-tui run directory gives, so
eval and planning need not know where the weights came from. What it maps, and why:

- Network: the seed's GPT is ours with other names. nn.MultiheadAttention's fused
  `in_proj_weight` [3E, E] is q, k, v stacked, the layout of our `c_attn`; heads are
  contiguous E/H slices in both. `out_proj` -> `c_proj`, `norm1/norm2` -> `ln1/ln2`,
  `norm` -> `ln_f`, the bias-free EinLinear head [T, N, E] -> `head`. MLP (GELU) and
  LayerNorm eps are the same. The seed's vocabulary is exactly N bins per dimension:
  its embedding has T*N rows (ours one spare row more, appended as zeros, never read)
  and its learned positions are [1, T*seq_len, E]; ours are [T*seq_len - 1, E] (the
  last token of a window is only ever a target), so the final row is dropped.
- Attention mask: the seed stores a boolean `attn_mask` buffer per block where True
  means *masked* (nn.MultiheadAttention's convention), causal plus every value column.
  It is checked to be exactly the negation of ours.
- Residual path (two eras): before upstream's fix (commit 213e58d) the blocks computed
  `h = norm1(x); h = h + attn(h); h + mlp(norm2(h))` -- the residual carries the
  *normalized* stream (upstream issue #3); after it, the ordinary pre-norm block
  `x + attn(norm1(x))`, and the pretrained models were retrained. The weights of the
  two eras have the same names and shapes, so the era is told from the git blob id of
  model_last.pt (`PUBLISHED_MODELS`, pinned in pretrained/*/manifest.json); a file that is not
  one of the published ones gets pre-norm, upstream's current code, unless
  `load_ftt_checkpoint(block=...)` says otherwise. The choice is recorded as
  `dataset_meta["ftt_block"]` (and why, as `dataset_meta["ftt_block_note"]`), and
  `adapt_model` turns a TrajectoryGPT's blocks into the matching kind.
- Discretizer: read with a restricted unpickler that can build only the seed's
  discretizer (as an inert state holder), numpy arrays and tensors; anything else is
  refused before it is called. The seed encodes with
  `digitize(x + 1e-8 + 1e-5*|x|, edges[1:])` clipped to N-1; since that shift is
  strictly increasing, moving each edge e to the x where the shifted x reaches e gives
  boundaries for which our plain `searchsorted` returns the same bins. Decoding and
  expectations use the seed's own bin centers (midpoints of its unshifted edges).
"""
