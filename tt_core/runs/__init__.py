"""What a run directory holds: checkpoints, metrics.jsonl, plan snapshots, and the listing of runs."""
