"""Training: the one loop and its hooks, optimisers and schedules, path sampling, checkpoints, torchrun helpers,
supernet and stand-alone networks."""
