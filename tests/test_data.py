"""Data layer: Minari I/O, trajectories and values, token windows and their cache.

Every test runs against a private MINARI_DATASETS_PATH so ~/.minari is never touched.
"""

import threading
import warnings
from types import SimpleNamespace

import gymnasium as gym
import minari
import numpy as np
import pytest
import torch
from minari.data_collector import EpisodeBuffer

from tt_core.config import CollectConfig, DatasetConfig
from tt_core.data import minari_io
from tt_core.data.discretizer import Discretizer
from tt_core.data.minari_io import (
    collect_dataset,
    dataset_info,
    ensure_dataset,
    list_datasets,
    load_dataset,
)
from tt_core.data.tokens import TokenWindows, default_cache_dir, load_or_build_tokens, tokenize
from tt_core.data.trajectories import build_trajectories, discounted_values
from tt_core.errors import ConfigError, DataError

GAMMA = 0.5
HAND_ID = "test/hand/built-v0"


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def _episode(rewards, terminations=None, truncations=None, first_obs=0.0):
    """Episode buffer with obs [L+1, 2] = (first_obs + t, -t) and actions [L, 1] = 0.1 t."""
    n = len(rewards)
    t = np.arange(n + 1, dtype=np.float64)
    return EpisodeBuffer(
        observations=np.stack([first_obs + t, -t], axis=1),
        actions=(0.1 * t[:n])[:, None],
        rewards=np.asarray(rewards, dtype=np.float64),
        terminations=np.asarray(terminations or [False] * n),
        truncations=np.asarray(truncations or [False] * n),
    )


HAND_EPISODES = [
    # 0: one step, terminated at the first step
    dict(rewards=[5.0], terminations=[True], truncations=[False]),
    # 1: truncation only
    dict(rewards=[1.0, 2.0, 3.0], truncations=[False, False, True]),
    # 2: a normal episode that terminates
    dict(rewards=[1.0, 1.0, 1.0, 1.0], terminations=[False, False, False, True]),
    # 3: one step, truncated
    dict(rewards=[7.0], truncations=[True]),
    # 4: a termination flag mid-episode (a recording that forgot to split)
    dict(rewards=[1.0, 2.0, 3.0, 4.0], terminations=[False, True, False, False],
         truncations=[False, False, False, True]),
]


def _make_dataset(dataset_id, episodes):
    buffers = [_episode(first_obs=10.0 * i, **ep) for i, ep in enumerate(episodes)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return minari.create_dataset_from_buffers(
            dataset_id,
            buffers,
            observation_space=gym.spaces.Box(-np.inf, np.inf, (2,)),
            action_space=gym.spaces.Box(-1.0, 1.0, (1,)),
        )


@pytest.fixture
def hand_ds():
    return _make_dataset(HAND_ID, HAND_EPISODES)


# --- trajectories and values -------------------------------------------------


def test_episodes_split_on_termination_and_truncation(hand_ds):
    traj = build_trajectories(hand_ds, GAMMA, None)
    assert traj.episode_lengths.tolist() == [1, 3, 4, 1, 2, 2]
    assert traj.episode_starts.tolist() == [0, 1, 4, 8, 9, 11]
    assert traj.num_transitions == 13
    assert traj.terminals.tolist() == [True, False, False, False, False, False, False, True,
                                       False, False, True, False, False]


def test_value_excludes_current_reward(hand_ds):
    traj = build_trajectories(hand_ds, GAMMA, None)
    expected = [0.0,                       # ep 0: one step
                2 + 0.5 * 3, 3.0, 0.0,     # ep 1
                1 + 0.5 + 0.25, 1.5, 1.0, 0.0,  # ep 2
                0.0,                       # ep 3
                2.0, 0.0,                  # ep 4, split at the termination
                4.0, 0.0]
    assert np.allclose(traj.values, expected)


def test_observations_drop_the_final_next_observation(hand_ds):
    traj = build_trajectories(hand_ds, GAMMA, None)
    assert traj.observations.dtype == np.float32 and traj.observations.shape == (13, 2)
    # Episode 1 has 4 stored observations (t=0..3); only t=0..2 pair with actions.
    assert traj.observations[1:4, 0].tolist() == [10.0, 11.0, 12.0]
    assert np.allclose(traj.actions[1:4, 0], [0.0, 0.1, 0.2])
    joined = traj.joined()
    assert joined.shape == (13, traj.transition_dim) == (13, 2 + 1 + 2)
    assert np.array_equal(joined[:, 3], traj.rewards) and np.array_equal(joined[:, 4], traj.values)


def test_termination_penalty_replaces_the_reward_of_terminations_only(hand_ds):
    plain = build_trajectories(hand_ds, GAMMA, None)
    pen = build_trajectories(hand_ds, GAMMA, -10.0)
    assert np.allclose(pen.rewards, np.where(plain.terminals, -10.0, plain.rewards))
    # The penalty flows into the values of the steps before it.
    assert np.allclose(pen.values[4:8], [1 + 0.5 - 0.25 * 10, 1 - 0.5 * 10, -10.0, 0.0])
    assert np.allclose(pen.values[9:11], [-10.0, 0.0])


def test_values_match_the_recursion_on_a_long_episode():
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=5000)
    values = discounted_values(rewards, np.full(5000, 4999), 0.999)
    ref = np.zeros(5000)
    for t in range(4998, -1, -1):
        ref[t] = rewards[t + 1] + 0.999 * ref[t + 1]
    assert np.allclose(values, ref)


