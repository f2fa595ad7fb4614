"""Behaviour policies and the datasets made from them: a real (tiny) Stable-Baselines3 SAC
run, collection from its policy zip, the D4RL-style medium / medium-replay / expert cut
with reference scores, and policy files that must never run code."""

import base64
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tt_core.data.behaviour import REPLAY, BehaviourRun, SavedPolicy, resume_behaviour, train_behaviour
from tt_core.data.behaviour_datasets import make_behaviour_datasets, medium_policy, replay_episodes
from tt_core.data.minari_io import collect_dataset, load_dataset
from tt_core.data.sb3_policy import load_sb3_policy
from tt_core.errors import ConfigError, DataError, TTError

ONE_WORKER = pytest.mark.xdist_group("behaviour")
ENV = "InvertedPendulum-v5"  # SAC beats a random policy within 1000 steps


@pytest.fixture(scope="module")
def sac_run(tmp_path_factory) -> Path:
    """A real SAC run (small networks): 1000 steps, learning from step 200, a policy saved every 250."""
    out = tmp_path_factory.mktemp("behaviour") / "pendulum"
    train_behaviour(ENV, out, steps=1000, seed=0, save_every=250, eval_episodes=1, learning_starts=200,
                    batch_size=64, net_arch=(64, 64))
    return out


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def tt(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "tt_tui.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@ONE_WORKER
def test_a_behaviour_run_saves_each_policy_with_its_measured_return_and_the_whole_replay(sac_run):
    run = BehaviourRun.load(sac_run)
    assert [p.step for p in run.policies] == [250, 500, 750, 1000] and run.finished
    assert all((sac_run / p.path).is_file() and np.isfinite(p.mean_return) for p in run.policies)
    with np.load(sac_run / REPLAY) as z:
        assert z["observations"].shape == (1000, 4) and z["actions"].shape == (1000, 1)
        ends = z["terminations"] | z["truncations"]
        assert z["terminations"].any() and not (z["terminations"] & z["truncations"]).any()
        # within an episode each transition starts where the last one ended
        inside = ~ends[:-1]
        np.testing.assert_allclose(z["next_observations"][:-1][inside], z["observations"][1:][inside])
        assert np.isfinite(z["rewards"]).all() and (np.abs(z["actions"]) <= 3.0).all()


@ONE_WORKER
def test_a_behaviour_run_leaves_no_logger_folders_in_the_temp_dir(tmp_path, monkeypatch):
    import tempfile

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # where SB3's default logger makes SB3-<date>/
    out = tmp_path / "run"
    train_behaviour(ENV, out, steps=120, seed=0, save_every=60, eval_episodes=1, learning_starts=50,
                    batch_size=32, net_arch=(16,))
    resume_behaviour(out, steps=180)
    assert [p.name for p in tmp.iterdir() if p.name.startswith("SB3-")] == []


@ONE_WORKER
def test_a_resumed_run_continues_from_its_newest_policy_with_its_replay(sac_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(sac_run, copy)
    with np.load(sac_run / REPLAY) as z:
        before = {k: z[k] for k in z.files}
    run = resume_behaviour(copy, steps=1250)
    assert [p.step for p in run.policies] == [250, 500, 750, 1000, 1250] and run.finished
    assert run.replay_steps == 1250 and run.steps_budget == 1250
    with np.load(copy / REPLAY) as z:
        for key, value in before.items():  # the first 1000 transitions are kept as they were...
            expected = value.copy()
            if key == "truncations":  # ...but the episode running at the save ended there
                expected[-1] = not before["terminations"][-1]
            np.testing.assert_allclose(z[key][:1000], expected, atol=1e-6, err_msg=key)
    with pytest.raises(DataError, match="already at step 1250"):
        resume_behaviour(copy, steps=1000)


@ONE_WORKER
def test_collecting_from_an_sb3_zip_records_the_policys_own_actions(sac_run, minari_root):
    zip_path = sac_run / "policies" / "step_1000.zip"
    collect_dataset(ENV, "test/pend/sac-v0", 150, policy=str(zip_path), seed=4, deterministic=True)
    episode = next(load_dataset("test/pend/sac-v0", download=False).iterate_episodes())
    from stable_baselines3 import SAC

    reference = SAC.load(zip_path, device="cpu")  # SB3's own loader (trusted: made by this test)
    expected = reference.predict(episode.observations[:-1], deterministic=True)[0]
    np.testing.assert_allclose(episode.actions, expected, atol=1e-6)


@ONE_WORKER
def test_the_datasets_cut_from_a_run_follow_d4rl_and_carry_reference_scores(sac_run, minari_root):
    made = make_behaviour_datasets(sac_run, "pend", steps=300, ref_episodes=2, seed=1)
    run = BehaviourRun.load(sac_run)
    medium = medium_policy(run)
    record = json.loads((sac_run / "datasets.json").read_text())
    assert record["medium_step"] == medium.step and record["best_step"] == run.best().step
    for info in made:
        assert (info.ref_min_score, info.ref_max_score) == (record["ref_min_score"], record["ref_max_score"])
    by_id = {info.id: info for info in made}
    assert by_id["local/pend/medium-v0"].steps == by_id["local/pend/expert-v0"].steps == 300
    # medium-replay: exactly the run's first `medium.step` transitions, in order
    replay = load_dataset("local/pend/medium-replay-v0", download=False)
    actions = np.concatenate([ep.actions for ep in replay.iterate_episodes()])
    rewards = np.concatenate([ep.rewards for ep in replay.iterate_episodes()])
    with np.load(sac_run / REPLAY) as z:
        np.testing.assert_allclose(actions, z["actions"][: medium.step])
        np.testing.assert_allclose(rewards, z["rewards"][: medium.step])
    # the evaluation's normalized score reads them: 0 for random, 100 for the best policy
    from tt_core.plan.rollout import normalized_score

    meta = {"ref_min_score": record["ref_min_score"], "ref_max_score": record["ref_max_score"]}
    assert normalized_score(record["ref_max_score"], meta) == pytest.approx(100.0)
    assert normalized_score(record["ref_min_score"], meta) == pytest.approx(0.0)
    # a second cut into ids that exist is refused before anything is measured or written
    with pytest.raises(DataError, match="already exists"):
        make_behaviour_datasets(sac_run, "pend", steps=300, which=["expert"],
                                notify=lambda line: pytest.fail(f"measured first: {line}"))
    assert json.loads((sac_run / "datasets.json").read_text()) == record


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=30))
def test_the_medium_policy_is_the_saved_one_nearest_a_third_of_the_best(returns):
    run = BehaviourRun("X-v0", "SAC", 0, 1000, policies=[
        SavedPolicy(100 * (i + 1), f"p{i}.zip", r, 0.0, 1) for i, r in enumerate(returns)])
    chosen = medium_policy(run)
    target = max(returns) / 3
    assert abs(chosen.mean_return - target) == min(abs(r - target) for r in returns)
    assert chosen.step == min(p.step for p in run.policies
                              if abs(p.mean_return - target) == abs(chosen.mean_return - target))


