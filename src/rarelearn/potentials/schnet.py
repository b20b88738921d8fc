"""SchNet potentials through PyTorch Geometric's maintained `torch_geometric.nn.models.SchNet`.

Model: PyG's SchNet (continuous-filter convolutions over Gaussian-expanded distances, cosine
cutoff envelope, shifted-softplus, sum readout over atoms) predicts the remainder after the
per-element reference energies that `GraphPotential` fits by least squares, so PyG's own
`atomref`/`mean`/`std` stay unused. Its output is multiplied by `energy_scale` (eV, default 1)
rather than by a scale fitted to the data (which a warm start would have to carry along):
untrained, the paper-sized network already has the scale of the propane labels (energy spread
0.09 vs 0.09 eV, force RMS 0.3 vs 0.5-0.7 eV/A), and 0.3, 1 and 3 eV trained comparably
(validation force MAE 0.20, 0.24, 0.32 eV/A after 15 epochs at 32 features). Forces are
-dE/dpos through autograd, with ``create_graph`` while training so that the force loss trains
the weights. Atoms enter as their real atomic numbers (PyG's embedding has 100 rows: Z <= 99).

Defaults are the paper's (PROTOCOL): 128 features (`hidden_channels`, `num_filters`), 25
Gaussians, 3 interactions, 5 A cutoff; loss ``p * MSE(E) + (1 - p) * MSE(F)`` with p = 0.1;
Adam at 5e-4, reduce-on-plateau (factor 0.8, patience 5), 300 epochs, stop at the
learning-rate floor, best validation model kept (`GraphSettings`, `GraphPotential.fit`).

The graph: PyG builds SchNet's neighbours with `radius_graph`, which needs the compiled
torch-cluster package. `SchNet(interaction_graph=...)` takes any (pos, batch) -> (edge_index,
edge_weight) callable instead; `PairGraph` gives it all pairs of atoms of the same molecule
within the cutoff from graph.py's `molecule_pairs` (plain torch operations over each
molecule's block of the pair matrix; the molecules here are small, < 130 atoms).

Why PyG (checked with ``pip download --no-deps``): schnetpack 2.2.0 requires Python >= 3.12;
schnetpack 2.1.1 requires ``sympy<=1.12`` while torch 2.13 requires ``sympy>=1.13.3``, so
installing it downgrades torch; torchmd-net 3.1.0 is an sdist only (no wheel) whose neighbour
lists and kernels run through NVIDIA Warp (``warp-lang``, compiled at run time) and which pulls
``lightning``: no C++ extension to build any more, but a second native kernel library. PyG's
SchNet is maintained, installs as a pure-Python wheel and, with the interaction-graph hook,
needs no compiled code beyond torch. `torch_geometric` is imported only when a network is built, so
`SchNetSettings` (config validation) imports without it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from rarelearn.errors import ModelError
from rarelearn.potentials.graph import GraphPotential, GraphSettings, molecule_pairs

#: PyG SchNet embeds atomic numbers 0..99 (0 is its padding row).
MAX_ATOMIC_NUMBER = 99
READOUTS = ("add", "mean")


@dataclass
class SchNetSettings(GraphSettings):
    """SchNet architecture and loss on top of the shared graph optimisation settings.

    `energy_weight` is p of ``p * MSE(E) + (1 - p) * MSE(F)``, E the energy per molecule:
    the paper's p = 0.1 is schnetpack's trade-off, defined on total energies, and all frames
    of a study are one molecule, where per-molecule and per-atom differ only by a constant.
    `max_num_neighbors`: the graph takes every pair within the cutoff and refuses (ModelError)
    an atom with more neighbours, since dropping some would make the energy jump.
    `energy_scale` (eV) multiplies the network's output (see the module docstring).
    """

    hidden_channels: int = 128
    num_filters: int = 128
    num_interactions: int = 3
    num_gaussians: int = 25
    max_num_neighbors: int = 512
    readout: str = "add"
    energy_weight: float = 0.1
    energy_scale: float = 1.0

    def problems(self) -> Iterator[tuple[str, str]]:
        """(setting, what is wrong) for every invalid value."""
        yield from super().problems()
        for name in ("hidden_channels", "num_filters", "num_interactions", "max_num_neighbors"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                yield name, f"must be an integer >= 1, got {value!r}"
        gaussians = self.num_gaussians
        if not (isinstance(gaussians, int) and not isinstance(gaussians, bool) and gaussians >= 2):
            yield "num_gaussians", f"must be an integer >= 2, got {gaussians!r}"
        if self.readout not in READOUTS:
            yield "readout", f"must be one of {READOUTS}, got {self.readout!r}"
        if not 0 <= self.energy_weight <= 1:
            yield "energy_weight", f"must be between 0 and 1, got {self.energy_weight!r}"
        if not self.energy_scale > 0:
            yield "energy_scale", f"must be positive (eV), got {self.energy_scale!r}"


class PairGraph(torch.nn.Module):
    """All ordered pairs (j -> i, i != j) of atoms of the same molecule closer than `cutoff`.

    SchNet's `interaction_graph`: ``(pos, batch) -> (edge_index, edge_weight)`` with PyG's
    layout (row 0 the source j, row 1 the target i) and distances that carry gradients.
    The pairs are graph.py's `molecule_pairs` (shared with MACE; atoms of a molecule
    contiguous in `batch`, as `SchNetModel.collate` lays them out), checked against
    `max_num_neighbors`.
    """

    def __init__(self, cutoff: float, max_num_neighbors: int) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.max_num_neighbors = int(max_num_neighbors)

    def forward(self, pos: Tensor, batch: Tensor) -> tuple[Tensor, Tensor]:
        """Edges and their lengths (A) within the cutoff."""
        source, target = molecule_pairs(pos, batch, self.cutoff)
        if len(target):
            most = int(torch.bincount(target).max())
            if most > self.max_num_neighbors:
                raise ModelError(
                    f"an atom has {most} neighbours within {self.cutoff} A, more than "
                    f"max_num_neighbors = {self.max_num_neighbors}; raise that setting"
                )
        edge_weight = (pos[source] - pos[target]).norm(dim=-1)
        return torch.stack([source, target]), edge_weight


class SchNetEnergy(torch.nn.Module):
    """PyG's SchNet with its output scaled: energies (B,) of a batch of molecules, eV."""

    def __init__(self, schnet: torch.nn.Module, energy_scale: float) -> None:
        super().__init__()
        self.schnet = schnet
        self.energy_scale = float(energy_scale)

    def forward(self, z: Tensor, pos: Tensor, batch: Tensor) -> Tensor:
        """Energies without the reference energies, one per molecule."""
        return self.schnet(z, pos, batch).view(-1) * self.energy_scale


