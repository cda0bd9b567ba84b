"""What a run *is*: its directory (config, tokenizers, lock, resume rules), its checkpoints, and the
trained model loaded back from it (TrainedRun) with its attention label."""
