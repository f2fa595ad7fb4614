"""A plain view of the planner's beam snapshot, tolerant of how it is spelled.

`PlanSnapshot.snapshot` is the planner's BeamSnapshot (a dataclass of per-step
arrays) or, from scripted demos, a dict with the same fields. This module reads
either into `BeamView` so the tree widget never touches numpy/torch types and keeps
working if the planner renames or adds a field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_NAMES = {
    "parents": ("parents", "parent", "parent_index", "parent_indices", "backpointers"),
    "rewards": ("rewards", "reward", "predicted_rewards", "reward_means"),
    "values": ("values", "value", "predicted_values", "value_means"),
    "actions": ("actions", "action", "predicted_actions"),
    "scores": ("scores", "score", "returns", "cumulative"),
    "chosen": ("chosen", "chosen_path", "path", "best_path", "best", "best_index", "chosen_index"),
}


def _get(obj: Any, key: str) -> Any:
    for name in _NAMES[key]:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _plain(value: Any) -> Any:
    """numpy arrays / tensors / tuples -> nested lists of Python numbers."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass
class BeamView:
    """Per planned step t, per kept beam j: parent (index into step t-1, -1 = root),
    predicted reward, value and action; `chosen[t]` is the beam on the executed plan."""

    parents: list[list[int]]
    rewards: list[list[float | None]]
    values: list[list[float | None]]
    actions: list[list[list[float] | None]]
    scores: list[list[float | None]]
    chosen: list[int]

    @property
    def steps(self) -> int:
        return len(self.parents)

    def width(self, t: int) -> int:
        return len(self.parents[t])


def _per_step(raw: Any, steps: int, widths: list[int], nested: bool = False) -> list[list[Any]]:
    out: list[list[Any]] = []
    for t in range(steps):
        row = raw[t] if raw is not None and t < len(raw) else None
        if row is None or not isinstance(row, list):
            out.append([None] * widths[t])
            continue
        cells = []
        for j in range(widths[t]):
            v = row[j] if j < len(row) else None
            if nested:
                cells.append([float(x) for x in v] if isinstance(v, list) else None)
            else:
                try:
                    cells.append(float(v) if v is not None else None)
                except (TypeError, ValueError):
                    cells.append(None)
        out.append(cells)
    return out


def read_snapshot(snapshot: Any) -> BeamView | None:
    """A BeamView, or None when the snapshot has no per-step parents to draw."""
    if snapshot is None:
        return None
    steps_attr = snapshot.get("steps") if isinstance(snapshot, dict) else getattr(snapshot, "steps", None)
    if isinstance(steps_attr, (list, tuple)) and steps_attr and not isinstance(steps_attr[0], (int, float)):
        # a list of per-step records: gather their fields into per-step arrays
        gathered = {k: [_plain(_get(s, k)) for s in steps_attr] for k in _NAMES if k != "chosen"}
        gathered["chosen"] = _plain(_get(snapshot, "chosen"))
        snapshot = gathered
    parents = _plain(_get(snapshot, "parents"))
    if not isinstance(parents, list) or not parents:
        return None
    if not isinstance(parents[0], list):  # a single step given flat
        parents = [parents]
    try:
        parents = [[int(p) for p in row] for row in parents]
    except (TypeError, ValueError):
        return None
    steps = len(parents)
    widths = [len(row) for row in parents]
    rewards = _per_step(_plain(_get(snapshot, "rewards")), steps, widths)
    values = _per_step(_plain(_get(snapshot, "values")), steps, widths)
    scores = _per_step(_plain(_get(snapshot, "scores")), steps, widths)
    actions = _per_step(_plain(_get(snapshot, "actions")), steps, widths, nested=True)
    chosen = _chosen_path(_plain(_get(snapshot, "chosen")), parents, scores, values)
    return BeamView(parents, rewards, values, actions, scores, chosen)


def _chosen_path(raw: Any, parents: list[list[int]], scores: list[list[Any]],
                 values: list[list[Any]]) -> list[int]:
    steps = len(parents)
    if isinstance(raw, list) and len(raw) == steps:
        try:
            return [int(j) for j in raw]
        except (TypeError, ValueError):
            pass
    if isinstance(raw, (int, float)):
        last = int(raw)
    else:  # not given: the best final beam by score, else by value, else beam 0
        final = scores[-1] if any(s is not None for s in scores[-1]) else values[-1]
        ranked = [(s, j) for j, s in enumerate(final) if s is not None]
        last = max(ranked)[1] if ranked else 0
    path = [last]
    for t in range(steps - 1, 0, -1):
        j = path[-1]
        p = parents[t][j] if 0 <= j < len(parents[t]) else -1
        path.append(p if p >= 0 else 0)
    return path[::-1]
