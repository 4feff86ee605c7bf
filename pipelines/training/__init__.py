"""Ray Train: the driver, the worker loop, the data stream, checkpoints, in-training validation."""
