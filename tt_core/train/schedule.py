"""The learning-rate schedules of the two sources, fixed by epochs and tokens.

Both warm up linearly over `warmup_tokens`, then follow
`lr_mult = max(0.1, 0.5 * (1 + cos(pi * progress)))`,
`progress = (tokens - warmup_tokens) / (final_tokens - warmup_tokens)`, unclamped. They
differ in what they count, when, and where they end (`train.schedule`):

original  (jannerm/trajectory-transformer: scripts/train.py, trajectory/utils/training.py)
    An epoch is `len(dataset) * block_size` tokens (windows x (seq_len * T - 1));
    warmup is one epoch and `final_tokens` twenty. After each optimizer step the counter
    adds that batch's targets that are not the stop token, and the lr it gives is set
    for the next step: the first step runs at the full lr, the optimizer's initial one.
    Past `final_tokens` the cosine is not clamped, so on the original's 50-epoch runs
    the lr sits at the 10 % floor for a while, climbs back to the full lr (progress 2,
    about 39 counted epochs) and falls again.
ftt  (Howuhh/faster-trajectory-transformer: scripts/train.py, trajectory/utils/scheduler.py,
    models/gpt/gpt_trainer.py)
    An epoch is windows x seq_len * T tokens; warmup is one epoch and `final_tokens` is
    the whole run (epochs x one epoch). Before each step the counter adds the batch's
    input tokens (B x (seq_len * T - 1)) and that step runs at the lr of the new count
    ("step first, to prevent starting from high lr").

`train.max_steps` only stops training; the schedule never depends on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_LR_FRACTION = 0.1  # the cosine's floor in both sources
ORIGINAL_FINAL_EPOCHS = 20  # the original's final_tokens = 20 x warmup_tokens (one epoch)
# Both sources' epoch rule: as many epochs as 50 passes over a 1M-window dataset.
REFERENCE_EPOCHS = 50
REFERENCE_WINDOWS = 1_000_000


def default_epochs(windows: int) -> int:
    """`int(1e6 / len(dataset) * n_epochs_ref)` of both sources, at least 1."""
    return max(1, int(REFERENCE_WINDOWS / max(1, windows) * REFERENCE_EPOCHS))


def lr_multiplier(tokens: float, warmup_tokens: float, final_tokens: float) -> float:
    """Linear warmup, then the cosine with a 10 % floor; progress is not clamped at 1."""
    if tokens < warmup_tokens:
        return tokens / max(1, warmup_tokens)
    progress = (tokens - warmup_tokens) / max(1, final_tokens - warmup_tokens)
    return max(MIN_LR_FRACTION, 0.5 * (1.0 + math.cos(math.pi * progress)))


@dataclass(frozen=True)
class Schedule:
    """One run's schedule. `window_tokens[w]`: what the rule counts when window w is in a
    batch (original: its targets that are not the stop token; ftt: its input tokens)."""

    rule: str  # "original" | "ftt"
    lr: float  # the configured (peak) learning rate
    steps_per_epoch: int
    total_steps: int  # epochs x steps_per_epoch, capped by train.max_steps
    tokens_per_step: int  # input tokens of one batch (B x (seq_len * T - 1)), for display
    warmup_tokens: int
    final_tokens: int
    window_tokens: np.ndarray

    def batch_tokens(self, window_ids: np.ndarray) -> int:
        """Tokens the rule counts for a batch of these windows."""
        return int(self.window_tokens[window_ids].sum())

    def step_lr(self, step: int, tokens_before: int, batch_tokens: int) -> float:
        """The lr of optimizer step `step` (0-based) given the tokens counted before it and
        in its own batch."""
        if self.rule == "ftt":  # counted first, then stepped
            return self.lr * lr_multiplier(tokens_before + batch_tokens, self.warmup_tokens, self.final_tokens)
        if step == 0:  # the original's optimizer starts at the full lr; decay begins after step 1
            return self.lr
        return self.lr * lr_multiplier(tokens_before, self.warmup_tokens, self.final_tokens)


def make_schedule(
    rule: str,
    lr: float,
    epochs: int,
    max_steps: int | None,
    batch: int,
    seq_len: int,
    transition_dim: int,
    real_transitions: np.ndarray,
    warmup_tokens: int | None = None,
) -> Schedule:
    """The schedule of `rule` for windows with `real_transitions[w]` data transitions
    each (the rest of a window is stop tokens or padding), `batch` windows a step."""
    windows = len(real_transitions)
    steps_per_epoch = max(1, windows // batch)
    total = epochs * steps_per_epoch
    if max_steps is not None:
        total = min(total, max_steps)
    block = seq_len * transition_dim - 1  # input tokens of one window
    if rule == "original":
        epoch_tokens = windows * block
        final = ORIGINAL_FINAL_EPOCHS * epoch_tokens
        # the targets are positions 1..block; the real ones end at the last data token
        counted = real_transitions.astype(np.int64) * transition_dim - 1
    elif rule == "ftt":
        epoch_tokens = windows * (block + 1)
        final = epochs * epoch_tokens
        counted = np.full(windows, block, dtype=np.int64)
    else:
        raise ValueError(f"unknown schedule {rule!r} (original or ftt)")
    warmup = epoch_tokens if warmup_tokens is None else warmup_tokens
    return Schedule(rule, lr, steps_per_epoch, total, batch * block, warmup, final, counted)
