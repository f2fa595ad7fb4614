"""Training: the trainer, its learning-rate schedules and the experiment trackers."""
