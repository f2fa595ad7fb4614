"""The seed GPT's state dict on TrajectoryGPT's names, and its residual path (two eras)."""

from __future__ import annotations

from pathlib import Path

import torch

from tt_core.errors import CheckpointError
from tt_core.model.gpt import Block, GPTConfig, TrajectoryGPT, attention_mask
from tt_core.pretrained.catalog import git_blob_id, published_models
from tt_core.pretrained.ftt.config import FttModelSpec

# dataset_meta["ftt_block"]: which residual path the seed weights were trained with;
# dataset_meta["ftt_block_note"]: one line saying how it was chosen.
FTT_BLOCK_KEY = "ftt_block"
FTT_BLOCK_NOTE_KEY = "ftt_block_note"
NORM_RESIDUAL = "norm-residual"  # the seed's block before its fix (upstream issue #3)
PRE_NORM = "pre-norm"  # upstream after its fix (commit 213e58d), and tt-tui's own block
BLOCK_KINDS = (NORM_RESIDUAL, PRE_NORM)

# Git blob id -> (model, block kind) of upstream's published pretrained/<env>/model_last.pt
# files, both eras: read from the manifests in this repository's pretrained/ folder.
PUBLISHED_MODELS: dict[str, tuple[str, str]] = published_models()


def detect_block(model_path: Path) -> tuple[str, str]:
    """(block kind, one line saying why) for a seed model file, from its git blob id."""
    blob = git_blob_id(model_path)
    known = PUBLISHED_MODELS.get(blob)
    if known is not None:
        env, kind = known
        era = "before" if kind == NORM_RESIDUAL else "after"
        return kind, (
            f"{model_path.name} is upstream's published {env} model from {era} its block fix "
            f"(blob {blob[:7]}): planning with the {kind} block"
        )
    if not PUBLISHED_MODELS:  # an install without this clone's pretrained/ manifests
        return PRE_NORM, (
            f"cannot tell the era of {model_path.name} (blob {blob[:7]}): the pretrained/ "
            f"manifests are not installed; planning with the {PRE_NORM} block; pass --ftt-block "
            f"{NORM_RESIDUAL} for a model trained before upstream's fix"
        )
    return PRE_NORM, (
        f"{model_path.name} is not one of upstream's published files (blob {blob[:7]}): planning "
        f"with the {PRE_NORM} block of its current code; pass --ftt-block {NORM_RESIDUAL} for "
        "a model trained before its fix"
    )


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except Exception as exc:  # damaged zip / refused pickle content
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise CheckpointError(
            f"{path}: unreadable, corrupt or not a state dict ({first})"
        ) from None
    if isinstance(state, dict) and not all(isinstance(v, torch.Tensor) for v in state.values()):
        state = None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return state


def map_ftt_state(
    seed: dict[str, torch.Tensor], spec: FttModelSpec, gpt: GPTConfig, where: str
) -> dict[str, torch.Tensor]:
    """Rename and reshape the seed GPT's state dict onto TrajectoryGPT's names."""
    T, N, E, L = spec.transition_dim, spec.vocab_size, spec.embedding_dim, spec.seq_len_tokens
    used: set[str] = set()

    def take(key: str, *shapes: tuple[int, ...]) -> torch.Tensor:
        if key not in seed:
            raise CheckpointError(f"{where}: missing key '{key}'")
        value = seed[key]
        if tuple(value.shape) not in shapes:
            raise CheckpointError(
                f"{where}: '{key}' has shape {tuple(value.shape)}, expected "
                f"{' or '.join(str(s) for s in shapes)} from config.yaml"
            )
        used.add(key)
        return value.detach().to(torch.float32)

    out: dict[str, torch.Tensor] = {}
    tok = take("tok_emb.weight", (T * N, E))
    out["tok_emb.weight"] = torch.cat([tok, tok.new_zeros(1, E)])  # our spare row, never read
    out["pos_emb"] = take("pos_emb", (1, L, E), (L, E)).reshape(L, E)[: gpt.block_size]
    for i in range(spec.num_layers):
        prefix = f"blocks.{i}."  # the same prefix in both
        for ours, theirs, shape in _BLOCK_NAMES:
            out[prefix + ours] = take(prefix + theirs, tuple(E * n for n in shape))
        mask_key = prefix + "attn_mask"
        if mask_key in seed:  # a persistent buffer in the seed; not a weight of ours
            used.add(mask_key)
            _check_mask(seed[mask_key], L, T, f"{where}: '{mask_key}'")
    out["ln_f.weight"] = take("norm.weight", (E,))
    out["ln_f.bias"] = take("norm.bias", (E,))
    out["head"] = take("head.weight", (T, N, E))
    extra = sorted(set(seed) - used)
    if extra:
        raise CheckpointError(
            f"{where}: unexpected key '{extra[0]}' (not part of the seed GPT this importer knows)"
        )
    return _as_model_state(out, gpt, where)


