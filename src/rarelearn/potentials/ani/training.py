"""Training an ANI model on prepared features: self energies, the loop, the final errors.

The paper's recipe (PROTOCOL section 3), as `ANIModel.train_on` runs it: self-atomic energies
by least squares on the training frames (`fit_self_energies`); shuffled mini-batches within
groups of one composition (`batches`); loss mean((dE)^2 / N) + alpha mean((dF)^2)
(`batch_loss`, forces from the cached AEV Jacobians on the fast path, through TorchANI's AEV
otherwise); AdamW with a plateau or cosine schedule, optional early stopping, the parameters
with the best validation energy MSE kept (`train_loop`); energy and force MAE on train,
validation and all frames (`split_metrics`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from rarelearn.errors import ModelError
from rarelearn.potentials.ani.aev import LARGE_MOLECULE_CHUNK, MAX_STATIC_ATOMS
from rarelearn.potentials.ani.features import TrainingFeatures, jacobian_forces

if TYPE_CHECKING:
    from rarelearn.potentials.ani.model import ANIModel

#: Learning-rate schedules of `ANISettings.lr_schedule`.
LR_SCHEDULES = ("plateau", "cosine")


def fit_self_energies(model: ANIModel, feats: TrainingFeatures, train_idx: Sequence[int]) -> None:
    counts, energies = [], []
    group_energies = [grp["energy"].cpu().numpy() for grp in feats.groups]
    for i in train_idx:
        g, k = feats.frame_group[i]
        counts.append(feats.groups[g]["counts"].numpy())
        energies.append(float(group_energies[g][k]))
    sol, *_ = np.linalg.lstsq(np.array(counts), np.array(energies), rcond=None)
    model.self_energies = {s: float(v) for s, v in zip(model.elements, sol, strict=True)}


def batches(
    model: ANIModel,
    feats: TrainingFeatures,
    idx: Sequence[int],
    gen: torch.Generator,
    shuffle: bool,
) -> list[tuple[int, Tensor]]:
    """Mini-batches (group, local frame indices) within composition groups."""
    per_group: dict[int, list[int]] = {}
    for i in idx:
        g, k = feats.frame_group[i]
        per_group.setdefault(g, []).append(k)
    bs = model.settings.batch_size
    out: list[tuple[int, Tensor]] = []
    for g in sorted(per_group):
        local = torch.tensor(per_group[g], dtype=torch.long)
        if shuffle:
            local = local[torch.randperm(len(local), generator=gen)]
        out.extend((g, chunk) for chunk in local.split(bs))
    if shuffle and len(per_group) > 1:
        order = torch.randperm(len(out), generator=gen).tolist()
        out = [out[o] for o in order]
    return out


def targets(model: ANIModel, grp: dict[str, Any], rows: Tensor) -> Tensor:
    sae = float(grp["counts"] @ sae_vector(model))
    return (grp["energy"][rows] - sae).to(model.dtype)


def sae_vector(model: ANIModel) -> Tensor:
    return torch.tensor([model.self_energies[s] for s in model.elements], dtype=torch.float64)


def batch_loss(model: ANIModel, grp: dict[str, Any], rows: Tensor, fast: bool) -> Tensor:
    """Training loss of one mini-batch: mean (dE)^2/N + alpha * mean (dF)^2."""
    n_atoms = grp["n_atoms"]
    e_ref = targets(model, grp, rows)
    f_ref = grp["forces"][rows]
    elem = grp["elem"]
    if fast:
        aev = grp["aev"][rows].requires_grad_(True)
        e = model.network_energies(aev, elem)
        g = torch.autograd.grad(e.sum(), aev, create_graph=True)[0]
        f = jacobian_forces(g, [grp["jac"][r] for r in rows.tolist()])
    else:
        x = grp["coords"][rows].clone().requires_grad_(True)
        species = elem.expand(len(rows), -1).contiguous()
        e = model.networks(species, model.aev_computer(species, x))
        f = -torch.autograd.grad(e.sum(), x, create_graph=True)[0]
    e_loss = ((e - e_ref) ** 2 / n_atoms).mean()
    f_loss = ((f - f_ref) ** 2).mean()
    return e_loss + model.settings.force_weight * f_loss


def backward_batch(model: ANIModel, grp: dict[str, Any], rows: Tensor, fast: bool) -> float:
    """One mini-batch's loss, its gradient accumulated into the parameters.

    Molecules beyond the static tables train on the baseline path in chunks of
    `LARGE_MOLECULE_CHUNK` frames, each loss weighted by its share of the batch: the same mean
    loss and gradient (summed in another order) with a fraction of the memory. Up to 64 atoms,
    and on the fast path, one pass as before (the same weights bit for bit).
    """
    n_atoms = int(grp["n_atoms"])
    if fast or n_atoms <= MAX_STATIC_ATOMS or len(rows) <= LARGE_MOLECULE_CHUNK:
        loss = batch_loss(model, grp, rows, fast)
        loss.backward()
        return loss.item()
    total = 0.0
    for chunk in rows.split(LARGE_MOLECULE_CHUNK):
        loss = batch_loss(model, grp, chunk, fast) * (len(chunk) / len(rows))
        loss.backward()
        total += loss.item()
    return total


def val_energy_mse(model: ANIModel, feats: TrainingFeatures, val_idx: Sequence[int]) -> float:
    if not val_idx:
        return math.nan
    sq, n = 0.0, 0
    with torch.no_grad():
        for g, rows in batches(model, feats, val_idx, torch.Generator(), shuffle=False):
            grp = feats.groups[g]
            e = model.network_energies(grp["aev"][rows], grp["elem"])
            sq += float(((e.double() - targets(model, grp, rows).double()) ** 2).sum())
            n += len(rows)
    return sq / n


def train_loop(
    model: ANIModel,
    feats: TrainingFeatures,
    train_idx: Sequence[int],
    val_idx: Sequence[int],
    gen: torch.Generator,
    fast: bool,
    on_epoch: Callable[[int], None] | None = None,
) -> None:
    st = model.settings
    params = list(model.networks.parameters())
    opt = torch.optim.AdamW(params, lr=st.lr, weight_decay=st.weight_decay)
    plateau, cosine = None, None
    if st.lr_schedule == "cosine":
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=max(1, st.epochs - 1), eta_min=st.min_lr
        )
    elif st.lr_schedule == "plateau" and st.plateau_patience is not None:
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=st.plateau_factor, patience=st.plateau_patience, min_lr=st.min_lr
        )
    elif st.lr_schedule not in LR_SCHEDULES:
        raise ModelError(f"lr_schedule must be one of {LR_SCHEDULES}, got {st.lr_schedule!r}")
    # the starting weights compete too, so a warm start never ends worse on validation
    best = val_energy_mse(model, feats, val_idx) if val_idx else math.inf
    best_state = copy.deepcopy(model.networks.state_dict())
    since_best = 0
    hist = model.history
    for epoch in range(st.epochs):
        total, count = 0.0, 0
        for g, rows in batches(model, feats, train_idx, gen, shuffle=True):
            opt.zero_grad(set_to_none=True)
            total += backward_batch(model, feats.groups[g], rows, fast) * len(rows)
            opt.step()
            count += len(rows)
        val = val_energy_mse(model, feats, val_idx) if val_idx else total / count
        hist.train_loss.append(total / count)
        hist.val_energy_mse.append(val)
        hist.epochs_run = epoch + 1
        if on_epoch is not None:
            on_epoch(epoch + 1)
        if plateau is not None:
            plateau.step(val)
        if cosine is not None:
            cosine.step()
        if val < best:
            best, since_best = val, 0
            hist.best_epoch = epoch
            best_state = copy.deepcopy(model.networks.state_dict())
        else:
            since_best += 1
            if st.patience is not None and since_best >= st.patience:
                break
    model.networks.load_state_dict(best_state)


def feature_predictions(
    model: ANIModel, grp: dict[str, Any], chunk: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Energies (B,) and forces (B, N, 3) of a feature group's frames: from the cached AEVs
    and Jacobians when present (no AEV recomputed), else through `energies_forces`."""
    if grp.get("jac") is None:
        if int(grp["n_atoms"]) <= MAX_STATIC_ATOMS:
            return model.energies_forces(grp["numbers"], grp["coords"])
        # beyond the static tables a few frames at a time, as in training (`backward_batch`)
        parts = [
            model.energies_forces(grp["numbers"], coords)
            for coords in grp["coords"].split(LARGE_MOLECULE_CHUNK)
        ]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    energies, forces = [], []
    for start in range(0, len(grp["aev"]), chunk):
        aev = grp["aev"][start : start + chunk].detach().requires_grad_(True)
        with torch.enable_grad():
            e = model.network_energies(aev, grp["elem"])
            g = torch.autograd.grad(e.sum(), aev)[0]
        with torch.no_grad():
            f = jacobian_forces(g, grp["jac"][start : start + chunk])
        energies.append(e.detach().to(torch.float64))
        forces.append(f.to(torch.float64))
    sae = model.self_energy_of(grp["numbers"])
    return torch.cat(energies).cpu().numpy() + sae, torch.cat(forces).cpu().numpy()


