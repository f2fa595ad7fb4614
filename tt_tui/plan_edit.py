"""Validation of live planning edits, before anything reaches the engine.

The bounds and checks are the config file's (tt_core.config.LIMITS and
apply_plan_update, which do not import torch), plus a memory check: a setting whose
KV cache would not fit in the memory available now is refused with the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tt_core.config import LIMITS, PlanConfig, Range, apply_plan_update
from tt_core.errors import ConfigError
from tt_core.model.cache_size import cascade_cache_bytes, kv_dtype
from tt_tui.resources import ModelDims, human_bytes

# The fields the controls panel edits, with their labels.
EDITABLE: dict[str, str] = {
    "beam_width": "width",
    "beam_steps": "steps",
    "beam_context": "context",
    "sample_expand": "expand",
}


def edit_bounds(key: str) -> tuple[int, int]:
    """The whole numbers plan.`key` may take (the config's own range)."""
    limit = LIMITS[f"plan.{key}"]
    assert isinstance(limit, Range) and not (limit.lo_open or limit.hi_open), key
    return int(limit.lo), int(limit.hi)


@dataclass(frozen=True)
class PlanEdit:
    params: dict[str, int] | None  # the changed values, None when refused
    error: str | None = None
    estimate_bytes: int | None = None


def check_plan_edit(
    texts: dict[str, str],
    current: PlanConfig,
    envs: int,
    dims: ModelDims | None,
    available: Callable[[], int | None],
    in_use: int | None = None,
    device: str = "cpu",
) -> PlanEdit:
    """Parse and validate the edited fields; `params` holds only the changed keys.
    `in_use`: bytes of the cache allocated now, as the engine reported it; `device`: the
    engine's (EvalStarted.device), which fixes the cache's dtype."""
    values: dict[str, int] = {}
    for key, text in texts.items():
        label = EDITABLE[key]
        text = text.strip()
        if not text:
            return PlanEdit(None, f"{label}: enter a whole number")
        try:
            value = int(text)
        except ValueError:
            return PlanEdit(None, f"{label}: {text!r} is not a whole number")
        limit = LIMITS[f"plan.{key}"]
        if value not in limit:
            return PlanEdit(None, f"{label}: {value} must be {limit}")
        values[key] = value
    try:
        merged = apply_plan_update(current, values)
    except ConfigError as exc:
        return PlanEdit(None, str(exc))
    estimate = None
    if dims is not None and dims.seq_len is not None and dims.action_dim is not None:
        estimate = cascade_cache_bytes(
            envs, merged.beam_width, merged.sample_expand, n_layers=dims.n_layers,
            embedding_dim=dims.embedding_dim, block_tokens=dims.seq_len * dims.transition_dim - 1,
            action_dim=dims.action_dim, dtype=kv_dtype(merged.dtype, device.partition(":")[0]),
        )
        in_use = in_use or 0
        free = available()
        # the cache in use now is already allocated: only the growth must fit
        if free is not None and estimate - in_use > free:
            return PlanEdit(
                None,
                f"refused: the KV cache would need ~{human_bytes(estimate)} "
                f"(+{human_bytes(estimate - in_use)}) for {envs} envs x width "
                f"{merged.beam_width} x expand {merged.sample_expand}; "
                f"only {human_bytes(free)} is available",
                estimate,
            )
    changed = {k: v for k, v in values.items() if getattr(current, k) != v}
    return PlanEdit(changed, None, estimate)