# A block's weights: (our name, the seed's name, shape in multiples of the width E).
_BLOCK_NAMES = (
    ("ln1.weight", "norm1.weight", (1,)), ("ln1.bias", "norm1.bias", (1,)),
    ("ln2.weight", "norm2.weight", (1,)), ("ln2.bias", "norm2.bias", (1,)),
    ("attn.c_attn.weight", "attention.in_proj_weight", (3, 1)),
    ("attn.c_attn.bias", "attention.in_proj_bias", (3,)),
    ("attn.c_proj.weight", "attention.out_proj.weight", (1, 1)),
    ("attn.c_proj.bias", "attention.out_proj.bias", (1,)),
    ("mlp.0.weight", "mlp.0.weight", (4, 1)), ("mlp.0.bias", "mlp.0.bias", (4,)),
    ("mlp.2.weight", "mlp.2.weight", (1, 4)), ("mlp.2.bias", "mlp.2.bias", (1,)),
)


def _check_mask(mask: torch.Tensor, L: int, T: int, what: str) -> None:
    """The seed's attention mask must be ours, negated (its convention: True = masked)."""
    if tuple(mask.shape) != (L, L) or not torch.equal(mask.to(torch.bool), ~attention_mask(L, T)):
        raise CheckpointError(f"{what} is not the causal + value-column mask this importer maps "
                              "onto tt-tui's attention")


def _as_model_state(out: dict[str, torch.Tensor], gpt: GPTConfig, where: str) -> dict[str, torch.Tensor]:
    """`out` checked against the target model's own names and shapes (any drift in
    TrajectoryGPT shows here), in its key order."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in TrajectoryGPT(gpt).state_dict().items()}
    for key, shape in expected.items():
        if key not in out:
            raise CheckpointError(f"{where}: no seed weight maps onto '{key}'")
        if tuple(out[key].shape) != shape:
            raise CheckpointError(
                f"{where}: '{key}' maps to shape {tuple(out[key].shape)}, model needs {shape}"
            )
    return {k: out[k].contiguous().clone() for k in expected}


class NormResidualBlock(Block):
    """The seed snapshot's block: the residual stream is the *normalized* input,
    h = ln1(x); h = h + attn(h); h + mlp(ln2(h)). Same parameters as Block."""

    def forward(self, x, mask, cache=None):
        h = self.ln1(x)
        h = h + self.attn(h, mask, cache)
        return h + self.feed_forward(self.ln2(h))


def adapt_model(model: TrajectoryGPT, dataset_meta: dict) -> TrajectoryGPT:
    """Give `model` the residual path its seed weights were trained with (in place).

    A no-op for tt-tui runs and "pre-norm" seed checkpoints. Works before or after
    load_state_dict: the block classes share every parameter and buffer.
    """
    kind = dataset_meta.get(FTT_BLOCK_KEY)
    if kind == NORM_RESIDUAL:
        for block in model.blocks:
            if type(block) is Block:
                block.__class__ = NormResidualBlock
    elif kind not in (None, PRE_NORM):
        kinds = ", ".join(BLOCK_KINDS)
        raise CheckpointError(f"unknown {FTT_BLOCK_KEY} {kind!r}; expected one of {kinds}")
    return model
