"""The jobs domain: fit jobs, their attempts, epoch rows, checkpoints and live events."""
