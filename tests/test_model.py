"""TrajectoryGPT and its KV cache: cached decoding must equal a full forward pass.

Two weight sets are used: "random" (every parameter, positions and LayerNorms
included, drawn at a scale where the network is far from its init) and "trained"
(50 Adam steps on random tokens; briefly trained weights are what a real checkpoint
looks like structurally: unequal heads, non-zero positions, sharpened attention).
"""

from __future__ import annotations

import pytest
import torch

from tt_core.model.cache import FlatCache
from tt_core.model.gpt import GPTConfig, TrajectoryGPT

import dataclasses
import math

ATOL = 1e-4
# T = 3 + 2 + 2 = 7 tokens per transition; block_size = 4 * 7 - 1 = 27. With the stop
# token (id N = 11) the heads have V = 12 outputs; NO_STOP is a model made before it.
CFG = GPTConfig(observation_dim=3, action_dim=2, num_bins=11, seq_len=4, embedding_dim=32, n_layers=2, n_heads=4)
NO_STOP = dataclasses.replace(CFG, stop_token=False)
T, N, V, BLOCK = CFG.transition_dim, CFG.num_bins, CFG.vocab_size, CFG.block_size


def random_model(seed: int = 0, cfg: GPTConfig = CFG) -> TrajectoryGPT:
    torch.manual_seed(seed)
    model = TrajectoryGPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


