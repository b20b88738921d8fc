"""Neural network potentials. `ani`: TorchANI AEVs + per-element networks."""

from rarelearn.potentials.ani import ANIModel, ANISettings, ModelError

__all__ = ["ANIModel", "ANISettings", "ModelError"]
