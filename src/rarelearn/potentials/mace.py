"""MACE family: mace-torch's own ScaleShiftMACE, data conversion, batching and loss.

The network is built as ``mace run_train --model MACE`` builds it (`mace.modules.ScaleShiftMACE`
with a `RealAgnosticInteractionBlock` first and `RealAgnosticResidualInteractionBlock` after,
hidden irreps ``num_channels x (0e + 1o + ...)`` up to `max_L`, SiLU gate). Frames are
batched into the input dict its forward reads by `MACEModel.collate` with torch operations
only (graph.py's `molecule_pairs` within the cutoff): the same batch as mace-torch's
`Configuration` -> `AtomicData` (matscipy neighbour list) -> `torch_geometric.Batch` gives for
a molecule, tested to agree, at a 10th to 20th of the cost (a collate runs every MD step and
every mini-batch). The loss is its
`WeightedEnergyForcesLoss` (per-atom energy MSE + force MSE); forces are MACE's own (-dE/dr
through autograd, the graph kept while training). Loss weights: forces 100 as MACE, energy 10
rather than MACE's 1 (which it raises to 1000 in a second stage we do not run): with weight 1,
20 epochs on 160 propane frames left a constant energy offset of -278 meV (MAE 278 meV, 12 meV
once the offset is removed); weight 10 gave 16.5 meV, weight 100 19.6 meV, forces the same
(0.040, 0.039, 0.042 eV/A).

Energies: graph.py fits per-element reference energies (E0s) by least squares on the
training frames and the network learns the remainder, so MACE is built with zero atomic
energies (its E0 block) and no shift: the E0s are counted once, in graph.py. The scale of the
interaction energy is 1: MACE's default ``rms_forces_scaling`` would give the RMS force of the
data, 0.75 eV/A on 500 K propane and 0.65 eV/A on hexane (GFN2-xTB), the same order.

Defaults are sized for CPUs (channels 32, max_L 0, correlation 2, two interactions, radial
MLP 32x32): measured on propane, see docs/mace.md for cost per configuration and the sizes
compared. Optimiser settings are MACE's trainer's: lr 0.01, batches of 10, and
`MACEModel.optimizer` builds its Adam (amsgrad, weight decay 5e-7 on the interactions' linear
and the products' weights) for graph.py's fit loop to use; a loop that builds its own Adam
trains with plain Adam at `lr`.

mace-torch and e3nn are imported only inside methods, so this module (and its settings, which
config validation reads) imports without them. `import mace` sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD
process-wide (so e3nn can read its constants); it is put back once the import is done, so
later torch.load calls keep torch's safe default.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from ase.data import atomic_numbers
from torch import Tensor

from rarelearn.potentials.graph import GraphPotential, GraphSettings, molecule_pairs

#: Lines mace-torch prints at import that say nothing to a rarelearn user.
_QUIET_LINES = ("cuequivariance or cuequivariance_torch is not available",)
_IMPORT_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the known warnings of importing mace-torch and building its modules (e3nn's
    torch.load, TorchScript's deprecation and annotation notes); others still show."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
        )
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated")
        warnings.filterwarnings(
            "ignore", message="The TorchScript type system doesn't support instance-level"
        )
        yield


@functools.cache
def _mace() -> SimpleNamespace:
    """mace-torch's modules, imported once with its known import-time noise silenced."""
    with _IMPORT_LOCK:
        env_before = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
        printed = io.StringIO()
        try:
            with _quiet(), contextlib.redirect_stdout(printed):
                importlib.import_module("mace")  # first: sets the variable e3nn's import needs
                from e3nn import o3
                from mace import data, modules
                from mace.modules.loss import WeightedEnergyForcesLoss
                from mace.tools import AtomicNumberTable, torch_geometric
        finally:
            if env_before is None:
                os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
            else:
                os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = env_before
        for line in printed.getvalue().splitlines():
            if line.strip() and not line.startswith(_QUIET_LINES):
                print(line)
        return SimpleNamespace(
            o3=o3,
            data=data,
            modules=modules,
            loss=WeightedEnergyForcesLoss,
            AtomicNumberTable=AtomicNumberTable,
            torch_geometric=torch_geometric,
        )


