"""A plain-Python view of one env's BeamSnapshot for the tree widget.

The snapshot holds numpy arrays per planning step; the view turns them into lists of
Python numbers once, when the tree is about to show them.
"""

from __future__ import annotations

from dataclasses import dataclass

from tt_core.events import BeamSnapshot


@dataclass
class BeamView:
    """Per planned step t, per kept beam j: parent (index into step t-1), predicted
    reward and value-to-go, cumulative score and action; `chosen[t]` is the beam on
    the executed plan."""

    parents: list[list[int]]
    rewards: list[list[float]]
    values: list[list[float]]
    scores: list[list[float]]
    actions: list[list[list[float]]]
    chosen: list[int]

    @property
    def steps(self) -> int:
        return len(self.parents)

    def width(self, t: int) -> int:
        return len(self.parents[t])


def read_snapshot(snapshot: BeamSnapshot) -> BeamView | None:
    """The view of `snapshot`, or None when it has no step to draw."""
    if not snapshot.steps:
        return None
    steps = snapshot.steps
    return BeamView(
        parents=[[int(p) for p in s.parent] for s in steps],
        rewards=[s.reward.tolist() for s in steps],
        values=[s.value.tolist() for s in steps],
        scores=[s.score.tolist() for s in steps],
        actions=[s.action.tolist() for s in steps],
        chosen=[int(j) for j in snapshot.chosen],
    )