def test_replay_episodes_close_the_episode_running_at_the_cut(tmp_path):
    n = 10
    obs = np.arange(n, dtype=np.float32)[:, None]
    term = np.zeros(n, bool)
    term[3] = True
    np.savez(tmp_path / "replay.npz", observations=obs, next_observations=obs + 0.5, actions=obs,
             rewards=np.ones(n), terminations=term, truncations=np.zeros(n, bool))
    episodes = replay_episodes(tmp_path / "replay.npz", 7)
    assert [len(e.rewards) for e in episodes] == [4, 3]
    assert episodes[0].terminations[-1] and not episodes[0].truncations[-1]
    assert episodes[1].truncations[-1] and not episodes[1].terminations.any()
    np.testing.assert_array_equal(episodes[1].observations[:, 0], [4, 5, 6, 6.5])


# ------------------------------------------------------------ policy files are data, not code

class _Payload:
    """Unpickling this would create the file it names."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _rewrite(src: Path, dst: Path, data=None, weights: bytes | None = None) -> None:
    """A copy of the zip at `src` with its `data` entry (bytes, or a function of the
    parsed JSON returning JSON text) and/or its `policy.pth` replaced."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            payload = zin.read(item.filename)
            if item.filename == "data" and data is not None:
                payload = data(json.loads(payload)).encode() if callable(data) else data
            if item.filename == "policy.pth" and weights is not None:
                payload = weights
            zout.writestr(item, payload)