@dataclass
class MACESettings(GraphSettings):
    """MACE architecture, loss weights and optimiser; `cutoff` (GraphSettings) is r_max.

    `num_channels` x irreps up to `max_L` are the hidden features; `correlation` the body order
    minus one of each product; `max_ell` the spherical harmonics of the edges; `radial_mlp` the
    hidden widths of the radial network; `avg_num_neighbors` normalises the messages (within
    5 A: propane 10, hexane 15.3; a setting rather than measured per data set, so a saved model
    rebuilds from its settings alone). `energy_weight`/`forces_weight`: the weights of MACE's
    loss (module docstring); `weight_decay`, `amsgrad`: its Adam options.
    """

    epochs: int = 300
    batch_size: int = 10
    lr: float = 0.01
    num_channels: int = 32
    max_L: int = 0
    correlation: int = 2
    num_interactions: int = 2
    max_ell: int = 3
    num_radial_basis: int = 8
    num_cutoff_basis: int = 5
    radial_mlp: tuple[int, ...] = (32, 32)
    mlp_irreps: str = "16x0e"
    avg_num_neighbors: float = 12.0
    energy_weight: float = 10.0
    forces_weight: float = 100.0
    weight_decay: float = 5e-7
    amsgrad: bool = True

    def problems(self) -> Iterator[tuple[str, str]]:
        """(setting, what is wrong) for every invalid value."""
        yield from super().problems()
        positive_ints = ("num_channels", "correlation", "num_interactions", "max_ell")
        positive_ints += ("num_radial_basis", "num_cutoff_basis")
        for name in positive_ints:
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                yield name, f"must be an integer >= 1, got {value!r}"
        if not (isinstance(self.max_L, int) and 0 <= self.max_L <= 3):
            yield "max_L", f"must be an integer from 0 to 3, got {self.max_L!r}"
        if not (
            isinstance(self.radial_mlp, tuple)
            and self.radial_mlp
            and all(isinstance(w, int) and w >= 1 for w in self.radial_mlp)
        ):
            yield "radial_mlp", f"must be widths (integers >= 1), got {self.radial_mlp!r}"
        if not _is_scalar_irreps(self.mlp_irreps):
            yield "mlp_irreps", f"must be scalar irreps such as '16x0e', got {self.mlp_irreps!r}"
        if not self.avg_num_neighbors > 0:
            yield "avg_num_neighbors", f"must be positive, got {self.avg_num_neighbors!r}"
        if not self.energy_weight >= 0:
            yield "energy_weight", f"must be >= 0, got {self.energy_weight!r}"
        if not self.forces_weight >= 0:
            yield "forces_weight", f"must be >= 0, got {self.forces_weight!r}"
        if self.energy_weight == 0 and self.forces_weight == 0:
            yield "forces_weight", "energy_weight and forces_weight cannot both be 0"
        if not self.weight_decay >= 0:
            yield "weight_decay", f"must be >= 0, got {self.weight_decay!r}"
        if not isinstance(self.amsgrad, bool):
            yield "amsgrad", f"must be true or false, got {self.amsgrad!r}"


def _is_scalar_irreps(text: Any) -> bool:
    """Whether `text` reads as e3nn scalar irreps ``NxOe`` (checked without e3nn)."""
    if not isinstance(text, str) or not text.strip():
        return False
    for part in text.split("+"):
        mul, sep, irrep = part.strip().partition("x")
        if not (sep and mul.isdigit() and int(mul) >= 1 and irrep in ("0e", "0o")):
            return False
    return True


