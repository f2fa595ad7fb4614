"""How many bytes the planner's key/value cache takes, without torch.

BeamPlanner keeps a CascadeCache (tt_core/model/cache.py) with three levels: the prefix once
per env, each beam's planned tokens (two buffers of envs x width rows, swapped when
beams are selected) and the candidates' current action + reward tokens (envs x width x
expand rows). Every level holds keys and values of every layer. The UI checks a live
edit with this before it is sent, so it lives in a module that does not import torch.
"""

from __future__ import annotations

BYTES_PER_VALUE = {"fp32": 4, "bf16": 2}


def kv_dtype(compute_dtype: str, device_type: str) -> str:
    """The dtype the planner's cache holds keys and values in, and attends in, for a
    network computing in `compute_dtype` on a `device_type` device. On a CPU it is fp32
    for a bf16 network too: torch's CPU attention kernels run the planner's small
    one-query products 3-5x slower in bf16 than in fp32 (measured on AVX512-BF16,
    docs/benchmarks.md#bf16-planning-on-a-cpu), while the network's matrix products
    gain from bf16. Elsewhere it is the network's dtype."""
    return "fp32" if device_type == "cpu" else compute_dtype


def cascade_cache_bytes(
    envs: int, beam_width: int, sample_expand: int, *, n_layers: int, embedding_dim: int,
    block_tokens: int, action_dim: int, dtype: str = "fp32",
) -> int:
    """Bytes of keys and values for `envs` envs planning with `beam_width` beams and
    `sample_expand` candidates each; `block_tokens` is the model's window in tokens
    (seq_len x transition_dim - 1), `dtype` the dtype the cache holds (`kv_dtype`)."""
    rows_tokens = (envs * block_tokens  # level 0: the prefix
                   + 2 * envs * beam_width * block_tokens  # level 1 and its spare
                   + envs * beam_width * sample_expand * (action_dim + 1))  # level 2
    return rows_tokens * n_layers * 2 * embedding_dim * BYTES_PER_VALUE[dtype]