def test_nan_reward_names_the_episode():
    episodes = [dict(rewards=[1.0, 2.0]), dict(rewards=[1.0, np.nan, 3.0])]
    ds = _make_dataset("test/hand/nan-v0", episodes)
    with pytest.raises(DataError, match=r"^episode 1: rewards contain NaN$"):
        build_trajectories(ds, GAMMA, None)


def _fake_ds(*episodes):
    return SimpleNamespace(iterate_episodes=lambda: iter(episodes))


def _fake_episode(ep_id, steps, obs_rows=None, obs_dim=2):
    return SimpleNamespace(
        id=ep_id,
        observations=np.zeros((steps + 1 if obs_rows is None else obs_rows, obs_dim)),
        actions=np.zeros((steps, 1)),
        rewards=np.zeros(steps),
        terminations=np.zeros(steps, bool),
        truncations=np.zeros(steps, bool),
    )


def test_malformed_episodes_raise_data_error_naming_the_episode():
    with pytest.raises(DataError, match="^episode 4: has no steps$"):
        build_trajectories(_fake_ds(_fake_episode(4, 0)), GAMMA, None)
    with pytest.raises(DataError, match="^episode 2: 3 observations for 3 steps"):
        build_trajectories(_fake_ds(_fake_episode(2, 3, obs_rows=3)), GAMMA, None)
    with pytest.raises(DataError, match="^episode 1: observation/action sizes"):
        build_trajectories(_fake_ds(_fake_episode(0, 2), _fake_episode(1, 2, obs_dim=3)), GAMMA, None)
    inf_obs = _fake_episode(7, 2)
    inf_obs.observations[0, 0] = np.inf
    with pytest.raises(DataError, match="^episode 7: observations contain inf$"):
        build_trajectories(_fake_ds(inf_obs), GAMMA, None)
    with pytest.raises(DataError, match="no episodes"):
        build_trajectories(_fake_ds(), GAMMA, None)


# --- token windows -----------------------------------------------------------


def _windows(hand_ds, seq_len=3, stop_id=None, max_path_length=1000):
    traj = build_trajectories(hand_ds, GAMMA, None)
    disc = Discretizer.fit(traj.joined(), 8, "uniform")
    tokens = tokenize(traj, disc)
    windows = TokenWindows(tokens, traj.episode_starts, traj.episode_lengths, seq_len, stop_id, max_path_length)
    return traj, tokens, windows


