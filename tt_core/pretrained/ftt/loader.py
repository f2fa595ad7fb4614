"""A seed checkpoint directory loaded as the LoadedRun a tt-tui run gives (see the
package docstring for what is mapped and why)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from tt_core.pretrained.ftt.config import FttEnv, FttModelSpec, Section, build_config, ftt_env, model_spec
from tt_core.pretrained.ftt.discretizer import discretizer_from_ftt
from tt_core.pretrained.ftt.unpickler import read_ftt_discretizer
from tt_core.pretrained.ftt.weights import (
    BLOCK_KINDS, FTT_BLOCK_KEY, FTT_BLOCK_NOTE_KEY, detect_block, load_state_dict, map_ftt_state,
)
from tt_core.errors import CheckpointError
from tt_core.model.gpt import GPTConfig
from tt_core.runs.checkpoint import LoadedRun, RunFiles, read_yaml_mapping
from tt_core.runs.ftt_layout import CONFIG_FILE, DISCRETIZER_FILE, MODEL_FILE, model_file

def load_ftt_checkpoint(path: Path, block: Optional[str] = None) -> LoadedRun:
    """Load a FTT-format directory as a LoadedRun (step 0, no trainer state).

    `block`: "norm-residual" for models trained before upstream's block fix, "pre-norm"
    for ones trained after it; None tells them apart by the model file's blob id
    (`detect_block`). Build the model with `adapt_model(TrajectoryGPT(...), meta)`.
    """
    path = Path(path)
    if block is not None and block not in BLOCK_KINDS:
        kinds = ", ".join(BLOCK_KINDS)
        raise CheckpointError(f"FTT block kind {block!r}: expected one of {kinds}")
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such FTT checkpoint directory")
    cfg_path = path / CONFIG_FILE
    data = read_yaml_mapping(cfg_path)
    spec = model_spec(data, cfg_path)
    env_name = Section(data, "dataset", cfg_path).get("env_name", str)
    env = _env_of(env_name, spec, cfg_path)

    disc_path = path / DISCRETIZER_FILE
    disc_state = read_ftt_discretizer(disc_path)
    disc = discretizer_from_ftt(disc_state, str(disc_path))
    if disc.dim != spec.transition_dim or disc.num_bins != spec.vocab_size:
        raise CheckpointError(
            f"{disc_path}: {disc.dim} dims x {disc.num_bins} bins, config.yaml says "
            f"{spec.transition_dim} x {spec.vocab_size}"
        )
    strategy = disc_state.get("strategy")
    cfg = build_config(data, spec, strategy if isinstance(strategy, str) else "uniform", cfg_path)

    model_path = model_file(path)
    if model_path is None:
        raise CheckpointError(f"{path / MODEL_FILE}: missing (nor any model_<epoch>.pt)")
    gpt = GPTConfig.from_config(cfg, spec.observation_dim, spec.action_dim)
    state = map_ftt_state(load_state_dict(model_path), spec, gpt, str(model_path))
    if block is None:
        block, note = detect_block(model_path)
    else:
        note = f"planning with the {block} block (--ftt-block)"

    meta = {
        "dataset_id": env_name,
        "env_id": env.env_id,
        "observation_dim": spec.observation_dim,
        "action_dim": spec.action_dim,
        "behaviour_mean_return": None,
        "ref_min_score": env.ref_min_score,
        "ref_max_score": env.ref_max_score,
        "source": "faster-trajectory-transformer",
        "ftt_weights": model_path.name,
        FTT_BLOCK_KEY: block,
        FTT_BLOCK_NOTE_KEY: note,
    }
    return LoadedRun(
        run=RunFiles(path), config=cfg, discretizer=disc, dataset_meta=meta, checkpoint=path,
        step=0, model_state=state, trainer_state=None,
    )


def _env_of(env_name: str, spec: FttModelSpec, cfg_path: Path) -> FttEnv:
    """The env the config's dataset name plays, with the model's dimensions."""
    try:
        env = ftt_env(env_name)
    except CheckpointError as exc:
        raise CheckpointError(f"{cfg_path}: {exc}") from None
    if (spec.observation_dim, spec.action_dim) != (env.observation_dim, env.action_dim):
        raise CheckpointError(
            f"{cfg_path}: observation/action dims {spec.observation_dim}/{spec.action_dim} do not "
            f"match {env_name} ({env.observation_dim}/{env.action_dim})"
        )
    return env
