"""The network: TrajectoryGPT, its attention, key/value caches, CUDA decode graphs and token sampling."""