def original_items(tokens, starts, lengths, seq_len, N, max_path_length):
    """The tests' transcription of the original TT's DiscretizedDataset (datasets/
    sequence.py): paths padded with zeros past max_path_length + seq_len - 1 and flagged
    as terminated; indices (path, i, i + seq_len) for i in range(length - 1); an item
    replaces terminated positions by N, masks positions whose index in the path exceeds
    max_path_length - 1, flattens, and returns (X, Y, mask) = (flat[:-1], flat[1:],
    mask[:-1]). (The original's paths never exceed max_path_length; here they may, to
    put the path mask inside short episodes, so the padding covers the longer of both.)"""
    T = tokens.shape[1]
    items = []
    for start, length in zip(starts, lengths):
        size = max(max_path_length, length) + seq_len - 1
        padded = np.zeros((size, T), dtype=np.int64)
        padded[:length] = tokens[start : start + length]
        terminated = np.ones(size, dtype=bool)
        terminated[:length] = False
        for i in range(length - 1):
            joined = padded[i : i + seq_len].copy()
            joined[terminated[i : i + seq_len]] = N
            traj_inds = np.arange(i, i + seq_len)
            mask = np.ones(joined.shape, dtype=bool)
            mask[traj_inds > max_path_length - 1] = False
            flat, mflat = joined.reshape(-1), mask.reshape(-1)
            items.append((flat[:-1], flat[1:], mflat[:-1]))
    return items


def test_legacy_windows_one_per_transition_with_shifted_targets(hand_ds):
    traj, tokens, windows = _windows(hand_ds)
    T = traj.transition_dim
    assert tokens.shape == (13, T) and tokens.dtype == torch.int64
    assert len(windows) == 13
    x, y, mask = windows.batch(torch.arange(13))
    assert x.shape == y.shape == mask.shape == (13, 3 * T - 1)
    assert torch.equal(y[:, :-1], x[:, 1:])
    # Window 1 starts episode 1 (3 steps): all real data.
    assert torch.equal(x[1], tokens[1:4].reshape(-1)[:-1])
    assert torch.equal(y[1], tokens[1:4].reshape(-1)[1:])
    assert mask[1].eq(1).all()


def test_legacy_mask_is_zero_past_the_episode_end(hand_ds):
    traj, tokens, windows = _windows(hand_ds)
    T = traj.transition_dim
    x, y, mask = windows.batch(torch.tensor([2, 0]))
    # Window 2: transitions 2 and 3 end episode 1; the third slot is padding.
    assert torch.equal(x[0, : 2 * T], tokens[2:4].reshape(-1))
    assert mask[0].tolist() == [1.0] * (2 * T - 1) + [0.0] * T
    # Window 0: a one-step episode, only its own tokens are targets.
    assert mask[1].tolist() == [1.0] * (T - 1) + [0.0] * (2 * T)
    assert (x >= 0).all() and (x < 8).all()


@pytest.mark.parametrize("seq_len, max_path_length", [(3, 1000), (2, 1000), (4, 3), (3, 2), (1, 1000)])
def test_stop_token_windows_equal_the_originals_items(hand_ds, seq_len, max_path_length):
    """Window starts, stop tokens after every end and the input-aligned path mask, item for
    item, against the transcription of the original's dataset (max_path_length small
    enough to cut into the episodes)."""
    traj, tokens, windows = _windows(hand_ds, seq_len, stop_id=8, max_path_length=max_path_length)
    expected = original_items(tokens.numpy(), traj.episode_starts, traj.episode_lengths, seq_len, 8,
                              max_path_length)
    assert len(windows) == len(expected) == 13 - 6  # range(length - 1) of each of the 6 episodes
    x, y, mask = windows.batch(torch.arange(len(windows)))
    for w, (ex, ey, em) in enumerate(expected):
        assert x[w].tolist() == ex.tolist(), w
        assert y[w].tolist() == ey.tolist(), w
        assert mask[w].tolist() == em.astype(float).tolist(), w


