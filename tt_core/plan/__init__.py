"""Planning: the beam search, the batched rollout over vector envs, the loaded agent and GIF recording."""
