"""The models domain: model configs, their weights and compile specs, inference, model files."""