def test_after_an_end_every_position_is_the_stop_token_and_is_trained(hand_ds):
    traj, tokens, windows = _windows(hand_ds, 3, stop_id=8)
    T = traj.transition_dim
    # the first window of episode 2 (4 steps, transitions 4..7) starting at its third step
    w = int((windows.window_starts == 6).nonzero())
    x, y, mask = windows.batch(torch.tensor([w]))
    assert x[0, : 2 * T].tolist() == tokens[6:8].reshape(-1).tolist()
    assert x[0, 2 * T :].eq(8).all() and y[0, 2 * T - 1 :].eq(8).all()
    assert mask.eq(1).all()
    # no window starts at an episode's last step, so one-step episodes give none
    assert not set(windows.window_starts.tolist()) & {0, 3, 7, 8, 10, 12}
    assert windows.real_transitions()[w] == 2


def test_windows_move_to_another_device(hand_ds):
    for stop_id in (None, 8):
        _, _, windows = _windows(hand_ds, stop_id=stop_id)
        moved = windows.to("cpu")
        for a, b in zip(moved.batch(torch.arange(5)), windows.batch(torch.arange(5))):
            assert torch.equal(a, b)


# --- token cache -------------------------------------------------------------


def test_token_cache_hits_on_second_load(hand_ds, tmp_path):
    cfg = DatasetConfig(id=HAND_ID, num_bins=8, seq_len=2, discount=GAMMA)
    traj1, disc1, tok1, hit1 = load_or_build_tokens(HAND_ID, hand_ds, cfg, tmp_path / "c")
    traj2, disc2, tok2, hit2 = load_or_build_tokens(HAND_ID, hand_ds, cfg, tmp_path / "c")
    assert (hit1, hit2) == (False, True)
    assert torch.equal(tok1, tok2) and tok2.dtype == torch.int64
    assert np.array_equal(disc1.boundaries, disc2.boundaries)
    assert np.array_equal(traj1.values, traj2.values)
    assert traj2.episode_lengths.tolist() == traj1.episode_lengths.tolist()


@pytest.mark.parametrize("change", [
    dict(num_bins=9), dict(strategy="quantile", num_bins=4), dict(discount=0.9), dict(termination_penalty=-1.0),
])
def test_token_cache_invalidated_when_settings_change(hand_ds, tmp_path, change):
    base = dict(id=HAND_ID, num_bins=8, discount=GAMMA)
    load_or_build_tokens(HAND_ID, hand_ds, DatasetConfig(**base), tmp_path)
    *_, hit = load_or_build_tokens(HAND_ID, hand_ds, DatasetConfig(**{**base, **change}), tmp_path)
    assert not hit


def test_token_cache_invalidated_when_data_changes(hand_ds, tmp_path):
    cfg = DatasetConfig(id=HAND_ID, num_bins=8, discount=GAMMA)
    load_or_build_tokens(HAND_ID, hand_ds, cfg, tmp_path)
    hand_ds.update_dataset_from_buffer([_episode([1.0, 1.0])])
    traj, _, _, hit = load_or_build_tokens(HAND_ID, hand_ds, cfg, tmp_path)
    assert not hit and traj.num_transitions == 15


def test_corrupt_token_cache_is_rebuilt(hand_ds, tmp_path):
    cfg = DatasetConfig(id=HAND_ID, num_bins=8, discount=GAMMA)
    _, _, good, _ = load_or_build_tokens(HAND_ID, hand_ds, cfg, tmp_path)
    (cache_file,) = tmp_path.glob("*.npz")
    cache_file.write_bytes(b"not a zip file")
    _, _, rebuilt, hit = load_or_build_tokens(HAND_ID, hand_ds, cfg, tmp_path)
    assert not hit and torch.equal(rebuilt, good)
    *_, hit = load_or_build_tokens(HAND_ID, hand_ds, cfg, tmp_path)
    assert hit
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temp files


def test_default_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TT_CACHE_DIR", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"


# --- Minari I/O --------------------------------------------------------------


def test_load_missing_dataset_without_download_names_the_id():
    with pytest.raises(DataError, match="'test/none/here-v0' is not available locally") as err:
        load_dataset("test/none/here-v0", download=False)
    assert "tt-tui collect" in str(err.value) and "\n" not in str(err.value)


