"""Training: loss, optimiser and schedules, checkpoints, the trainer loop."""
