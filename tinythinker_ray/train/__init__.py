"""Training on Ray Train + DeepSpeed: the stage schedule, batches, losses, one generic loop, the SFT driver."""