class MACEModel(GraphPotential):
    """A MACE potential (mace-torch's ScaleShiftMACE) on top of graph.py's reference energies."""

    family = "mace"
    settings_class = MACESettings
    settings: MACESettings

    def build_network(self) -> torch.nn.Module:
        """ScaleShiftMACE as MACE's trainer builds ``--model MACE``, with zero E0s and shift."""
        m = _mace()
        s = self.settings
        hidden = m.o3.Irreps(
            (s.num_channels * m.o3.Irreps.spherical_harmonics(s.max_L)).sort().irreps.simplify()
        )
        z_table = self._z_table()
        with _quiet():
            return m.modules.ScaleShiftMACE(
                r_max=float(s.cutoff),
                num_bessel=s.num_radial_basis,
                num_polynomial_cutoff=s.num_cutoff_basis,
                max_ell=s.max_ell,
                interaction_cls=m.modules.interaction_classes[
                    "RealAgnosticResidualInteractionBlock"
                ],
                interaction_cls_first=m.modules.interaction_classes["RealAgnosticInteractionBlock"],
                num_interactions=s.num_interactions,
                num_elements=len(z_table),
                hidden_irreps=hidden,
                MLP_irreps=m.o3.Irreps(s.mlp_irreps),
                atomic_energies=np.zeros(len(z_table)),
                avg_num_neighbors=float(s.avg_num_neighbors),
                atomic_numbers=z_table.zs,
                correlation=s.correlation,
                gate=m.modules.gate_dict["silu"],
                radial_MLP=list(s.radial_mlp),
                atomic_inter_scale=1.0,
                atomic_inter_shift=0.0,
            )

    def _z_table(self) -> Any:
        """mace-torch's element table, in the model's element order (by atomic number)."""
        return _mace().AtomicNumberTable([atomic_numbers[s] for s in self.elements])

    def collate(
        self, numbers: Sequence[Sequence[int]], positions: Sequence[Tensor]
    ) -> dict[str, Tensor]:
        """The input dict MACE's forward reads, built with torch operations only.

        What mace-torch's `AtomicData.from_config` + `Batch.from_data_list` give for
        non-periodic frames (tests/test_mace.py checks energies, forces and the edge set
        against them), without their per-frame numpy/matscipy work (9 ms for 16 hexanes,
        paid at every steered-MD step and every training mini-batch; 0.5 ms here). Edges are
        graph.py's `molecule_pairs` within the cutoff, row 0 the sender, row 1 the receiver
        (MACE's edge vectors are ``positions[receiver] - positions[sender]``); distances are
        compared in float64 as matscipy does. `node_attrs` is the one-hot of the model's
        element table; shifts and cells are zeros (no periodic images); positions are fresh
        leaves needing grad.
        """
        device, dtype = self.device, self.dtype
        sizes = torch.tensor([len(frame) for frame in numbers], device=device)
        z = torch.as_tensor(
            np.concatenate([np.asarray(frame, dtype=np.int64).reshape(-1) for frame in numbers]),
            device=device,
        )
        self.species_index(sorted(set(z.tolist())))  # ModelError on elements not in the model
        zs = torch.tensor([atomic_numbers[s] for s in self.elements], device=device)
        species = torch.searchsorted(zs, z)  # model elements are sorted by atomic number
        graph_of = torch.repeat_interleave(torch.arange(len(numbers), device=device), sizes)
        pos = torch.cat([p.detach().reshape(-1, 3) for p in positions])
        pos = pos.to(device=device, dtype=dtype).requires_grad_(True)
        sender, receiver = molecule_pairs(pos.detach().double(), graph_of, self.settings.cutoff)
        n_edges, n_graphs = len(sender), len(numbers)
        return {
            "positions": pos,
            "node_attrs": torch.nn.functional.one_hot(species, len(self.elements)).to(dtype),
            "edge_index": torch.stack([sender, receiver]),
            "shifts": torch.zeros((n_edges, 3), device=device, dtype=dtype),
            "unit_shifts": torch.zeros((n_edges, 3), device=device, dtype=dtype),
            "cell": torch.zeros((3 * n_graphs, 3), device=device, dtype=dtype),
            "batch": graph_of,
            "ptr": torch.cat([sizes.new_zeros(1), torch.cumsum(sizes, 0)]),
            "head": torch.zeros(n_graphs, dtype=torch.long, device=device),
        }

    def forward(
        self, batch: dict[str, Tensor], forces: bool, training: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Energies (B,) without reference energies and forces (atoms, 3), MACE's own."""
        out = self.network(batch, training=training, compute_force=forces)
        f = out["forces"] if forces else torch.zeros_like(batch["positions"])
        return out["energy"], f

    def loss(
        self, e_pred: Tensor, f_pred: Tensor, e_ref: Tensor, f_ref: Tensor, n_atoms: Tensor
    ) -> Tensor:
        """MACE's WeightedEnergyForcesLoss: weighted per-atom energy MSE + force MSE."""
        m = _mace()
        counts = n_atoms.round().long()
        ptr = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
        ones = torch.ones_like(e_ref)
        ref = m.torch_geometric.data.Data(
            ptr=ptr, weight=ones, energy_weight=ones, forces_weight=ones, energy=e_ref, forces=f_ref
        )
        fn = m.loss(self.settings.energy_weight, self.settings.forces_weight)
        return fn.to(device=e_pred.device, dtype=e_pred.dtype)(
            ref, {"energy": e_pred, "forces": f_pred}
        )

    def optimizer(self) -> torch.optim.Optimizer:
        """Adam as MACE's trainer sets it up: amsgrad, weight decay on the interactions'
        linear and the products' weights (`mace.tools.scripts_utils.get_params_options`)."""
        net, s = self.network, self.settings
        decay, no_decay = [], []
        for name, param in net.interactions.named_parameters():
            is_linear = "linear.weight" in name or "skip_tp_full.weight" in name
            (decay if is_linear else no_decay).append(param)
        groups = [
            {"params": list(net.node_embedding.parameters()), "weight_decay": 0.0},
            {"params": decay, "weight_decay": s.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
            {"params": list(net.products.parameters()), "weight_decay": s.weight_decay},
            {"params": list(net.readouts.parameters()), "weight_decay": 0.0},
        ]
        return torch.optim.Adam(groups, lr=s.lr, amsgrad=s.amsgrad)
