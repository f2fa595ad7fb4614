"""The learning check's other side: the seed project's (faster-trajectory-transformer) GPT
trained by its own GPTTrainer on a local Minari dataset, for a fixed number of optimizer
steps, saved in its own layout (config.yaml, discretizer.pt, model_last.pt) so that
`tt-tui eval` and `tt-tui loss` read it through the FTT import (docs/learning-check.md).

Run against a checkout of the seed project (not part of tt-tui, never copied into it):

    git clone https://github.com/Howuhh/faster-trajectory-transformer ../ftt
    python scripts/seed_trainer.py --ftt ../ftt --dataset local/hopper/random-v0 \
        --env Hopper-v5 --out seedruns/hopq-seed0 --seed 0 --steps 1500 --strategy quantile

Only data loading is adapted: episodes are read with tt_core's reader (the termination
penalty applied the same way), then go through the seed's own join_trajectory,
KBinsDiscretizer and DiscretizedDataset windows. The model, loss, optimizer groups,
GPTScheduler (its token formula, num_epochs_ref 50) and step order are its own, unchanged.
"""
import argparse
import math
import sys
import types
from pathlib import Path

import numpy as np

def _ftt_checkout() -> str:
    """--ftt, read before the seed's modules are imported."""
    for i, arg in enumerate(sys.argv):
        if arg == "--ftt" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if arg.startswith("--ftt="):
            return arg.split("=", 1)[1]
    sys.exit("error: --ftt DIR (a checkout of Howuhh/faster-trajectory-transformer) is required")


sys.path.insert(0, _ftt_checkout())
# Only its training code is used: its env, D4RL and wandb modules are replaced by empty ones
# (evaluation is tt-tui's planner, on Gymnasium).
np.long = np.int64  # removed from numpy 1.24; the seed's dataset code still names it
for name in ("wandb", "gym", "d4rl", "trajectory.utils.env", "trajectory.datasets.get_d4rl"):
    mod = types.ModuleType(name)
    mod.log = lambda *a, **k: None
    mod.create_env = mod.vec_rollout = mod.d4rl_dataset = None
    sys.modules[name] = mod

from torch.utils.data import DataLoader
from trajectory.datasets.d4rl_dataset import DiscretizedDataset, join_trajectory
from trajectory.models.gpt import GPT, GPTTrainer
from trajectory.utils.common import set_seed
from trajectory.utils.discretization import KBinsDiscretizer

from tt_core.data.minari_io import load_dataset
from tt_core.data.trajectories import build_trajectories


class StepCapped:
    """A DataLoader that ends the whole training after `steps` batches."""

    def __init__(self, loader, steps):
        self.loader, self.left, self.dataset = loader, steps, loader.dataset

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if self.left <= 0:
                return
            self.left -= 1
            yield batch


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ftt", required=True, help="a checkout of the seed project")
    p.add_argument("--dataset", required=True)
    p.add_argument("--env", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--strategy", default="uniform")
    p.add_argument("--penalty", type=float, default=-100.0)
    p.add_argument("--seq-len", type=int, default=5)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--emb", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--heads", type=int, default=4)
    a = p.parse_args()

    set_seed(seed=a.seed)
    traj = build_trajectories(load_dataset(a.dataset, download=False), 0.99, a.penalty)
    joined = []
    for s, n in zip(traj.episode_starts, traj.episode_lengths):
        sl = slice(int(s), int(s + n))
        joined.append(join_trajectory(traj.observations[sl].astype(np.float64), traj.actions[sl].astype(np.float64),
                                      traj.rewards[sl, None].astype(np.float64), discount=0.99))
    ds = DiscretizedDataset.__new__(DiscretizedDataset)
    ds.seq_len, ds.discount, ds.num_bins = a.seq_len, 0.99, 100
    ds.joined_transitions = joined
    ds.discretizer = KBinsDiscretizer(np.concatenate(joined, axis=0), num_bins=100, strategy=a.strategy)
    ds.indices = np.array([(i, t, t + a.seq_len) for i, j in enumerate(joined) for t in range(len(j) - 1)])
    ds.get_env_name = lambda: a.env

    O, A = traj.observation_dim, traj.action_dim
    T = O + A + 2
    model = GPT(vocab_size=100, transition_dim=T, observation_dim=O, action_dim=A, seq_len=a.seq_len * T,
                embedding_dim=a.emb, num_layers=a.layers, num_heads=a.heads, use_sep_heads=True)
    num_epochs_ref = 50
    num_epochs = int(1e6 / len(ds) * num_epochs_ref)
    warmup_tokens = len(ds) * a.seq_len * T
    out = Path(a.out)
    trainer = GPTTrainer(final_tokens=warmup_tokens * num_epochs, warmup_tokens=warmup_tokens,
                         action_weight=5, value_weight=1, reward_weight=1, learning_rate=6e-4,
                         betas=(0.9, 0.95), weight_decay=0.1, clip_grad=1.0, eval_every=10**9,
                         save_every=10**9, checkpoints_path=str(out), device="cpu")
    loader = DataLoader(ds, batch_size=a.batch, shuffle=True, num_workers=0)
    epochs = math.ceil(a.steps / len(loader))
    trainer.train(model=model, dataloader=StepCapped(loader, a.steps), num_epochs=epochs)
    import yaml
    (out / "config.yaml").write_text(yaml.safe_dump({
        "dataset": {"env_name": a.env, "seq_len": a.seq_len, "num_bins": 100, "discount": 0.99,
                    "strategy": a.strategy, "batch_size": a.batch},
        "model": {"vocab_size": 100, "transition_dim": T, "observation_dim": O, "action_dim": A,
                  "seq_len": a.seq_len * T, "embedding_dim": a.emb, "num_layers": a.layers,
                  "num_heads": a.heads, "use_sep_heads": True},
        "trainer": {"eval_seed": 1000},
        "run_seed": a.seed, "steps": a.steps, "dataset_id": a.dataset,
    }))
    print(f"trained {a.steps} steps, {len(ds)} windows, {epochs} epochs -> {out}")


if __name__ == "__main__":
    main()
