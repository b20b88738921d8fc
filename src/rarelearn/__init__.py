"""rarelearn: teach neural network potentials rare events by active learning with steered MD."""

import os

# TorchANI warns at import about optional CUDA extensions that are irrelevant on CPU.
os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")

__version__ = "0.1.0"
