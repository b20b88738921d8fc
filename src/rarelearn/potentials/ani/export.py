"""An ANI model as one TorchScript module, for use outside Python (`ANIModel.to_torchscript`).

(atomic numbers (B, N) long, coords (B, N, 3) A) -> energies (B,) eV, self energies included;
forces by differentiating the output with respect to coords.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from ase.data import atomic_numbers
from torch import Tensor

if TYPE_CHECKING:
    from rarelearn.potentials.ani.model import ANIModel


class ScriptableANI(torch.nn.Module):
    """TorchANI AEV computer + ANINetworks + self energies as one scriptable module."""

    def __init__(self, model: ANIModel) -> None:
        super().__init__()
        self.aev_computer = copy.deepcopy(model.aev_computer)
        self.networks = copy.deepcopy(model.networks)
        table = torch.full((119,), -1, dtype=torch.long)
        for k, s in enumerate(model.elements):
            table[atomic_numbers[s]] = k
        self.register_buffer("z_to_idx", table)
        self.register_buffer(
            "sae",
            torch.tensor([model.self_energies[s] for s in model.elements], dtype=torch.float64),
        )

    def forward(self, numbers: Tensor, coords: Tensor) -> Tensor:
        elem = self.z_to_idx[numbers]
        if bool((elem < 0).any()):
            raise ValueError("element not known to the model")
        e = self.networks(elem, self.aev_computer(elem, coords))
        return e.to(torch.float64) + self.sae[elem].sum(1)
