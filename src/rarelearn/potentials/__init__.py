"""NNP families behind one interface (`Potential`): ANI first, SchNet and MACE beside it.

`families` names them (``committee.backend``); `base` is the interface; `graph` what the
message-passing families share; `schnet` and `mace` one module each, `ani` one package (its
fast AEV paths, training features, fit loop, committee paths and TorchScript export);
`evaluator` evaluates a committee of any family; `calculator` is the ASE calculator of one
model.
"""

from rarelearn.errors import ModelError
from rarelearn.potentials.ani import ANIModel, ANISettings
from rarelearn.potentials.base import FamilySettings, FitHistory, Potential
from rarelearn.potentials.families import FAMILIES, MissingPackageError, model_class

__all__ = [
    "FAMILIES",
    "ANIModel",
    "ANISettings",
    "FamilySettings",
    "FitHistory",
    "MissingPackageError",
    "ModelError",
    "Potential",
    "model_class",
]
