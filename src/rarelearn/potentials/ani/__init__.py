"""The ANI family: TorchANI AEVs feeding one atomic network per element.

Modules import one way: `aev` (fast AEV paths, Jacobian, force pullback) -> `features`
(training features and their cache) -> `training` (the fit loop) -> `export` (TorchScript)
-> `committee` (members side by side, the stacked evaluator) -> `model` (`ANIModel`,
`ANISettings`). Only type hints point back.
"""

from rarelearn.potentials.ani.features import FeatureCache, TrainingFeatures
from rarelearn.potentials.ani.model import ANIModel, ANISettings

__all__ = ["ANIModel", "ANISettings", "FeatureCache", "TrainingFeatures"]
