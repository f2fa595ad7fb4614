"""Importing faster-trajectory-transformer (seed project) checkpoints.

Each test builds a FTT-format directory itself: a config.yaml in the seed's layout,
a discretizer.pt pickled from a class living at the seed's module path, and a
model_last.pt holding the state dict of a small re-statement of the seed's GPT. The
imported model is checked against that independent forward, not against tt-tui code.
"""

import os
import pickle
import sys

import numpy as np
import pytest
import torch
import yaml

from ftt_seed import (
    A, E, HEADS, L, LAYERS, N, O, SEQ, T, KBinsDiscretizer, git_blob, seed_config, transitions, write_seed_dir,
)
from tt_core.pretrained.ftt import config as ftt_config, discretizer as ftt_discretizer, loader, unpickler, weights
from tt_core.runs import ftt_layout as layout
from tt_core.errors import CheckpointError
from tt_core.model.gpt import GPTConfig, TrajectoryGPT


def build(loaded):
    """What tt_core.plan.agent does with a LoadedRun, plus the seed block adaptation."""
    meta = loaded.dataset_meta
    model = TrajectoryGPT(GPTConfig.from_config(loaded.config, meta["observation_dim"], meta["action_dim"]))
    weights.adapt_model(model, meta)
    model.load_state_dict(loaded.model_state)  # strict: every name and shape fits
    return model.eval()