@dataclass
class SchNetBatch:
    """A collated batch: atomic numbers, positions (a leaf needing grad), molecule index."""

    z: Tensor
    pos: Tensor
    batch: Tensor


class SchNetModel(GraphPotential):
    """A SchNet NNP (PyG's SchNet over `PairGraph`) on top of per-element reference energies."""

    family = "schnet"
    settings_class = SchNetSettings
    settings: SchNetSettings

    @classmethod
    def check_family_elements(cls, elements: Sequence[str]) -> None:
        """ModelError for elements beyond PyG SchNet's embedding table (Z > 99)."""
        from ase.data import atomic_numbers

        beyond = [s for s in elements if atomic_numbers[s] > MAX_ATOMIC_NUMBER]
        if beyond:
            raise ModelError(
                f"SchNet embeds atomic numbers up to {MAX_ATOMIC_NUMBER}; not {beyond}"
            )

    def build_network(self) -> torch.nn.Module:
        """PyG's SchNet with the settings' sizes and the torch-only pair graph."""
        from torch_geometric.nn.models import SchNet

        s = self.settings
        schnet = SchNet(
            hidden_channels=s.hidden_channels,
            num_filters=s.num_filters,
            num_interactions=s.num_interactions,
            num_gaussians=s.num_gaussians,
            cutoff=s.cutoff,
            interaction_graph=PairGraph(s.cutoff, s.max_num_neighbors),
            max_num_neighbors=s.max_num_neighbors,
            readout=s.readout,
        )
        return SchNetEnergy(schnet, s.energy_scale)

    def collate(self, numbers: Sequence[Sequence[int]], positions: Sequence[Tensor]) -> SchNetBatch:
        """Concatenated atoms of the frames; ModelError for an element the model lacks."""
        self.species_index(sorted({int(z) for frame in numbers for z in frame}))
        z = torch.tensor([int(a) for frame in numbers for a in frame], device=self.device)
        sizes = torch.tensor([len(frame) for frame in numbers], device=self.device)
        batch = torch.repeat_interleave(torch.arange(len(numbers), device=self.device), sizes)
        pos = torch.cat([p.to(device=self.device, dtype=self.dtype) for p in positions])
        return SchNetBatch(z=z, pos=pos.detach().requires_grad_(True), batch=batch)

    def forward(
        self, batch: SchNetBatch, forces: bool, training: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Energies (B,) without reference energies and forces (atoms, 3) = -dE/dpos."""
        energies = self.network(batch.z, batch.pos, batch.batch)
        if not forces:
            return energies, torch.zeros_like(batch.pos)
        (grad,) = torch.autograd.grad(energies.sum(), batch.pos, create_graph=training)
        return energies, -grad

    def loss(
        self, e_pred: Tensor, f_pred: Tensor, e_ref: Tensor, f_ref: Tensor, n_atoms: Tensor
    ) -> Tensor:
        """``p * MSE(E per molecule) + (1 - p) * MSE(F components)``, p = `energy_weight`."""
        p = self.settings.energy_weight
        return p * ((e_pred - e_ref) ** 2).mean() + (1 - p) * ((f_pred - f_ref) ** 2).mean()
