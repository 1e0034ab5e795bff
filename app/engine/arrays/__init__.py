"""User arrays as the engine takes them: checked and turned into tensors (`checks`), the input
dtypes a model declares (`dtypes`) and batches gathered from arrays kept on disk (`host_batches`).
"""