def trained_model() -> TrajectoryGPT:
    """BRIEFLY TRAINED weights: 50 Adam steps, next-token loss on random tokens."""
    torch.manual_seed(1)
    model = TrajectoryGPT(CFG).train()
    opt = torch.optim.AdamW(model.param_groups(0.1), lr=3e-3)
    for _ in range(50):
        x = torch.randint(0, V, (16, BLOCK + 1))  # stop tokens included
        logits = model(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module", params=["random", "trained", "random-no-stop"])
def model(request) -> TrajectoryGPT:
    if request.param == "random-no-stop":
        return random_model(cfg=NO_STOP)
    return random_model() if request.param == "random" else trained_model()


def tokens(batch: int, length: int, seed: int = 0, vocab: int = V) -> torch.Tensor:
    """Random ids, the stop token N among them (for models that have it: V = N + 1)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=g)


def decode_one_by_one(model, cache: FlatCache, idx: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.decode(idx[:, i : i + 1], cache) for i in range(idx.shape[1])], dim=1)


def assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    assert (a - b).abs().max().item() <= ATOL


# ------------------------------------------------------------------ equivalence


def test_token_by_token_cached_decode_equals_forward_at_every_position(model):
    idx = tokens(3, BLOCK)
    with torch.no_grad():
        full = model(idx)
    cache = model.new_cache(3)
    cached = decode_one_by_one(model, cache, idx)
    assert cache.length == BLOCK
    assert_close(cached, full)  # value-token positions (p % T == T-1) included


@pytest.mark.parametrize("prefill", [1, T - 1, T, 2 * T + 3])
def test_prefill_then_token_by_token_equals_forward(model, prefill):
    idx = tokens(2, BLOCK, seed=prefill)
    with torch.no_grad():
        full = model(idx)
    cache = model.new_cache(2)
    first = model.decode(idx[:, :prefill], cache)
    rest = decode_one_by_one(model, cache, idx[:, prefill:])
    assert_close(torch.cat([first, rest], dim=1), full)


def test_chunked_prefill_at_nonzero_start_equals_forward(model):
    idx = tokens(2, BLOCK, seed=5)
    with torch.no_grad():
        full = model(idx)
    cache = model.new_cache(2)
    parts = [model.decode(idx[:, a:b], cache) for a, b in [(0, 4), (4, 13), (13, 14), (14, BLOCK)]]
    assert_close(torch.cat(parts, dim=1), full)


@pytest.mark.parametrize("length,keep", [(3 * T, 2), (3 * T + 4, 2), (BLOCK, 1), (BLOCK, 3)])
def test_crop_then_continue_equals_forward_on_cropped_sequence(model, length, keep):
    idx = tokens(2, BLOCK, seed=length)
    cache = model.new_cache(2)
    model.decode(idx[:, :length], cache)
    assert model.crop(cache, keep) is True
    # Whole transitions are dropped; a trailing partial transition counts as one kept.
    drop = -(-(length - keep * T) // T) * T
    assert drop % T == 0 and cache.length == length - drop <= keep * T
    assert torch.equal(cache.token_ids(), idx[:, drop:length])
    # The cropped window starts at position 0 (dimension 0) and continues from there.
    cropped = idx[:, drop:]
    cropped = torch.cat([cropped, tokens(2, BLOCK - cropped.shape[1], seed=9)], dim=1)
    with torch.no_grad():
        full = model(cropped)
    kept = cache.length
    # every later logit reads the re-encoded keys of the kept tokens
    assert_close(decode_one_by_one(model, cache, cropped[:, kept:]), full[:, kept:])


def test_crop_is_a_no_op_returning_false_when_the_cache_already_fits(model):
    cache = model.new_cache(1)
    model.decode(tokens(1, 2 * T), cache)
    assert model.crop(cache, 2) is False and cache.length == 2 * T
    with pytest.raises(ValueError):
        model.crop(cache, 0)


# ------------------------------------------------------------------ structure


def test_value_tokens_are_hidden_from_all_later_positions(model):
    idx = tokens(1, BLOCK, seed=8)
    changed_value = idx.clone()
    changed_value[0, T - 1] = (idx[0, T - 1] + 5) % N  # the first value token
    changed_obs = idx.clone()
    changed_obs[0, T] = (idx[0, T] + 5) % N  # obs[0] of the second transition
    with torch.no_grad():
        base, after_value, after_obs = model(idx), model(changed_value), model(changed_obs)
    assert_close(after_value[:, T:], base[:, T:])  # later logits blind to the value
    assert (after_obs[:, T + 1 :] - base[:, T + 1 :]).abs().max() > 1e-3  # obs is seen
    # The same holds for cached decoding.
    cache = model.new_cache(1)
    cached = decode_one_by_one(model, cache, changed_value)
    assert_close(cached[:, T:], base[:, T:])


def test_position_p_uses_output_head_p_mod_T(model):
    idx = tokens(1, BLOCK, seed=10)
    with torch.no_grad():
        base = model(idx)
        saved = model.head.detach().clone()
        try:
            model.head[2].add_(1.0)
            changed = model(idx)
        finally:
            model.head.copy_(saved)
    moved = (changed - base).abs().amax(dim=-1)[0] > 1e-3
    assert moved.tolist() == [p % T == 2 for p in range(BLOCK)]


def test_token_embedding_uses_per_dimension_offsets_into_one_table_and_one_stop_row(model):
    assert model.tok_emb.num_embeddings == T * N + 1
    seen = []
    handle = model.tok_emb.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    try:
        idx = tokens(2, BLOCK, seed=11, vocab=model.cfg.vocab_size)
        with torch.no_grad():
            model(idx)
    finally:
        handle.remove()
    p = torch.arange(BLOCK)
    expected = idx + (p % T) * N
    if model.cfg.stop_token:  # the original's offset_tokens: id N of any dimension -> row T*N
        assert (idx == N).any()
        expected = torch.where(idx == N, T * N, expected)
    assert torch.equal(seen[0], expected)


def test_param_groups_cover_every_parameter_once_decaying_only_linear_and_head_weights():
    model = TrajectoryGPT(CFG)
    groups = model.param_groups(0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    expected = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) for n in [n + ".weight"]}
    assert decayed == expected | {"head"}
    assert all(g["weight_decay"] in (0.0, 0.1) for g in groups)
    assert "tok_emb.weight" not in decayed and "pos_emb" not in decayed


def test_head_and_embedding_shapes_follow_the_config():
    for cfg, outputs in ((CFG, N + 1), (NO_STOP, N)):
        model = TrajectoryGPT(cfg)
        assert model.head.shape == (T, outputs, cfg.embedding_dim)
        assert model.pos_emb.shape == (BLOCK, cfg.embedding_dim)
        assert sum(p.numel() for p in model.parameters()) == cfg.num_parameters
    assert BLOCK == CFG.seq_len * T - 1
    assert "mask" not in model.state_dict()  # derived tables are not checkpointed


@pytest.mark.parametrize("init", ["original", "ftt"])
def test_initialisation_follows_its_sources_rules_for_every_parameter(init):
    """original (models/transformers.py, ein.py): Linear and Embedding weights N(0, 0.02),
    biases 0, LayerNorms 1 / 0, positions zeros (its _init_weights never touches pos_emb),
    the EinLinear head kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(E), 1/sqrt(E)).
    ftt (the seed's gpt.py): the same, but nn.MultiheadAttention's own xavier-uniform
    in-projection (q, k, v as one [3E, E] matrix) and positions N(0, 0.02)."""
    cfg = dataclasses.replace(CFG, embedding_dim=256, n_heads=4, n_layers=2, init=init)
    torch.manual_seed(0)
    model = TrajectoryGPT(cfg)
    E = cfg.embedding_dim
    for name, p in model.named_parameters():
        x = p.detach().double().flatten()
        if name.endswith(".bias") or (name == "pos_emb" and init == "original"):
            assert torch.equal(x, torch.zeros_like(x)), name
        elif name == "head":
            bound = 1 / math.sqrt(E)
            assert x.abs().max() <= bound and x.abs().max() > 0.99 * bound, name
            assert x.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02), name  # uniform's std
        elif name.endswith("c_attn.weight") and init == "ftt":
            bound = math.sqrt(6 / (E + 3 * E))  # xavier_uniform of a [3E, E] matrix
            assert x.abs().max() <= bound and x.abs().max() > 0.99 * bound, name
            assert x.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02), name
        elif name.split(".")[-2:][0].startswith("ln"):  # ln1, ln2, ln_f weights
            assert torch.equal(x, torch.ones_like(x)), name
        else:  # tok_emb, c_attn (original), c_proj, mlp.0, mlp.2 weights; positions (ftt)
            assert x.mean().abs().item() < 0.02 * 5 / math.sqrt(x.numel()), name
            assert x.std().item() == pytest.approx(0.02, rel=0.03), name


def test_exceeding_block_size_raises():
    model = random_model()
    with pytest.raises(ValueError):
        model(tokens(1, BLOCK + 1))
    cache = model.new_cache(1)
    with pytest.raises(ValueError):
        model.decode(tokens(1, BLOCK + 1), cache)  # prefill that overflows
    model.decode(tokens(1, BLOCK), cache)
    with pytest.raises(ValueError):
        model.decode(tokens(1, 1), cache)  # one token past the end
    assert cache.length == BLOCK  # a refused decode leaves the cache untouched


def test_decode_rejects_a_batch_that_does_not_match_the_cache():
    model = random_model()
    with pytest.raises(ValueError):
        model.decode(tokens(2, 1), model.new_cache(3))


def test_cache_works_with_and_without_inference_mode():
    model = random_model()
    idx = tokens(2, 2 * T)
    with torch.no_grad():
        full = model(idx)
    cache = model.new_cache(2)
    with torch.inference_mode():
        first = model.decode(idx[:, :T], cache)
    rest = model.decode(idx[:, T:], cache)  # outside inference mode: must not raise
    assert_close(torch.cat([first, rest], dim=1), full)


def test_num_parameters_counts_the_models_parameters_without_building_it():
    for cfg in (CFG, GPTConfig(observation_dim=17, action_dim=6, num_bins=100, seq_len=10, embedding_dim=128)):
        assert cfg.num_parameters == sum(p.numel() for p in TrajectoryGPT(cfg).parameters())


def test_the_flop_formula_counts_the_models_own_matrix_shapes():
    """GPTConfig.token_flops (the benchmarks' "% of machine") against a count made from
    the network's layers: 2 multiply-adds per weight of every projection a token row
    passes through, attention's scores and weighted sum over its keys, one head row."""
    cfg = GPTConfig(observation_dim=5, action_dim=2, num_bins=20, seq_len=3, embedding_dim=32, n_layers=3, n_heads=4)
    model = TrajectoryGPT(cfg)
    projections = [m for block in model.blocks for m in block.modules() if isinstance(m, torch.nn.Linear)]
    keys = 17
    counted = sum(2 * m.in_features * m.out_features for m in projections)
    counted += cfg.n_layers * 2 * 2 * keys * cfg.embedding_dim  # q.k per key, weights x v per key
    counted += 2 * model.head.shape[1] * model.head.shape[2]  # one dimension's head: [vocab, E]
    assert cfg.token_flops(keys) == counted