def random_tokens(batch, t, seed=1):
    return torch.randint(0, N, (batch, t), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------- the model


@pytest.mark.parametrize("block", [weights.NORM_RESIDUAL, weights.PRE_NORM])
def test_imported_model_gives_the_seed_networks_logits(seed_dir, block):
    path, seed_model, _ = seed_dir
    model = build(loader.load_ftt_checkpoint(path, block=block))
    tokens = random_tokens(3, L - 1)  # a full window: seq_len transitions minus the target
    with torch.no_grad():
        want = seed_model(tokens, norm_residual=(block == weights.NORM_RESIDUAL))
        got = model(tokens)
    assert got.shape == (3, L - 1, N)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    # Partial windows too (the seed slices its mask and positions the same way).
    with torch.no_grad():
        torch.testing.assert_close(
            model(tokens[:, :20]), seed_model(tokens[:, :20], block == weights.NORM_RESIDUAL),
            atol=1e-4, rtol=1e-4,
        )


def test_the_two_block_kinds_really_differ(seed_dir):
    # Guards the test above: if both residual paths agreed it would prove nothing.
    path, seed_model, _ = seed_dir
    tokens = random_tokens(1, 30)
    with torch.no_grad():
        assert not torch.allclose(seed_model(tokens, True), seed_model(tokens, False), atol=1e-3)


@pytest.mark.parametrize("block", [weights.NORM_RESIDUAL, weights.PRE_NORM])
def test_cached_decoding_of_an_imported_model_equals_its_full_forward(seed_dir, block):
    path, _, _ = seed_dir
    model = build(loader.load_ftt_checkpoint(path, block=block))
    tokens = random_tokens(2, 2 * T + 5, seed=3)
    cache = model.new_cache(2)
    with torch.no_grad():
        full = model(tokens)
        first = model.decode(tokens[:, :7], cache)
        steps = [model.decode(tokens[:, i : i + 1], cache) for i in range(7, tokens.shape[1])]
    torch.testing.assert_close(torch.cat([first, *steps], dim=1), full, atol=1e-4, rtol=1e-4)


def blob_id(path) -> str:
    return git_blob(path.read_bytes())


def test_the_published_model_ids_are_upstreams_three_files_of_each_era():
    by_era = {}
    for blob, (env, kind) in weights.PUBLISHED_MODELS.items():
        assert len(blob) == 40 and int(blob, 16) >= 0
        by_era.setdefault(kind, set()).add(env)
    assert by_era == {weights.NORM_RESIDUAL: {"halfcheetah", "hopper", "walker2d"},
                      weights.PRE_NORM: {"halfcheetah", "hopper", "walker2d"}}
    assert weights.PUBLISHED_MODELS["f0705b82cd81b6f038e21cbc49cd16665ce17880"] == ("walker2d", weights.NORM_RESIDUAL)
    assert weights.PUBLISHED_MODELS["05186222bfec9d32f0520b726ed62eb9f349d02b"] == ("walker2d", weights.PRE_NORM)


@pytest.mark.parametrize("era", [weights.NORM_RESIDUAL, weights.PRE_NORM])
def test_a_published_file_is_planned_with_the_block_of_its_era_without_flags(seed_dir, monkeypatch, era):
    path, seed_model, _ = seed_dir
    # The files in the table are upstream's; this one stands in for one of them.
    monkeypatch.setitem(weights.PUBLISHED_MODELS, blob_id(path / "model_last.pt"), ("hopper", era))
    loaded = loader.load_ftt_checkpoint(path)
    assert loaded.dataset_meta["ftt_block"] == era
    note = loaded.dataset_meta["ftt_block_note"]
    assert "published hopper model" in note and era in note
    assert ("before" if era == weights.NORM_RESIDUAL else "after") in note
    tokens = random_tokens(2, 30)
    with torch.no_grad():
        want = seed_model(tokens, norm_residual=(era == weights.NORM_RESIDUAL))
        torch.testing.assert_close(build(loaded)(tokens), want, atol=1e-4, rtol=1e-4)


def test_an_unknown_file_gets_the_current_pre_norm_block_and_a_line_saying_how_to_override(seed_dir):
    path, _, _ = seed_dir
    meta = loader.load_ftt_checkpoint(path).dataset_meta
    assert meta["ftt_block"] == weights.PRE_NORM
    note = meta["ftt_block_note"]
    assert "not one of upstream's published files" in note and "--ftt-block norm-residual" in note
    assert "\n" not in note


def test_without_the_manifests_the_era_is_unknown_and_the_line_says_so(seed_dir, monkeypatch):
    path, _, _ = seed_dir
    monkeypatch.setattr(weights, "PUBLISHED_MODELS", {})
    meta = loader.load_ftt_checkpoint(path).dataset_meta
    assert meta["ftt_block"] == weights.PRE_NORM
    assert "manifests are not installed" in meta["ftt_block_note"] and "--ftt-block" in meta["ftt_block_note"]


def test_an_explicit_block_overrides_the_detection(seed_dir, monkeypatch):
    path, _, _ = seed_dir
    monkeypatch.setitem(weights.PUBLISHED_MODELS, blob_id(path / "model_last.pt"), ("hopper", weights.PRE_NORM))
    meta = loader.load_ftt_checkpoint(path, block=weights.NORM_RESIDUAL).dataset_meta
    assert meta["ftt_block"] == weights.NORM_RESIDUAL and "--ftt-block" in meta["ftt_block_note"]
    with pytest.raises(CheckpointError, match="FTT block kind"):
        loader.load_ftt_checkpoint(path, block="post-norm")


def test_imported_weights_keep_the_seed_values(seed_dir):
    path, seed_model, _ = seed_dir
    state = loader.load_ftt_checkpoint(path).model_state
    seed_state = seed_model.state_dict()
    assert torch.equal(state["tok_emb.weight"][:-1], seed_state["tok_emb.weight"])
    assert torch.equal(state["tok_emb.weight"][-1], torch.zeros(E))  # our unused spare row
    assert torch.equal(state["pos_emb"], seed_state["pos_emb"][0, : L - 1])
    assert torch.equal(state["blocks.1.attn.c_attn.weight"], seed_state["blocks.1.attention.in_proj_weight"])
    assert torch.equal(state["head"], seed_state["head.weight"])


# ---------------------------------------------------------- config and meta


def test_config_and_dataset_facts_come_from_the_seed_config(seed_dir):
    path, _, _ = seed_dir
    loaded = loader.load_ftt_checkpoint(path)
    cfg = loaded.config
    assert (cfg.dataset.id, cfg.dataset.num_bins, cfg.dataset.seq_len) == ("hopper-medium-v2", N, SEQ)
    assert (cfg.model.embedding_dim, cfg.model.n_layers, cfg.model.n_heads) == (E, LAYERS, HEADS)
    p = cfg.plan
    assert (p.beam_width, p.beam_steps, p.beam_context, p.sample_expand) == (32, 5, 4, 2)
    assert (p.k_obs, p.k_act, p.k_reward, p.cdf_obs, p.cdf_act) == (1, None, 1, None, None)
    assert (p.discount, p.temperature, p.plan_every) == (0.99, 1.0, 1)
    assert cfg.train.action_weight == 5.0 and cfg.train.betas == (0.9, 0.95)
    # the seed's own evaluation: scripts/eval.py with eval_base.yaml (25 episodes), seed 42
    assert (cfg.eval.episodes, cfg.eval.seed, cfg.eval.max_steps) == (25, 42, 1000)
    assert loaded.dataset_meta == {
        "dataset_id": "hopper-medium-v2",
        "env_id": "Hopper-v5",
        "observation_dim": O,
        "action_dim": A,
        "behaviour_mean_return": None,
        "ref_min_score": -20.272305,
        "ref_max_score": 3234.3,
        "source": "faster-trajectory-transformer",
        "ftt_weights": "model_last.pt",
        "ftt_block": "pre-norm",  # not a published file: upstream's current block
        "ftt_block_note": loaded.dataset_meta["ftt_block_note"],
    }
    assert loaded.step == 0 and loaded.trainer_state is None and loaded.run.root == path


def test_plan_defaults_are_the_seed_evals_when_the_trainer_section_is_absent(seed_dir):
    path, _, _ = seed_dir
    data = seed_config()
    del data["trainer"]
    (path / "config.yaml").write_text(yaml.safe_dump(data))
    p = loader.load_ftt_checkpoint(path).config.plan
    assert (p.beam_width, p.beam_steps, p.beam_context, p.sample_expand) == (128, 15, 5, 2)
    assert (p.k_obs, p.k_act, p.k_reward) == (1, None, 1)


@pytest.mark.parametrize(
    "name, env_id, lo, hi",
    [
        ("halfcheetah-medium-v2", "HalfCheetah-v5", -280.178953, 12135.0),
        ("halfcheetah-medium-expert-v2", "HalfCheetah-v5", -280.178953, 12135.0),
        ("hopper-medium-replay-v2", "Hopper-v5", -20.272305, 3234.3),
        ("hopper-random-v0", "Hopper-v5", -20.272305, 3234.3),
        ("walker2d-expert-v1", "Walker2d-v5", 1.629008, 4592.3),
        ("Walker2d-Medium-v2", "Walker2d-v5", 1.629008, 4592.3),
    ],
)
def test_d4rl_names_map_to_gymnasium_v5_ids_and_reference_scores(name, env_id, lo, hi):
    env = ftt_config.ftt_env(name)
    assert (env.env_id, env.ref_min_score, env.ref_max_score) == (env_id, lo, hi)
    assert name.lower() in ftt_config.D4RL_ENVS


@pytest.mark.parametrize("name, env_id, dims", [
    ("Hopper-v5", "Hopper-v5", (11, 3)),
    ("InvertedPendulum-v5", "InvertedPendulum-v5", (4, 1)),
    ("Swimmer-v5", "Swimmer-v5", (8, 2)),
])
def test_any_registered_gymnasium_env_is_accepted_without_reference_scores(name, env_id, dims):
    env = ftt_config.ftt_env(name)
    assert (env.env_id, (env.observation_dim, env.action_dim)) == (env_id, dims)
    assert env.ref_min_score is None and env.ref_max_score is None


@pytest.mark.parametrize("name", ["ant-medium-v1", "hopper-medium", "hopper-medium-v3", "walker-rand-params"])
def test_names_that_are_neither_d4rl_nor_gymnasium_are_refused(name):
    with pytest.raises(CheckpointError, match="neither a D4RL dataset name .* nor a registered Gymnasium id"):
        ftt_config.ftt_env(name)


@pytest.mark.parametrize("name", ["CartPole-v1", "FrozenLake-v1"])
def test_gymnasium_envs_without_box_spaces_are_refused(name):
    with pytest.raises(CheckpointError, match="must be Box spaces"):
        ftt_config.ftt_env(name)


# --------------------------------------------------------------- discretizer


def _probe_values(disc, rng):
    edges, centers = disc.bin_edges, disc.bin_centers
    D = edges.shape[0]
    rows = [
        transitions(300, seed=5),  # in range, arbitrary
        edges.T,  # exactly on every edge
        np.nextafter(edges.T, -np.inf),  # just below every edge
        edges.T - 1e-6 * np.abs(edges.T),  # within the seed's relative epsilon below edges
        centers.T,
        edges[:, :1].T - 100.0,  # below range
        edges[:, -1:].T + 100.0,  # above range
    ]
    return np.concatenate([r.reshape(-1, D) for r in rows])


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_imported_discretizer_bins_values_like_the_seed(seed_module, strategy):
    data = transitions(seed=2)
    seed = KBinsDiscretizer(data, N, strategy)
    ours = ftt_discretizer.discretizer_from_ftt(vars(seed), "discretizer.pt")
    x = _probe_values(seed, np.random.default_rng(0))
    np.testing.assert_array_equal(ours.encode(x), seed.encode(x))
    np.testing.assert_array_equal(ours.encode(torch.as_tensor(x)).numpy(), seed.encode(x))
    ids = seed.encode(x)
    np.testing.assert_array_equal(ours.decode(ids), seed.decode(ids))
    probs = np.random.default_rng(1).dirichlet(np.ones(N), size=(4, T))
    np.testing.assert_allclose(ours.expectation(probs), (probs * seed.bin_centers).sum(-1))


def test_repeated_quantile_edges_keep_point_masses_in_the_seeds_bin(seed_module):
    data = transitions(seed=4)
    data[: len(data) // 2, 2] = 0.0  # half the mass on one value: quantile edges repeat
    data[:, 5] = 3.0  # a constant dimension: every edge equal
    seed = KBinsDiscretizer(data, N, "quantile")
    assert (np.diff(seed.bin_edges[2]) == 0).any()
    ours = ftt_discretizer.discretizer_from_ftt(vars(seed), "discretizer.pt")
    np.testing.assert_array_equal(ours.encode(data), seed.encode(data))


def test_discretizer_file_round_trips_through_the_restricted_unpickler(seed_dir):
    path, _, disc = seed_dir
    state = unpickler.read_ftt_discretizer(path / "discretizer.pt")
    assert isinstance(state, dict) and state["n_bins"] == N and state["strategy"] == "uniform"
    np.testing.assert_array_equal(state["bin_edges"], disc.bin_edges)
    assert torch.equal(state["bin_centers_torch"], disc.bin_centers_torch)
    loaded = loader.load_ftt_checkpoint(path)
    x = transitions(50, seed=9)
    np.testing.assert_array_equal(loaded.discretizer.encode(x), disc.encode(x))


# ----------------------------------------------------------------- safety


class _Exec:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import builtins

        return builtins.exec, (f"open({self.marker!r}, 'w').close()",)


class _System:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_discretizer_pickle_that_would_run_code_is_refused_and_nothing_runs(seed_dir, tmp_path):
    path, _, _ = seed_dir
    marker = tmp_path / "pwned"
    torch.save(_Exec(marker), path / "discretizer.pt")
    with pytest.raises(CheckpointError) as err:
        loader.load_ftt_checkpoint(path)
    assert "discretizer.pt: refused to unpickle builtins.exec" in str(err.value)
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_code_hidden_inside_the_discretizers_state_or_a_plain_pickle_is_refused(seed_dir, tmp_path):
    path, _, disc = seed_dir
    marker = tmp_path / "pwned"
    disc.extra = _System(marker)  # inside an otherwise valid KBinsDiscretizer
    torch.save(disc, path / "discretizer.pt")
    with pytest.raises(CheckpointError, match=r"refused to unpickle (posix|nt)\.system"):
        loader.load_ftt_checkpoint(path)
    (path / "discretizer.pt").write_bytes(pickle.dumps(_Exec(marker)))  # not a torch zip
    with pytest.raises(CheckpointError, match="not a torch.save zip archive"):
        loader.load_ftt_checkpoint(path)  # torch's legacy reader is never reached
    assert not marker.exists()


class _Reduce:
    """Pickles as an arbitrary (callable, args[, state]): hand-made hostile numpy content."""

    def __init__(self, *reduce):
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


def _hostile_numpy_contents():
    """Numpy content built only from the globals a discretizer file may use, each of
    which numpy itself would accept and then read raw bytes as pointers or overrun."""
    from numpy._core import multiarray

    obj_fields = (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 0)  # flags 0: "no objects"
    fake = _Reduce(np.dtype, ("V8", False, True), obj_fields)
    f8 = np.dtype("f8").__reduce__()
    return {
        # the crash: a dtype with an object field, an array of it over attacker bytes
        "object-field-array": _Reduce(multiarray._reconstruct, (np.ndarray, (0,), b"b"),
                                      (1, (1, 3), fake, False, b"A" * 24)),
        # BUILD rewriting the shared float64 dtype's flags to claim it holds objects
        "rewritten-float64": _Reduce(f8[0], f8[1], (3, "<", None, None, None, -1, -1, 63)),
        "object-dtype": _Reduce(np.dtype, ("O", False, True), (3, "|", None, None, None, -1, -1, 63)),
        "object-scalar": _Reduce(multiarray.scalar, (np.dtype("f8"), 12345)),
        "short-data": _Reduce(multiarray._reconstruct, (np.ndarray, (0,), b"b"),
                              (1, (1000,), np.dtype("f8"), False, b"A" * 8)),
        "huge-reconstruct": _Reduce(multiarray._reconstruct, (np.ndarray, (10**12,), b"b")),
    }


def test_hostile_numpy_content_in_a_discretizer_is_refused_without_crashing(seed_dir, tmp_path):
    """Loads each file in a child process: before the fix the first one crashed the
    interpreter (SIGSEGV), which a test in this process could not even report."""
    import subprocess

    path, _, disc = seed_dir
    files = []
    for name, content in _hostile_numpy_contents().items():
        disc.bin_edges = content
        torch.save(disc, tmp_path / f"{name}.pt")
        files.append(str(tmp_path / f"{name}.pt"))
    script = (
        "import sys\n"
        "from tt_core.pretrained.ftt import discretizer as ftt_discretizer, unpickler\n"
        "from tt_core.errors import CheckpointError\n"
        "for f in sys.argv[1:]:\n"
        "    try:\n"
        "        ftt_discretizer.discretizer_from_ftt(unpickler.read_ftt_discretizer(f), f)\n"
        "        print('LOADED', f)\n"
        "    except CheckpointError as e:\n"
        "        print('REFUSED', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, *files], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    lines = out.stdout.splitlines()
    assert len(lines) == len(files) and all(line.startswith("REFUSED") for line in lines), lines
    assert all("refused to unpickle" in line for line in lines), lines


@pytest.mark.parametrize("field, value, message", [
    ("n_bins", np.array([7, 7]), "n_bins ndarray"),
    ("bin_centers", "not numbers", "bin_centers is not a numeric array"),
    ("extra", torch.ones(2, requires_grad=True), "a tensor with autograd state"),
])
def test_odd_discretizer_fields_are_one_line_checkpoint_errors(seed_dir, field, value, message):
    path, _, disc = seed_dir
    setattr(disc, field, value)
    torch.save(disc, path / "discretizer.pt")
    with pytest.raises(CheckpointError, match=message) as err:
        loader.load_ftt_checkpoint(path)
    assert "\n" not in str(err.value)


def test_eval_of_a_crafted_discretizer_ends_in_one_line_and_exit_3(seed_dir):
    import subprocess

    path, _, disc = seed_dir
    disc.bin_edges = _hostile_numpy_contents()["object-field-array"]
    torch.save(disc, path / "discretizer.pt")
    out = subprocess.run(
        [sys.executable, "-m", "tt_tui.cli", "eval", str(path), "--episodes", "1", "--headless"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 3, (out.returncode, out.stderr[-2000:])
    errors = [line for line in out.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "discretizer.pt: refused to unpickle numpy dtype" in errors[0]


def test_model_weights_are_loaded_without_unpickling_objects(seed_dir, tmp_path):
    path, _, _ = seed_dir
    marker = tmp_path / "pwned"
    torch.save({"tok_emb.weight": _Exec(marker)}, path / "model_last.pt")
    with pytest.raises(CheckpointError, match="model_last.pt: unreadable, corrupt or not a state dict"):
        loader.load_ftt_checkpoint(path)
    assert not marker.exists()


# ----------------------------------------------------------- damaged input


def _drop(path, key):
    sd = torch.load(path / "model_last.pt", weights_only=True)
    del sd[key]
    torch.save(sd, path / "model_last.pt")


def _add(path, key, value):
    sd = torch.load(path / "model_last.pt", weights_only=True)
    sd[key] = value
    torch.save(sd, path / "model_last.pt")


def _truncate(file):
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _set_model(path, **changes):
    data = yaml.safe_load((path / "config.yaml").read_text())
    data["model"].update(changes)
    (path / "config.yaml").write_text(yaml.safe_dump(data))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "config.yaml").unlink(), "config.yaml: missing"),
        (lambda p: (p / "config.yaml").write_text("model: [1, 2\n"), "config.yaml: unreadable or corrupt"),
        (lambda p: _set_model(p, vocab_size=None), "model.vocab_size is missing"),
        (lambda p: _set_model(p, use_sep_heads=False), "use_sep_heads is false"),
        (lambda p: _set_model(p, transition_dim=T + 1), "transition_dim 17 != observation_dim"),
        (lambda p: _set_model(p, observation_dim=12, transition_dim=T + 1), "do not match hopper-medium-v2"),
        (lambda p: (p / "discretizer.pt").unlink(), "discretizer.pt: missing"),
        (lambda p: _truncate(p / "discretizer.pt"), "discretizer.pt: unreadable or corrupt"),
        (lambda p: torch.save({"a": 1}, p / "discretizer.pt"), "discretizer.pt: not a seed KBinsDiscretizer"),
        (lambda p: _truncate(p / "model_last.pt"), "model_last.pt: unreadable, corrupt or not a state dict"),
        (lambda p: _drop(p, "blocks.1.norm2.bias"), "model_last.pt: missing key 'blocks.1.norm2.bias'"),
        (lambda p: _add(p, "head.bias", torch.zeros(T, N)), "unexpected key 'head.bias'"),
        (lambda p: _add(p, "pos_emb", torch.zeros(1, L + 1, E)), "'pos_emb' has shape (1, 49, 16)"),
        (lambda p: _add(p, "blocks.0.attn_mask", torch.zeros(L, L, dtype=torch.bool)), "'blocks.0.attn_mask' is not"),
    ],
)
def test_missing_or_damaged_files_give_one_line_checkpoint_errors(seed_dir, damage, message):
    path, _, _ = seed_dir
    damage(path)
    with pytest.raises(CheckpointError) as err:
        loader.load_ftt_checkpoint(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert err.value.exit_code == 3


def test_a_discretizer_of_other_dimensions_is_refused(seed_dir, seed_module):
    path, _, _ = seed_dir
    torch.save(KBinsDiscretizer(transitions()[:, :-1], N, "uniform"), path / "discretizer.pt")
    with pytest.raises(CheckpointError, match="15 dims x 7 bins, config.yaml says 16 x 7"):
        loader.load_ftt_checkpoint(path)


# -------------------------------------------------------------- detection


def test_seed_directories_are_recognised_by_their_files(seed_dir, tmp_path):
    path, _, _ = seed_dir
    assert layout.is_ftt_checkpoint(path)
    (path / "model_last.pt").rename(path / "model_12.pt")
    (path / "model_3.pt").write_bytes(b"older")
    assert layout.is_ftt_checkpoint(path)
    assert loader.load_ftt_checkpoint(path).dataset_meta["ftt_weights"] == "model_12.pt"
    (path / "model_12.pt").unlink()
    (path / "model_3.pt").unlink()
    assert not layout.is_ftt_checkpoint(path)
    assert not layout.is_ftt_checkpoint(tmp_path / "nowhere")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("{}")
    (run / "discretizer.npz").write_bytes(b"")
    assert not layout.is_ftt_checkpoint(run)


def test_arrays_pickled_by_numpy_1_load_through_the_restricted_unpickler():
    # The seed ran numpy 1.22, whose pickles name numpy.core.multiarray._reconstruct.
    import io

    edges = np.linspace(-1.0, 1.0, 9).reshape(1, 9)
    raw = pickle.dumps(edges, protocol=2)
    assert b"numpy._core.multiarray" in raw
    old = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    np.testing.assert_array_equal(unpickler._restricted_load(io.BytesIO(old)), edges)


def test_adapt_model_leaves_tt_tui_runs_alone_and_refuses_unknown_kinds(seed_dir):
    path, _, _ = seed_dir
    loaded = loader.load_ftt_checkpoint(path, block=weights.NORM_RESIDUAL)
    model = TrajectoryGPT(GPTConfig.from_config(loaded.config, O, A))
    weights.adapt_model(model, {"dataset_id": "x"})
    assert all(type(b).__name__ == "Block" for b in model.blocks)
    weights.adapt_model(model, loaded.dataset_meta)
    assert all(isinstance(b, weights.NormResidualBlock) for b in model.blocks)
    with pytest.raises(CheckpointError, match="unknown ftt_block"):
        weights.adapt_model(model, {"ftt_block": "post-norm"})


@pytest.mark.parametrize(
    "module, name, target",
    [
        ("torch._utils", "_rebuild_tensor_v2", lambda: torch._utils._rebuild_tensor_v2),
        ("trajectory.utils.discretization", "KBinsDiscretizer", lambda: unpickler.FttKBinsState),
    ],
)
def test_a_pickle_cannot_modify_the_allowed_globals(module, name, target):
    # GLOBAL, then BUILD with slot state {"__doc__": "pwned"}: setattr on the global itself.
    import io
    import struct

    def text(s):
        return b"X" + struct.pack("<I", len(s)) + s.encode()

    raw = f"c{module}\n{name}\n".encode() + b"N}" + text("__doc__") + text("pwned") + b"s\x86b."
    before = target().__doc__
    with pytest.raises(unpickler._Refused, match="setting the state"):
        unpickler._restricted_load(io.BytesIO(raw))
    assert target().__doc__ == before != "pwned"


@pytest.mark.parametrize("env_name", ["hopper-medium-v2", "Hopper-v5"])
def test_eval_command_plans_with_a_seed_checkpoint_and_scores_with_d4rl_references_where_known(
    tmp_path, seed_module, env_name
):
    import json
    import os
    import subprocess

    path = tmp_path / "seed-model"
    write_seed_dir(path, env_name)
    out = tmp_path / "eval.json"
    result = subprocess.run(
        [sys.executable, "-m", "tt_tui.cli", "eval", str(path), "--episodes", "1", "--max-steps", "3",
         "--beam-width", "2", "--beam-steps", "2", "--headless", "--json", str(out)],
        capture_output=True, text=True, timeout=300, env=os.environ.copy(),
    )
    assert result.returncode == 0, result.stderr
    # no --ftt-block: the block is chosen from the file and the choice is said in one line
    assert "planning with the pre-norm block" in result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["env_id"] == "Hopper-v5"
    (episode,) = report["episodes"]
    if env_name == "Hopper-v5":  # a plain Gymnasium id: no reference scores, no score
        assert episode["score"] is None
        return
    d4rl = 100 * (episode["episode_return"] + 20.272305) / (3234.3 + 20.272305)
    assert episode["score"] == pytest.approx(d4rl)
    assert report["summary"]["score_basis"] == "normalized (reference min/max)"


def test_every_sampling_knob_can_be_set_from_the_eval_command_line(tmp_path, seed_module):
    """k_obs, k_act, k_reward, cdf_obs, cdf_act, temperature and discount are flags of
    eval (and record); "none" switches a filter off; the plan in force is reported."""
    import json
    import os
    import subprocess

    path = tmp_path / "seed-model"
    write_seed_dir(path)
    out = tmp_path / "eval.json"
    flags = ["--k-obs", "2", "--k-act", "none", "--k-reward", "3", "--cdf-obs", "0.5",
             "--cdf-act", "0.6", "--temperature", "0.8", "--discount", "0.9"]
    result = subprocess.run(
        [sys.executable, "-m", "tt_tui.cli", "eval", str(path), "--episodes", "1", "--max-steps", "2",
         "--beam-width", "2", "--beam-steps", "2", "--headless", "--json", str(out), *flags],
        capture_output=True, text=True, timeout=300, env=os.environ.copy(),
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(out.read_text())["plan"]
    assert {k: plan[k] for k in ("k_obs", "k_act", "k_reward", "cdf_obs", "cdf_act", "temperature", "discount")} == {
        "k_obs": 2, "k_act": None, "k_reward": 3, "cdf_obs": 0.5, "cdf_act": 0.6, "temperature": 0.8, "discount": 0.9,
    }


@pytest.mark.parametrize("flag, value, message", [
    ("--k-act", "0", "plan.k_act: 0 must be >= 1"),
    ("--k-obs", "abc", "plan.k_obs: expected an integer, got 'abc'"),
    ("--cdf-act", "1.5", "plan.cdf_act: 1.5 must be in (0, 1]"),
    ("--temperature", "0", "plan.temperature: 0.0 must be > 0"),
])
def test_a_bad_sampling_flag_is_refused_before_anything_loads(flag, value, message):
    from tt_core.errors import ConfigError
    from tt_tui.cli.planning import PLANNING_FLAGS, patch_from_flags

    (given,) = [f for f in PLANNING_FLAGS if f.name == flag]
    with pytest.raises(ConfigError) as refused:
        patch_from_flags({given: float(value) if flag == "--temperature" else value})
    assert str(refused.value) == f"{message} (from {flag} {float(value) if flag == '--temperature' else value})"
