"""Learning-rate schedules: the original TT's and the seed project's, as their sources.

Each is checked against the tests' own transcription of its source's loop
(jannerm/trajectory-transformer utils/training.py with scripts/train.py; the seed's
utils/scheduler.py with gpt_trainer.py and scripts/train.py), on hand-picked token counts
and on a real training run whose batches the test counts itself.
"""

import math

import numpy as np
import pytest
import torch

from conftest import write_tiny_config
from tt_core.config import load_config
from tt_core.events import EventBus, TrainStep
from tt_core.train.schedule import default_epochs, lr_multiplier, make_schedule
from tt_core.train.trainer import Trainer


def original_lrs(batch_counts, lr, warmup_tokens, final_tokens):
    """The lr each step of the original's Trainer.train runs at: the optimizer starts at
    `learning_rate`; after each optimizer step `n_tokens += (y != N).sum()` and the lr
    computed from it is set for the next step."""
    current, n_tokens, out = lr, 0, []
    for count in batch_counts:
        out.append(current)
        n_tokens += count
        if n_tokens < warmup_tokens:
            mult = float(n_tokens) / float(max(1, warmup_tokens))
        else:
            progress = float(n_tokens - warmup_tokens) / float(max(1, final_tokens - warmup_tokens))
            mult = max(0.1, 0.5 * (1.0 + math.cos(math.pi * progress)))
        current = lr * mult
    return out


def ftt_lrs(batch_sizes, lr, warmup_tokens, final_tokens):
    """The seed's GPTScheduler.step(batch_size) before each optimizer step: the count
    includes the step's own batch."""
    count, out = 0.0, []
    for size in batch_sizes:
        count += size
        assert count <= final_tokens  # the seed asserts it never runs past one cycle
        if count < warmup_tokens:
            mult = float(count) / float(max(1, warmup_tokens))
        else:
            progress = float(count - warmup_tokens) / float(max(1, final_tokens - warmup_tokens))
            mult = max(0.1, 0.5 * (1.0 + math.cos(math.pi * progress)))
        out.append(lr * mult)
    return out


def test_the_cosine_is_not_clamped_past_final_tokens_as_in_the_original():
    """On the original's 50-epoch runs (final = 20 epochs) the lr sits at the 10 % floor
    around epoch 20, climbs back to the full lr at 39 epochs and falls again by 50."""
    w, f = 1000, 20_000
    assert lr_multiplier(0, w, f) == 0.0
    assert lr_multiplier(500, w, f) == pytest.approx(0.5)
    assert lr_multiplier(w, w, f) == pytest.approx(1.0)
    assert lr_multiplier(20_000, w, f) == pytest.approx(0.1)  # progress 1: the floor
    assert lr_multiplier(39_000, w, f) == pytest.approx(1.0)  # progress 2: back to the peak
    assert lr_multiplier(50_000, w, f) == pytest.approx(0.5 * (1 + math.cos(math.pi * 49 / 19)))
    floor = [e for e in range(1, 51) if lr_multiplier(e * w, w, f) == 0.1]
    assert floor == list(range(17, 24))


def test_both_sources_run_fifty_passes_over_a_million_windows():
    assert default_epochs(20_000) == 2500
    assert default_epochs(999_000) == 50
    assert default_epochs(10**9) == 1