@ONE_WORKER
def test_a_policy_zip_runs_none_of_its_code_and_imports_none_of_its_modules(sac_run, tmp_path, monkeypatch):
    """Pickles in every item SB3 would unpickle, and a plain `env` naming a module that
    gymnasium would import: loading and acting create neither marker."""
    pickled, imported = tmp_path / "unpickled", tmp_path / "imported"
    (tmp_path / "tt_planted_module.py").write_text(f"open({str(imported)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    evil = base64.b64encode(pickle.dumps(_Payload(str(pickled)))).decode()

    def plant(data: dict) -> str:
        for key in ("policy_class", "lr_schedule", "observation_space", "action_space", "replay_buffer_class"):
            data[key][":serialized:"] = evil
        data["something_new"] = {":type:": "<class 'x'>", ":serialized:": evil}
        data["env"] = "tt_planted_module:Planted-v0"
        return json.dumps(data)

    hostile = tmp_path / "hostile.zip"
    _rewrite(sac_run / "policies" / "step_1000.zip", hostile, plant)
    env = gym.make(ENV)
    act = load_sb3_policy(hostile, env, deterministic=True)
    assert act(env.reset(seed=0)[0]).shape == (1,)
    assert not pickled.exists() and not imported.exists()


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                     max_leaves=20)
_KEYS = ["policy_class", "observation_space", "action_space", "policy_kwargs", "use_sde", "env",
         "device", "buffer_size", "net_arch"]


@ONE_WORKER
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.one_of(
    st.binary(max_size=200).map(lambda b: ("data", b)),
    _json.map(lambda v: ("data", json.dumps(v).encode())),
    st.just(("data", b"[" * 200_000)),
    st.tuples(st.sampled_from(_KEYS), _json).map(lambda kv: ("key", kv)),
    st.tuples(st.sampled_from(["__module__", "__init__", "_shape"]), _json).map(lambda kv: ("inner", kv)),
    st.binary(max_size=300).map(lambda b: ("weights", b)),
))
def test_a_broken_policy_zip_is_one_clear_error(sac_run, tmp_path, case):
    """Whatever the zip holds (bytes or any JSON as its data, any value in a key SB3
    reads, garbage weights), loading ends in a ConfigError or DataError of one line, or
    in a policy that acts: never another exception."""
    what, value = case
    src, broken = sac_run / "policies" / "step_1000.zip", tmp_path / "broken.zip"
    if what == "data":
        _rewrite(src, broken, data=value)
    elif what == "weights":
        _rewrite(src, broken, weights=value)
    elif what == "key":
        _rewrite(src, broken, data=lambda d: json.dumps({**d, value[0]: value[1]}))
    else:  # a field inside the policy class's or a space's entry
        def edit(d: dict) -> str:
            target = "policy_class" if value[0] != "_shape" else "observation_space"
            d[target][value[0]] = value[1]
            return json.dumps(d)
        _rewrite(src, broken, data=edit)
    env = gym.make(ENV)
    try:
        act = load_sb3_policy(broken, env, deterministic=True)
    except (ConfigError, DataError) as exc:
        assert "\n" not in str(exc)
    else:
        assert act(env.reset(seed=0)[0]).shape == (1,)


def test_collect_cli_names_a_bad_policy_in_one_line(tmp_path):
    bad = tt("collect", ENV, "--dataset-id", "test/pend/x-v0", "--steps", "10", "--policy", "expert")
    assert bad.returncode == 2 and "dataset.collect.policy" in bad.stderr
    (tmp_path / "garbage.zip").write_bytes(b"not a zip")
    garbage = tt("collect", ENV, "--dataset-id", "test/pend/x-v0", "--steps", "10", "--policy",
                 tmp_path / "garbage.zip")
    assert garbage.returncode == 3 and "not a readable Stable-Baselines3 zip" in garbage.stderr
    assert "Traceback" not in bad.stderr + garbage.stderr
    neither = tt("behaviour", "train", "--steps", "10")
    assert neither.returncode == 2 and "--resume RUN_DIR alone" in neither.stderr
    not_a_run = tt("behaviour", "train", "--resume", tmp_path, "--steps", "10")
    assert not_a_run.returncode == 3 and "behaviour.json" in not_a_run.stderr


def test_a_policy_for_another_env_is_refused_naming_both_shapes(tmp_path, minari_root):
    from stable_baselines3 import SAC

    path = tmp_path / "pend.zip"
    SAC("MlpPolicy", gym.make("Pendulum-v1"), device="cpu").save(path)
    with pytest.raises(ConfigError, match=r"shape \(3,\), the environment's \(11,\)"):
        collect_dataset("Hopper-v5", "test/hop/x-v0", 10, policy=str(path))
    assert isinstance(ConfigError("x"), TTError)