def test_failed_download_becomes_one_line_data_error(monkeypatch):
    def offline(dataset_id):
        raise ConnectionError("network unreachable\nlong traceback text")

    monkeypatch.setattr(minari_io, "_download", offline)
    with pytest.raises(DataError, match=r"could not be downloaded \(network unreachable\)") as err:
        load_dataset("test/none/here-v0")
    assert "\n" not in str(err.value)


def test_hung_download_is_cut_off(monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(minari_io, "_download", lambda dataset_id: release.wait(10))
    monkeypatch.setattr(minari_io, "DOWNLOAD_TIMEOUT_S", 0.2)
    try:
        with pytest.raises(DataError, match="timed out"):
            load_dataset("test/none/here-v0")
    finally:
        release.set()


@pytest.mark.parametrize("bad_id", ["", "no version", "a/b/c"])
def test_invalid_dataset_id_is_a_data_error(bad_id):
    with pytest.raises(DataError, match="invalid dataset id"):
        load_dataset(bad_id)


def test_dataset_info_reads_counts_and_mean_return(hand_ds):
    info = dataset_info(load_dataset(HAND_ID, download=False))
    assert (info.id, info.env_id, info.episodes, info.steps) == (HAND_ID, None, 5, 13)
    assert info.mean_return == pytest.approx((5 + 6 + 4 + 7 + 10) / 5)
    assert info.ref_min_score is None and info.ref_max_score is None


def test_collect_real_env_then_load_and_list(minari_root):
    info = collect_dataset("Hopper-v5", "test/hopper/random-v0", 300, seed=3, max_episode_steps=40)
    assert (info.env_id, info.steps) == ("Hopper-v5", 300)
    ds = load_dataset("test/hopper/random-v0", download=False)
    lengths = [len(ep) for ep in ds.iterate_episodes()]
    assert sum(lengths) == 300 and max(lengths) <= 40
    last = list(ds.iterate_episodes())[-1]
    assert last.terminations[-1] or last.truncations[-1]  # the partial episode is closed
    assert [i.id for i in list_datasets()] == ["test/hopper/random-v0"]
    traj = build_trajectories(ds, 0.99, None)
    assert (traj.observation_dim, traj.action_dim, traj.num_transitions) == (11, 3, 300)
    with pytest.raises(DataError, match="already exists"):
        collect_dataset("Hopper-v5", "test/hopper/random-v0", 10)


def test_collect_same_seed_is_reproducible():
    a = collect_dataset("Pendulum-v1", "test/pend/a-v0", 50, seed=1)
    b = collect_dataset("Pendulum-v1", "test/pend/b-v0", 50, seed=1)
    assert a.mean_return == b.mean_return


def test_collect_rejects_unknown_env_and_policy(minari_root):
    with pytest.raises(ConfigError, match="cannot make environment 'NoSuchEnv-v0'"):
        collect_dataset("NoSuchEnv-v0", "test/none/env-v0", 10)
    with pytest.raises(ConfigError, match="policy"):
        collect_dataset("Hopper-v5", "test/none/env-v0", 10, policy="expert")
    assert not (minari_root / "test" / "none" / "env-v0").exists()


def test_ensure_dataset_collects_once_when_missing(monkeypatch):
    cfg = DatasetConfig(id="test/pend/auto-v0", collect=CollectConfig(env_id="Pendulum-v1", steps=60))
    ds = ensure_dataset(cfg)
    assert ds.total_steps == 60
    monkeypatch.setattr(minari_io, "collect_dataset", lambda *a, **k: pytest.fail("collected twice"))
    assert ensure_dataset(cfg).total_steps == 60


def test_finite_rewards_beyond_the_float32_range_name_the_episode():
    """Finite in the float64 file, inf once training casts to float32."""
    huge = _fake_episode(3, 2)
    huge.rewards = np.array([1.0, 1e300])
    with pytest.raises(DataError, match=r"^episode 3: rewards exceed the float32 range"):
        build_trajectories(_fake_ds(huge), GAMMA, None)
