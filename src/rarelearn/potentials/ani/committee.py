"""ANI's fast committee paths: members trained on one shared set of AEVs, evaluated on one.

Every member of an ANI committee reads the same AEVs (the AEV has no weights), so a committee
trains its members side by side in threads on one shared set of features and Jacobians
(`train_side_by_side`), and evaluates a molecule by computing its AEV once and running all
members' networks as stacked weights (`ANICommitteeEvaluator`). `ANIModel` hands these to
the committee through the `Potential` hooks `train_members` and `committee_evaluator`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from ase import Atoms
from torch import Tensor

from rarelearn.potentials.ani.aev import ForcePath, StackedNetworks
from rarelearn.potentials.ani.features import FeatureCache
from rarelearn.potentials.results import BatchEvalResult, EvalResult, force_spread
from rarelearn.threads import ProgressSum, run_side_by_side, torch_threads

if TYPE_CHECKING:
    from rarelearn.potentials.ani.model import ANIModel


def train_side_by_side(
    model_class: type[ANIModel],
    tasks: Sequence[Any],
    frames: Sequence[Atoms],
    threads: int | None,
    progress: Callable[[int, int], None] | None,
    cache: FeatureCache | None,
) -> list[ANIModel]:
    """Train every task's member in this process on one shared set of features, side by side
    in threads (`rarelearn.threads`: one torch thread per member, bit-identical results)."""
    # weights are drawn from torch's global generator: here, in one thread, in member order
    models = [model_class.untrained(t.elements, t.settings, t.seed, t.init) for t in tasks]
    with torch_threads(tasks[0].settings.threads):
        feats = models[0].training_features(frames, cache=cache)
    epochs = ProgressSum(progress, [t.settings.epochs for t in tasks])

    def job(k: int) -> Callable[[], ANIModel]:
        task = tasks[k]
        return lambda: models[k].train_on(
            feats, task.train_idx, task.val_idx, task.seed, epochs.reporter(k)
        )

    return run_side_by_side([job(k) for k in range(len(tasks))], threads, epochs)


class ANICommitteeEvaluator:
    """Fast energies/forces/UQ of one molecule (fixed atoms and order) for every member.

    The AEV is computed once per frame (static pair/triple tables, TorchANI terms) and shared;
    all members' networks run as stacked weights. `forces`: ``best`` (driving member only, the
    SMD case), ``mean`` (forces of the mean energy), ``all`` (every member, for force UQ).
    ``best`` avoids a whole-graph autograd pass: one graph-free forward of every member, the
    driver's backward written out and the AEV's pullback, compiled with TorchScript
    (`ForcePath`); ``mean`` and ``all`` differentiate with autograd.
    Runs with one torch thread by default (tiny kernels; see `torch_threads`).
    A molecule beyond the static tables (`aev.MAX_STATIC_ATOMS` atoms) gets its shared
    AEV from TorchANI's own neighbour-list `AEVComputer` instead (`aev_path`, one of
    `aev.AEV_PATHS`: ``auto`` chooses by size); everything else stays as it is.
    """

    def __init__(
        self,
        members: Sequence[ANIModel],
        numbers: Sequence[int],
        best: int,
        mean_driver: bool = False,
        threads: int | None = 1,
        aev_path: str = "auto",
    ) -> None:
        atoms = Atoms(numbers=list(numbers))
        for m in members:
            m.check_elements([atoms])
        self.numbers = tuple(int(z) for z in numbers)
        self.threads = threads
        first = members[0]
        self.dtype, self.device = first.dtype, first.device
        self.aev = first.molecule_aev(self.numbers, aev_path)
        symbols = atoms.get_chemical_symbols()
        nets = [m._atom_networks() for m in members]
        #: the forces of the committee-mean energy drive the dynamics
        self.mean_driver = mean_driver
        #: the member whose forces drive the dynamics (when not the mean)
        self.best = best
        self.nets = StackedNetworks(nets, symbols)
        if self.mean_driver:
            path = ForcePath(
                self.aev, StackedNetworks(nets, symbols), None, torch.arange(len(nets)), mean=True
            )
        else:
            others = [k for k in range(len(nets)) if k != self.best]
            stacked = [self.best, *others]
            path = ForcePath(
                self.aev,
                StackedNetworks([nets[self.best]], symbols),
                StackedNetworks([nets[k] for k in others], symbols) if others else None,
                torch.tensor([stacked.index(k) for k in range(len(nets))]),
            )
        self.force_path = torch.jit.script(path.to(self.device))
        self.sae = np.array([m.self_energy_of(self.numbers) for m in members])

    def driving_energy(self, energies: np.ndarray) -> np.ndarray:
        """The energy whose forces drive the dynamics, from member energies (..., members)."""
        return energies.mean(axis=-1) if self.mean_driver else energies[..., self.best]

    def __call__(self, positions: np.ndarray, forces: str = "best") -> EvalResult:
        """Evaluate one geometry (N, 3) in Angstrom; ``forces="best"`` gives the driver's
        forces (the best member's, another member's, or the committee mean's)."""
        member_f = None
        with torch_threads(self.threads):
            if forces == "best":
                e, f = self._driver_call(np.asarray(positions)[None])
                e, f = e[:, 0], f[0]
            else:
                e, f, member_f = self._autograd_call(positions, forces)
        energies = e.to(torch.float64).numpy() + self.sae
        out = EvalResult(
            energies=energies,
            forces=f.to(torch.float64).numpy(),
            energy_std=float(energies.std()),
        )
        if member_f is not None:
            out.member_forces = member_f
            out.force_std = force_spread(member_f)
        return out

    def batch(self, positions: np.ndarray) -> BatchEvalResult:
        """Evaluate replicas (R, N, 3) of the molecule at once: every member's energy, the
        driving member's forces and the energy-std UQ, for R frames in one pass (shared
        matrix products: the per-frame cost falls with R; see benchmarks/speed.py)."""
        positions = np.asarray(positions, dtype=float)
        if positions.ndim != 3 or positions.shape[1:] != (len(self.numbers), 3):
            raise ValueError(
                f"positions must be (replicas, {len(self.numbers)}, 3), got {positions.shape}"
            )
        with torch_threads(self.threads):
            e, f = self._driver_call(positions)
        energies = e.to(torch.float64).numpy().T + self.sae
        return BatchEvalResult(
            energies=energies,
            forces=f.to(torch.float64).numpy(),
            energy_std=energies.std(axis=1),
        )

    def _driver_call(self, positions: np.ndarray) -> tuple[Tensor, Tensor]:
        """Member energies (M, R) and the driver's forces (R, N, 3) through `ForcePath`.

        Without TorchScript's graph optimisation: after two profiling calls it would switch to
        its own derivative formulas, which round differently, so a run would depend on how
        many calls the process had made before it (and a resumed campaign would differ from
        an uninterrupted one). The interpreter alone gives the speed-up.
        """
        with torch.enable_grad(), torch.jit.optimized_execution(False):
            # one frame: the other members run beside the driver; a batch of replicas already
            # keeps both cores busy (intra-op threads), where overlapping only oversubscribes
            e, f = self.force_path(
                torch.as_tensor(positions, dtype=self.dtype, device=self.device),
                overlap=len(positions) == 1,
            )
        return e.detach().cpu(), f.detach().cpu()

    def _autograd_call(
        self, positions: np.ndarray, forces: str
    ) -> tuple[Tensor, Tensor, np.ndarray | None]:
        """Energies, driving forces and (``all``) every member's forces through autograd."""
        x = torch.tensor(np.asarray(positions)[None], dtype=self.dtype, device=self.device)
        x.requires_grad_(True)
        member_f = None
        with torch.enable_grad():
            aev = self.aev(x)
            if forces == "mean":
                e = self.nets(aev)[:, 0]
                f = -torch.autograd.grad(e.mean(), x)[0][0]
                e = e.detach()
            elif forces == "all":
                n_m = self.nets.n_members
                rep = aev.detach().expand(n_m, *aev.shape).clone().requires_grad_(True)
                e = self.nets(rep)[:, 0]
                g = torch.autograd.grad(e.sum(), rep)[0]
                mf = -torch.autograd.grad(aev, x, g, is_grads_batched=True)[0][:, 0]
                member_f = mf.to("cpu", torch.float64).numpy()
                f = mf.mean(0) if self.mean_driver else mf[self.best]
                e = e.detach()
            else:
                raise ValueError(f"forces must be best, mean or all, not {forces!r}")
        return e.detach().cpu(), f.detach().cpu(), member_f
