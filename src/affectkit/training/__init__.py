"""Training: the LightningModule with the multi-task loss, callbacks, and the two-phase orchestration."""
