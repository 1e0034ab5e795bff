"""The datasets domain: arrays uploaded once, stored as .npy files, referenced by id."""