def split_metrics(
    model: ANIModel, feats: TrainingFeatures, train_idx: Sequence[int], val_idx: Sequence[int]
) -> dict[str, float]:
    """Energy and force MAE on train, validation and all frames of the fit."""
    e_pred, f_err, e_ref = {}, {}, {}
    for grp in feats.groups:
        e, f = feature_predictions(model, grp)
        energy_ref = grp["energy"].cpu().numpy()
        forces_ref = grp["forces"].double().cpu().numpy()
        for k, i in enumerate(grp["frames"]):
            e_pred[i] = e[k]
            e_ref[i] = float(energy_ref[k])
            f_err[i] = np.abs(f[k] - forces_ref[k]).mean()
    out: dict[str, float] = {}
    for name, idx in (("train", train_idx), ("val", val_idx)):
        if idx:
            out[f"{name}_energy_mae_eV"] = float(np.mean([abs(e_pred[i] - e_ref[i]) for i in idx]))
            out[f"{name}_force_mae_eV_A"] = float(np.mean([f_err[i] for i in idx]))
    all_idx = sorted(e_pred)
    out["all_energy_mae_eV"] = float(np.mean([abs(e_pred[i] - e_ref[i]) for i in all_idx]))
    out["all_force_mae_eV_A"] = float(np.mean([f_err[i] for i in all_idx]))
    return out
