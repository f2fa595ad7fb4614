"""Data layer: Minari I/O, trajectories + values, discretizer, token windows (+ disk cache)."""
