"""D4RL's normalized score, in one place (no heavy imports: evaluation and the CLI read it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReferenceScores:
    """D4RL's normalization: score = 100 * (R - ref_min) / (ref_max - ref_min), with
    ref_min a random policy's mean return and ref_max an expert's."""

    ref_min_score: float
    ref_max_score: float

    def normalize(self, episode_return: float) -> float:
        return 100.0 * (episode_return - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)
