"""Training: loop, schedule, checkpointing, evaluation hook."""
