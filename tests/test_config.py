"""Config files, dotted overrides and the one-line errors they produce."""

import os
from pathlib import Path

import pytest

from tt_core.config import dump_config, load_config
from tt_core.errors import ConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


SHIPPED = ["halfcheetah", "hopper", "walker2d", "quickstart", "hopper-local"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.dataset.num_bins >= 2


def test_env_configs_carry_the_papers_model_and_training_sizes():
    for env, width, steps in [("halfcheetah", 32, 5), ("hopper", 128, 15), ("walker2d", 128, 15)]:
        cfg = load_config(CONFIGS / f"{env}.yaml")
        assert cfg.dataset.id == f"mujoco/{env}/medium-v0"
        assert (cfg.dataset.num_bins, cfg.dataset.discount, cfg.dataset.seq_len) == (100, 0.99, 10)
        assert (cfg.model.embedding_dim, cfg.model.n_layers, cfg.model.n_heads) == (128, 4, 4)
        assert cfg.model.dropout == 0.1
        t = cfg.train
        assert (t.action_weight, t.reward_weight, t.value_weight) == (5, 1, 1)
        assert (t.lr, t.betas, t.weight_decay, t.grad_clip) == (6e-4, (0.9, 0.95), 0.1, 1.0)
        assert t.epochs is None and t.warmup_tokens is None
        p = cfg.plan
        assert (p.beam_width, p.beam_steps, p.beam_context, p.sample_expand) == (width, steps, 5, 2)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_use_the_originals_termination_penalty_which_is_also_the_code_default(name):
    from tt_core.config import DatasetConfig

    assert load_config(CONFIGS / f"{name}.yaml").dataset.termination_penalty == -100
    assert DatasetConfig().termination_penalty == -100  # config/offline.py's default


def test_dotted_overrides_follow_the_config_path():
    cfg = load_config(CONFIGS / "hopper.yaml", ["train.lr=3e-4", "plan.beam_width=64"])
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.plan.beam_width == 64


def test_override_can_set_an_optional_to_null_and_lists():
    cfg = load_config(None, ["plan.cdf_act=null", "train.betas=[0.8, 0.9]"])
    assert cfg.plan.cdf_act is None
    assert cfg.train.betas == (0.8, 0.9)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("plan.beam_width=0", "plan.beam_width: 0 must be in [1, 4096]"),
        ("train.lr=-1", "train.lr: -1.0 must be > 0"),
        ("dataset.seq_len=0", "dataset.seq_len: 0 must be >= 1 transition"),
        ("dataset.num_bins=1", "dataset.num_bins: 1 must be >= 2"),
        ("train.lr=fast", "train.lr: expected a number, got 'fast'"),
        ("train.batch_size=1.5", "train.batch_size: expected an integer"),
        ("train.nope=1", "unknown key 'train.nope'"),
        ("nope.x=1", "unknown key 'nope'"),
        ("dataset.strategy=median", "dataset.strategy: 'median' is not one of uniform, quantile"),
        ("model.n_heads=3", "model.n_heads: 3 must divide model.embedding_dim 128"),
        ("trainlr", "must look like section.key=value"),
    ],
)
def test_bad_override_names_the_key_and_the_command_line(override, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    message = str(err.value)
    assert fragment in message
    assert "\n" not in message
    if "=" in override:
        assert f"command line '{override}'" in message


def test_bad_value_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("plan:\n  beam_width: 0\n")
    with pytest.raises(ConfigError, match=r"plan.beam_width: 0 .*\(from .*bad.yaml\)"):
        load_config(path)


def test_unknown_key_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  layers: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'model.layers' \(from .*bad.yaml\)"):
        load_config(path)


def test_missing_and_malformed_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = load_config(CONFIGS / "quickstart.yaml", ["plan.beam_width=7"])
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_state_every_sampling_knob_with_the_originals_values(name):
    import yaml

    plan = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["plan"]
    knobs = {k: plan[k] for k in ("k_obs", "k_act", "k_reward", "cdf_obs", "cdf_act")}
    assert knobs == {"k_obs": 1, "k_act": None, "k_reward": 1, "cdf_obs": None, "cdf_act": 0.6}


def test_yaml_merge_keys_still_work_while_repeated_keys_are_refused(tmp_path):
    from tt_core.errors import ConfigError

    merged = tmp_path / "merged.yaml"
    merged.write_text("base: &b {embedding_dim: 32, n_layers: 2}\nmodel:\n  <<: *b\n  n_heads: 4\n")
    with pytest.raises(ConfigError, match="unknown key 'base'|base"):
        load_config(merged)  # the anchor's own section is not a config section ...
    merged.write_text("model: &b {embedding_dim: 32, n_layers: 2, n_heads: 4}\n")
    assert load_config(merged).model.embedding_dim == 32
    merged.write_text("model:\n  <<: {embedding_dim: 32, n_layers: 2}\n  n_heads: 4\n")
    assert load_config(merged).model.n_layers == 2  # ... but merging into a section works


def test_a_planning_patch_is_typed_checked_where_given_and_changes_only_its_keys():
    """The typed path of eval/record flags: values are checked against their field's type
    and limits when the patch is made (naming the flag), and applying it leaves the run's
    own config untouched."""
    from tt_core.config import Config, PlanningPatch

    run = Config()
    run.plan.beam_width, run.eval.episodes = 64, 7
    patch = PlanningPatch.checked({"plan.beam_width": 3, "plan.k_act": None, "eval.seed": 5},
                                  {"plan.beam_width": "--beam-width 3"})
    cfg = patch.apply(run)
    assert (cfg.plan.beam_width, cfg.plan.k_act, cfg.eval.seed, cfg.eval.episodes) == (3, None, 5, 7)
    assert run.plan.beam_width == 64 and cfg.train == run.train and cfg.model == run.model
    with pytest.raises(ConfigError, match=r"^plan.beam_width: 0 must be in \[1, 4096\] \(from --beam-width 0\)$"):
        PlanningPatch.checked({"plan.beam_width": 0}, {"plan.beam_width": "--beam-width 0"})
    with pytest.raises(ConfigError, match="plan.temperature: expected a number, got 'hot'"):
        PlanningPatch.checked({"plan.temperature": "hot"})
    with pytest.raises(ConfigError, match="unknown planning key 'train.lr'"):
        PlanningPatch.checked({"train.lr": 1.0})


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "too-large"])
def test_a_config_that_is_a_device_a_fifo_or_a_runaway_file_is_refused_without_reading_it(tmp_path, kind):
    """/dev/zero as a run's config.yaml once filled the machine's memory (#27)."""
    path = tmp_path / "c.yaml"
    if kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(b"#" * (5 << 20))
    with pytest.raises(ConfigError, match="not a regular file|over the 4 MiB"):
        load_config(path)
