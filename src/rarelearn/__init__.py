"""rarelearn: teach neural network potentials rare events by active learning with steered MD."""

import os

# TorchANI warns at import about optional CUDA extensions that are irrelevant on CPU.
os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
# MKL (torch's CPU BLAS) picks kernels by memory alignment unless told otherwise, so the same
# product could round differently in a resumed process: the kill/resume test saw 1e-9 eV
# differences in about one run of three without this, none in four with it. Takes effect when
# rarelearn is imported before torch (the CLI always is).
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__version__ = "0.1.0"