@pytest.mark.parametrize("max_steps", [None, 7, 10**6])
def test_original_schedule_step_by_step_equals_the_originals_loop(max_steps):
    rng = np.random.default_rng(0)
    real = rng.integers(1, 4, size=50)  # data transitions of each of 50 windows (seq_len 3)
    T, seq_len, batch = 5, 3, 8
    s = make_schedule("original", 6e-4, epochs=30, max_steps=max_steps, batch=batch, seq_len=seq_len,
                      transition_dim=T, real_transitions=real)
    block = seq_len * T - 1
    assert s.warmup_tokens == 50 * block  # len(dataset) * block_size: one epoch
    assert s.final_tokens == 20 * 50 * block  # twenty epochs, whatever the cap
    assert s.total_steps == min(30 * (50 // batch), max_steps or 10**9)
    batches = [rng.choice(50, batch, replace=False) for _ in range(60)]
    counts = [int((real[b] * T - 1).sum()) for b in batches]  # targets that are not the stop token
    expected = original_lrs(counts, 6e-4, s.warmup_tokens, s.final_tokens)
    got, tokens = [], 0
    for step, b in enumerate(batches):
        got.append(s.step_lr(step, tokens, s.batch_tokens(b)))
        tokens += s.batch_tokens(b)
    assert got == pytest.approx(expected, rel=1e-12)
    assert got[0] == 6e-4  # the original's first step runs at the full lr


@pytest.mark.parametrize("max_steps", [None, 5])
def test_ftt_schedule_step_by_step_equals_the_seeds_scheduler(max_steps):
    real = np.full(40, 3)
    T, seq_len, batch, epochs = 4, 3, 8, 6
    s = make_schedule("ftt", 1e-3, epochs=epochs, max_steps=max_steps, batch=batch, seq_len=seq_len,
                      transition_dim=T, real_transitions=real)
    assert s.warmup_tokens == 40 * seq_len * T  # len(dataset) * seq_len * transition_dim
    assert s.final_tokens == epochs * s.warmup_tokens  # the whole run, not the cap
    steps = epochs * (40 // batch)
    assert s.total_steps == min(steps, max_steps or steps)
    sizes = [batch * (seq_len * T - 1)] * steps  # batch[0].numel(): the inputs
    expected = ftt_lrs(sizes, 1e-3, s.warmup_tokens, s.final_tokens)
    ids = np.arange(batch)
    got = [s.step_lr(k, k * s.batch_tokens(ids), s.batch_tokens(ids)) for k in range(steps)]
    assert got == pytest.approx(expected, rel=1e-12)


def test_an_explicit_warmup_keeps_the_original_final_at_twenty_epochs():
    s = make_schedule("original", 1.0, epochs=2, max_steps=None, batch=2, seq_len=2, transition_dim=3,
                      real_transitions=np.full(10, 2), warmup_tokens=7)
    assert (s.warmup_tokens, s.final_tokens) == (7, 20 * 10 * 5)


@pytest.mark.parametrize("rule", ["original", "ftt"])
def test_a_training_run_sets_each_steps_lr_as_its_source_would(tmp_path, rule):
    """Real batches of a real run (stop tokens included): the test counts each batch's
    non-stop targets (original) or inputs (ftt) itself and replays the source's loop;
    a step cap only stops the run, the lrs before it are the uncapped run's."""
    logged = {}
    for cap in (12, 30):
        cfg = load_config(write_tiny_config(tmp_path / f"{cap}.yaml", tmp_path / f"runs{cap}", max_steps=cap,
                                            log_every=1, checkpoint_every=1000, epochs=3, batch_size=8,
                                            schedule=rule))
        bus = EventBus()
        steps = []
        bus.subscribe(lambda e, steps=steps: steps.append(e) if isinstance(e, TrainStep) else None)
        trainer = Trainer(cfg, bus)
        trainer.run()
        logged[cap] = [e.lr for e in steps]
    s, N = trainer.schedule, cfg.dataset.num_bins
    assert s.total_steps == 30 and len(logged[30]) == 30
    counts = []
    for step in range(30):
        _, y, _ = trainer.windows.batch(trainer.sampler.indices(step))
        counts.append(int((y != N).sum()) if rule == "original" else y.numel())
    replay = original_lrs if rule == "original" else ftt_lrs
    assert logged[30] == pytest.approx(replay(counts, cfg.train.lr, s.warmup_tokens, s.final_tokens), rel=1e-9)
    assert logged[12] == logged[30][:12]
    if rule == "original":
        assert any(torch.tensor(counts) < 8 * (3 * 16 - 1))  # some batches did hold stop tokens
