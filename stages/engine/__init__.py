"""The batched training engine: replicas, the loop, losses, the fused optimiser, order streams,
checkpoints and resampling of a replica's training rows."""
