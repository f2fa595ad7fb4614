"""The seed project's side, restated for tests: its GPT (both block eras), its
discretizer and a FTT-format checkpoint directory written the way the seed writes one.

Independent of tt-tui's code, so imports are checked against it, not against ourselves.
"""

import hashlib
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml

# Hopper's dimensions (the importer checks them against the D4RL task).
O, A, N, SEQ, E, LAYERS, HEADS = 11, 3, 7, 3, 16, 2, 2
T = O + A + 2
L = SEQ * T  # the seed's model.seq_len counts tokens


# ------------------------------------------------- the seed side, restated


class FttBlock(nn.Module):
    """The seed's TransformerBlock: MultiheadAttention with a True-means-masked buffer."""

    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(E)
        self.norm2 = nn.LayerNorm(E)
        self.attention = nn.MultiheadAttention(E, HEADS, 0.0, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(E, 4 * E), nn.GELU(), nn.Linear(4 * E, E), nn.Dropout(0.0))
        mask = ~torch.tril(torch.ones(L, L)).to(bool)
        mask[:, T - 1 :: T] = True  # hide every value token
        self.register_buffer("attn_mask", mask)

    def forward(self, x, norm_residual):
        t = x.shape[1]
        h = self.norm1(x)
        att = self.attention(h, h, h, attn_mask=self.attn_mask[:t, :t], need_weights=False)[0]
        x = (h if norm_residual else x) + att
        return x + self.mlp(self.norm2(x))


class SeedGPT(nn.Module):
    """Names and shapes of the seed's GPT (use_sep_heads=True)."""

    def __init__(self):
        super().__init__()
        self.tok_emb = nn.Embedding(N * T, E)
        self.pos_emb = nn.Parameter(torch.zeros(1, L, E))
        self.blocks = nn.ModuleList(FttBlock() for _ in range(LAYERS))
        self.norm = nn.LayerNorm(E)
        self.head = nn.Module()
        self.head.weight = nn.Parameter(torch.zeros(T, N, E))  # EinLinear [models, out, in]
        with torch.no_grad():
            for p in self.parameters():
                p.normal_(0.0, 0.5)

    def forward(self, tokens, norm_residual=True):
        t = tokens.shape[1]
        dims = torch.arange(t) % T
        x = self.tok_emb(tokens + dims * N) + self.pos_emb[:, :t]
        for block in self.blocks:
            x = block(x, norm_residual)
        x = self.norm(x)
        return torch.einsum("bte,btne->btn", x, self.head.weight[dims].unsqueeze(0).expand(len(x), -1, -1, -1))


class KBinsDiscretizer:
    """The seed's discretizer: edges by linspace / percentile, centers = midpoints."""

    def __init__(self, dataset, num_bins, strategy):
        self.strategy, self.n_bins, self.feature_dim = strategy, num_bins, dataset.shape[-1]
        if strategy == "uniform":
            self.bin_edges = np.linspace(dataset.min(0), dataset.max(0), num_bins + 1).T
        else:
            self.bin_edges = np.percentile(dataset, np.linspace(0, 100, num_bins + 1), axis=0).T
        self.bin_centers = (self.bin_edges[:, 1:] + self.bin_edges[:, :-1]) * 0.5
        self.bin_centers_torch = torch.from_numpy(self.bin_centers)

    def encode(self, X):
        Xt = np.zeros(X.shape, dtype=np.int64)
        for j in range(X.shape[1]):
            eps = 1.0e-8 + 1.0e-5 * np.abs(X[:, j])
            Xt[:, j] = np.digitize(X[:, j] + eps, self.bin_edges[j][1:])
        return np.clip(Xt, 0, self.n_bins - 1)

    def decode(self, Xt):
        return np.stack([self.bin_centers[j, Xt[:, j]] for j in range(Xt.shape[1])], axis=1)


@pytest.fixture
def seed_module(monkeypatch):
    """Make KBinsDiscretizer pickle as trajectory.utils.discretization.KBinsDiscretizer."""
    mod = types.ModuleType("trajectory.utils.discretization")
    mod.KBinsDiscretizer = KBinsDiscretizer
    monkeypatch.setattr(KBinsDiscretizer, "__module__", mod.__name__)
    for name in ("trajectory", "trajectory.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return mod


def seed_config(env_name="hopper-medium-v2", **model):
    spec = dict(
        vocab_size=N, transition_dim=T, observation_dim=O, action_dim=A, seq_len=L,
        embedding_dim=E, num_layers=LAYERS, num_heads=HEADS, use_sep_heads=True,
    )
    spec.update(model)
    return {
        "wandb": {"project": None, "name": "hopper_medium", "mode": "disabled"},
        "dataset": {
            "env_name": env_name, "seq_len": SEQ, "cache_path": "data", "num_bins": N,
            "discount": 0.99, "strategy": "uniform", "batch_size": 256,
        },
        "model": spec,
        "trainer": {
            "num_epochs_ref": 50, "action_weight": 5, "value_weight": 1, "reward_weight": 1,
            "lr": 0.0006, "betas": [0.9, 0.95], "weight_decay": 0.1, "clip_grad": 1.0,
            "eval_discount": 0.99, "eval_temperature": 1, "eval_plan_every": 1,
            "eval_beam_width": 32, "eval_beam_steps": 5, "eval_beam_context": 4,
            "eval_sample_expand": 2, "eval_k_obs": 1, "eval_k_reward": 1, "eval_k_act": None,
            "checkpoints_path": "checkpoints/hopper-medium-v2/uniform/baseline",
        },
        "run_seed": 42,
    }


def transitions(n=500, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, T)) * rng.uniform(0.1, 50, size=T) + rng.normal(size=T) * 10


def write_seed_dir(path, env_name="hopper-medium-v2"):
    """Write a complete hopper seed checkpoint into `path` (needs the seed_module
    fixture); returns (SeedGPT, KBinsDiscretizer)."""
    torch.manual_seed(0)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(seed_config(env_name), sort_keys=False))
    disc = KBinsDiscretizer(transitions(), N, "uniform")
    torch.save(disc, path / "discretizer.pt")
    model = SeedGPT().eval()
    torch.save(model.state_dict(), path / "model_last.pt")
    return model, disc


@pytest.fixture
def seed_dir(tmp_path, seed_module):
    """A complete seed checkpoint directory; returns (path, SeedGPT, KBinsDiscretizer)."""
    path = tmp_path / "pretrained" / "hopper"
    return (path, *write_seed_dir(path))




def git_blob(data: bytes) -> str:
    """The tests' own git blob id: sha1 of b"blob <size>\\0" + content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
