"""Training a built model with Keras's semantics: compile (`compile`, `heads`), the trainer
(`trainer`, `loop`, `on_batch`, `inference`, `jit`, `precision`), fit arguments (`fit_args`),
batches (`batches`), resumable state (`state`, `checkpoint`) and Normalization's `adapt`."""
