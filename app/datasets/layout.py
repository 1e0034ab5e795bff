"""Where a dataset's files live in the artifact store: one folder per dataset, one `.npy` per
array."""


def dataset_prefix(dataset_id: object) -> str:
    return f"datasets/{dataset_id}"


def array_key(dataset_id: object, name: str) -> str:
    return f"{dataset_prefix(dataset_id)}/{name}.npy"
