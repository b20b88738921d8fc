"""Fast paths for one fixed molecule: static-index AEVs, their Jacobian, stacked member networks.

TorchANI's `AEVComputer` builds a neighbour list, sorts pairs into triples and scatters the
terms on every call; for a 20-atom molecule that bookkeeping (not the arithmetic) dominates the
cost. Here the pair and triple indices of a molecule of fixed size and element order are built
once. The physics stays TorchANI's: the radial and angular terms are the AEV computer's own
`radial` and `angular` modules, and the per-element networks are the models' own
`AtomicNetwork` weights, evaluated for all committee members at once (stacked weights, bmm).

Two derived quantities make training and committee inference cheap:

- `StaticAEV.aev_and_jacobian` returns the AEVs and their exact Jacobian with respect to the
  coordinates. Forces are then `-J^T dE/dAEV`, so force training no longer differentiates
  through the AEV twice per step (the AEVs of a frame never change during a fit).
- `StaticAEV.pullback_state` / `pullback` give the forces of one frame or a batch of
  replicas with autograd only on TorchANI's term functions; `StackedNetworks` evaluates every
  member's networks on one shared AEV with the driving member's backward written out;
  `ForcePath` joins them into the steered-MD force call, compiled with TorchScript.

The tables hold every pair and every triple of atoms, so they grow and are gathered as N^3
while the triples inside the angular cutoff grow as N: beyond `MAX_STATIC_ATOMS` atoms a
molecule takes `NeighborListAEV`, TorchANI's own `AEVComputer` (its neighbour list) behind
the same force-path interface, forces by autograd. `molecule_aev` makes that choice.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.func import jvp
from torchani.aev import AEVComputer
from torchani.nn import AtomicNetwork, parse_activation

#: Largest molecule the static all-pairs / all-triples tables are built for. A molecule of N
#: atoms has N (N-1) (N-2) / 2 triples, 64 bytes of indices each: 125 000 triples and 8 MB at
#: 64 atoms, 886 000 and 57 MB at 122 (C40H82). Memory is not what stops them, cost is: every
#: call gathers and screens all of them (the per-frame cost grows as N^3), while TorchANI's
#: neighbour list finds the few inside the cutoff (about linear in N). The two cost about the
#: same at 60 to 64 atoms (benchmarks/size.py); beyond, `NeighborListAEV` is the cheaper.
MAX_STATIC_ATOMS = 64

#: Frames per pass through `NeighborListAEV` when training on or evaluating a batch of a
#: molecule beyond `MAX_STATIC_ATOMS`: one pass holds every pair of its frames and, in
#: training, their double-backward graph (~25 MB per C40 frame), so the passes stay small; 4
#: frames train C40 as fast as 8 (benchmarks/training_memory.py, docs/architecture.md).
LARGE_MOLECULE_CHUNK = 4

#: How `molecule_aev` computes the AEVs of a molecule: ``auto`` (static tables up to
#: `MAX_STATIC_ATOMS` atoms, else TorchANI's neighbour list), ``static`` or ``neighbor_list``
#: (either one by name: the tests compare them on a molecule both can do).
AEV_PATHS = ("auto", "static", "neighbor_list")


class StaticAEV(torch.nn.Module):
    """ANI AEVs of a molecule with fixed atom count and element order, from TorchANI's terms.

    All pairs are kept and masked by the radial cutoff; triples are all pairs of neighbours of
    each central atom, selected by the angular cutoff at call time (as TorchANI does). Output
    layout is identical to `AEVComputer.forward`: radial blocks per neighbour element, then
    angular blocks per element pair.
    """

    def __init__(self, aev_computer: AEVComputer, elem_idxs: Tensor) -> None:
        super().__init__()
        elem = elem_idxs.to(torch.long).cpu()
        n_atoms = int(elem.shape[0])
        if n_atoms > MAX_STATIC_ATOMS:
            raise ValueError(
                f"static AEV tables are for <= {MAX_STATIC_ATOMS} atoms, not {n_atoms} "
                "(larger molecules take NeighborListAEV: see molecule_aev)"
            )
        self.radial = aev_computer.radial
        self.angular = aev_computer.angular
        self.radial_cutoff = float(aev_computer.radial.cutoff)
        self.angular_cutoff = float(aev_computer.angular.cutoff)
        self.n_atoms = n_atoms
        self.n_species = int(aev_computer.num_species)
        self.n_pairs_species = int(aev_computer.num_species_pairs)
        self.n_radial = int(aev_computer.radial.num_feats)
        self.n_angular = int(aev_computer.angular.num_feats)
        self.n_features = int(aev_computer.out_dim)
        s, f = self.n_species, self.n_features

        pi, pj = torch.triu_indices(n_atoms, n_atoms, 1)
        n_pairs = int(pi.shape[0])
        self.register_buffer("pair_i", pi, persistent=False)
        self.register_buffer("pair_j", pj, persistent=False)
        self.register_buffer(
            "radial_rows", torch.cat([pi * s + elem[pj], pj * s + elem[pi]]), persistent=False
        )
        pair_id = torch.full((n_atoms, n_atoms), -1, dtype=torch.long)
        pair_id[pi, pj] = torch.arange(n_pairs)
        pair_id[pj, pi] = torch.arange(n_pairs)
        # pair vector is x_j - x_i; the sign turns it into (side - centre)
        sign = torch.zeros(n_atoms, n_atoms)
        sign[pi, pj] = -1.0
        sign[pj, pi] = 1.0
        centre, side_a, side_b = [], [], []
        for c in range(n_atoms):
            others = [k for k in range(n_atoms) if k != c]
            for u in range(len(others)):
                for w in range(u + 1, len(others)):
                    centre.append(c)
                    side_a.append(others[u])
                    side_b.append(others[w])
        c_t = torch.tensor(centre, dtype=torch.long)
        a_t = torch.tensor(side_a, dtype=torch.long)
        b_t = torch.tensor(side_b, dtype=torch.long)
        pair_kind = aev_computer.triu_index.cpu()[elem[a_t], elem[b_t]].to(torch.long)
        self.register_buffer("tri_p1", pair_id[c_t, a_t], persistent=False)
        self.register_buffer("tri_p2", pair_id[c_t, b_t], persistent=False)
        self.register_buffer("tri_s1", -sign[c_t, a_t], persistent=False)
        self.register_buffer("tri_s2", -sign[c_t, b_t], persistent=False)
        self.register_buffer("tri_rows", c_t * self.n_pairs_species + pair_kind, persistent=False)
        self.register_buffer("tri_c", c_t, persistent=False)
        self.register_buffer("tri_a", a_t, persistent=False)
        self.register_buffer("tri_b", b_t, persistent=False)
        # rows of the flattened (atom, feature) Jacobian where each term block starts
        nr, na = self.n_radial, self.n_angular
        self.register_buffer("jac_rad_i", pi * f + elem[pj] * nr, persistent=False)
        self.register_buffer("jac_rad_j", pj * f + elem[pi] * nr, persistent=False)
        self.register_buffer("jac_tri", c_t * f + s * nr + pair_kind * na, persistent=False)

    def _geometry(self, coords: Tensor) -> tuple[Tensor, Tensor]:
        vec = coords.index_select(1, self.pair_j) - coords.index_select(1, self.pair_i)
        return vec, vec.norm(2, -1)

    def _inside_triples(self, dist: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Triples with both sides inside the angular cutoff, over all frames: the two side
        distances of every triple (B, T0), the selected flat ids, their frame and triple id."""
        n_tri = self.tri_p1.shape[0]
        d1 = dist.index_select(1, self.tri_p1)
        d2 = dist.index_select(1, self.tri_p2)
        sel = ((d1 <= self.angular_cutoff) & (d2 <= self.angular_cutoff)).flatten().nonzero()
        sel = sel.flatten()
        frame = torch.div(sel, n_tri, rounding_mode="floor")
        return d1, d2, sel, frame, sel - frame * n_tri

    def _triples(self, vec: Tensor, dist: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Triples inside the angular cutoff: (frame, triple id, v1, v2), vectors side - centre."""
        n_pairs = dist.shape[1]
        _, _, _, frame, tri = self._inside_triples(dist)
        flat = vec.reshape(-1, 3)
        v1 = flat.index_select(0, frame * n_pairs + self.tri_p1[tri]) * self.tri_s1[tri, None]
        v2 = flat.index_select(0, frame * n_pairs + self.tri_p2[tri]) * self.tri_s2[tri, None]
        return frame, tri, v1, v2

    def _angular_terms(self, v1: Tensor, v2: Tensor) -> Tensor:
        dists = torch.stack([v1.norm(2, -1), v2.norm(2, -1)])
        return self.angular(dists, torch.stack([v1, v2]))

    def _assemble(self, rad_terms: Tensor, frame: Tensor, tri: Tensor, ang_terms: Tensor) -> Tensor:
        b = rad_terms.shape[0]
        n, s, sp = self.n_atoms, self.n_species, self.n_pairs_species
        rad = rad_terms.new_zeros(b, n * s, self.n_radial)
        rad = rad.index_add(1, self.radial_rows, torch.cat([rad_terms, rad_terms], 1))
        rows = frame * (n * sp) + self.tri_rows[tri]
        ang = ang_terms.new_zeros(b * n * sp, self.n_angular).index_add(0, rows, ang_terms)
        return torch.cat([rad.view(b, n, s * self.n_radial), ang.view(b, n, -1)], -1)

    def forward(self, coords: Tensor) -> Tensor:
        """AEVs, shape (frames, atoms, features), differentiable with respect to coords."""
        vec, dist = self._geometry(coords)
        b, n_pairs = dist.shape
        mask = (dist <= self.radial_cutoff).to(coords.dtype).unsqueeze(-1)
        rad_terms = self.radial(dist.flatten()).view(b, n_pairs, self.n_radial) * mask
        frame, tri, v1, v2 = self._triples(vec, dist)
        return self._assemble(rad_terms, frame, tri, self._angular_terms(v1, v2))

    def aev_and_pullback(self, coords: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
        """AEVs (B, N, F) of frames (B, N, 3) and a function taking dE/dAEV to dE/dcoords
        (eager use of `pullback_state` and `pullback`, e.g. in the tests)."""
        with torch.enable_grad():
            aev, state = self.pullback_state(coords.detach())
        return aev, functools.partial(self.pullback, state)

    @torch.jit.export
    def pullback_state(self, coords: Tensor) -> tuple[Tensor, list[Tensor]]:
        """AEVs (B, N, F) of frames (B, N, 3), and what `pullback` needs (the force path).

        TorchANI's angular term is a product of functions it exposes separately:
        `compute_radial` of the two distances (T, 8), `compute_cos_angles` of the cosine
        (T, 4), and the cutoff of each distance; its radial term is `compute` times the
        cutoff. Only those functions (the physics, TorchANI's) are recorded by autograd, on
        leaves of one number per pair or triple (so grad mode must be on); the outer product,
        the gathers and scatters, and the geometry (cosine, distances) are differentiated by
        hand in `pullback`. Autograd through `ANIAngular.forward` as a whole records ~20 nodes
        on (triples, 32) tensors, and that backward cost more than the whole forward. The
        composition is checked against TorchANI's own forward in the tests.
        """
        b, n = coords.shape[0], self.n_atoms
        flat = coords.reshape(-1, 3)
        vec, dist = self._geometry(coords)
        inside = (dist <= self.radial_cutoff).to(coords.dtype).view(-1, 1)
        d1, d2, sel, frame, tri = self._inside_triples(dist)
        centre = frame * n + self.tri_c.index_select(0, tri)
        side_a = frame * n + self.tri_a.index_select(0, tri)
        side_b = frame * n + self.tri_b.index_select(0, tri)
        at_centre = flat.index_select(0, centre)
        v1 = flat.index_select(0, side_a) - at_centre
        v2 = flat.index_select(0, side_b) - at_centre
        r1 = d1.flatten().index_select(0, sel).unsqueeze(-1)
        r2 = d2.flatten().index_select(0, sel).unsqueeze(-1)
        r12 = torch.clamp(r1 * r2, min=1e-10)
        cos = (v1 * v2).sum(-1, keepdim=True) / r12
        leaf_dist = dist.view(-1, 1).detach().requires_grad_(True)
        leaf_cos = cos.detach().requires_grad_(True)
        leaf_r1 = r1.detach().requires_grad_(True)
        leaf_r2 = r2.detach().requires_grad_(True)
        shape = self.radial.compute(leaf_dist)
        cut = self.radial.cutoff_fn(leaf_dist, self.radial.cutoff)
        ang_shape = self.angular.compute_cos_angles(leaf_cos)
        mean_shape = self.angular.compute_radial(leaf_r1, leaf_r2)
        fc1 = self.angular.cutoff_fn(leaf_r1, self.angular.cutoff)
        fc2 = self.angular.cutoff_fn(leaf_r2, self.angular.cutoff)
        fc12 = fc1.detach() * fc2.detach()
        rad = shape.detach() * cut.detach() * inside
        outer = (mean_shape.detach() * fc12).unsqueeze(2) * ang_shape.detach().unsqueeze(1)
        terms = outer.view(-1, self.n_angular)
        aev = self._assemble(rad.view(b, dist.shape[1], -1), frame, tri, terms)
        rows = frame * (n * self.n_pairs_species) + self.tri_rows.index_select(0, tri)
        frame_atoms = (torch.arange(b, device=coords.device) * n).view(b, 1)
        pair_i = (frame_atoms + self.pair_i).flatten()
        pair_j = (frame_atoms + self.pair_j).flatten()
        unit = vec.reshape(-1, 3) / dist.view(-1, 1)
        state = [
            *(leaf_dist, leaf_cos, leaf_r1, leaf_r2),
            *(shape, cut, ang_shape, mean_shape, fc1, fc2),
            *(inside, fc12, rows, pair_i, pair_j, unit),
            *(centre, side_a, side_b, v1, v2, r1, r2, r12, cos),
        ]
        return aev, state

    @torch.jit.export
    def pullback(self, state: list[Tensor], grad_aev: Tensor) -> Tensor:
        """dE/dcoords (B, N, 3) from dE/dAEV (B, N, F), for the state of `pullback_state`."""
        leaf_dist, leaf_cos, leaf_r1, leaf_r2 = state[0], state[1], state[2], state[3]
        shape, cut, ang_shape, mean_shape, fc1, fc2 = (
            state[4],
            state[5],
            state[6],
            state[7],
            state[8],
            state[9],
        )
        inside, fc12, rows, pair_i, pair_j, unit = (
            state[10],
            state[11],
            state[12],
            state[13],
            state[14],
            state[15],
        )
        centre, side_a, side_b, v1, v2 = state[16], state[17], state[18], state[19], state[20]
        r1, r2, r12, cos = state[21], state[22], state[23], state[24]
        b, n = grad_aev.shape[0], self.n_atoms
        s, nr = self.n_species, self.n_radial
        n_pairs = self.pair_i.shape[0]
        g_rad = grad_aev[:, :, : s * nr].reshape(b, n * s, nr).index_select(1, self.radial_rows)
        g_rad = (g_rad[:, :n_pairs] + g_rad[:, n_pairs:]).reshape(-1, nr) * inside
        g_terms = grad_aev[:, :, s * nr :].reshape(-1, self.n_angular).index_select(0, rows)
        g_terms = g_terms.view(-1, mean_shape.shape[1], ang_shape.shape[1])
        # contractions of the (T, 8, 4) outer-product gradient, as batched products
        ang_value, mean_value = ang_shape.detach(), mean_shape.detach()
        g_mean_bare = torch.bmm(g_terms, ang_value.unsqueeze(-1)).squeeze(-1)
        g_fc12 = (g_mean_bare * mean_value).sum(-1, keepdim=True)
        g_ang = torch.bmm(mean_value.unsqueeze(1), g_terms).squeeze(1) * fc12
        grad_outputs: list[Tensor | None] = [
            g_rad * cut.detach(),
            (g_rad * shape.detach()).sum(-1, keepdim=True),
            g_ang,
            g_mean_bare * fc12,
            g_fc12 * fc2.detach(),
            g_fc12 * fc1.detach(),
        ]
        grads = torch.autograd.grad(
            [shape, cut, ang_shape, mean_shape, fc1, fc2],
            [leaf_dist, leaf_cos, leaf_r1, leaf_r2],
            grad_outputs,
        )
        g_dist, g_cos, g_r1, g_r2 = grads[0], grads[1], grads[2], grads[3]
        assert g_dist is not None and g_cos is not None
        assert g_r1 is not None and g_r2 is not None
        g_vec = g_dist * unit
        # d cos / d v1 = v2 / (r1 r2) - cos v1 / r1^2, and d r1 / d v1 = v1 / r1
        g1 = g_cos * (v2 / r12 - cos * v1 / (r1 * r1)) + g_r1 * v1 / r1
        g2 = g_cos * (v1 / r12 - cos * v2 / (r2 * r2)) + g_r2 * v2 / r2
        out = torch.zeros(b * n, 3, dtype=grad_aev.dtype, device=grad_aev.device)
        out.index_add_(0, pair_j, g_vec).index_add_(0, pair_i, -g_vec)
        out.index_add_(0, side_a, g1).index_add_(0, side_b, g2)
        return out.index_add_(0, centre, -(g1 + g2)).view(b, n, 3)

    @torch.no_grad()
    def aev_and_jacobian(self, coords: Tensor) -> tuple[Tensor, Tensor]:
        """AEVs (B, N, F) and their exact Jacobian d AEV / d coords, shape (B, N*F, N*3).

        The per-pair and per-triple derivatives come from forward-mode differentiation of
        TorchANI's radial and angular term modules; they are scattered into the dense Jacobian
        by the chain rule through the pair/triple vectors.
        """
        vec, dist = self._geometry(coords)
        b, n_pairs = dist.shape
        n, f, nr, na = self.n_atoms, self.n_features, self.n_radial, self.n_angular
        d = dist.flatten()
        rad, drad = jvp(self.radial, (d,), (torch.ones_like(d),))
        mask = (dist <= self.radial_cutoff).to(coords.dtype).unsqueeze(-1)
        rad = rad.view(b, n_pairs, nr) * mask
        drad = drad.view(b, n_pairs, nr) * mask
        frame, tri, v1, v2 = self._triples(vec, dist)
        n_tri = v1.shape[0]
        # 6 directional derivatives of every triple's terms in one pass (rows are independent)
        eye = torch.eye(3, dtype=coords.dtype, device=coords.device)
        zero = torch.zeros_like(eye)
        t1 = torch.cat([eye, zero]).repeat_interleave(n_tri, 0)
        t2 = torch.cat([zero, eye]).repeat_interleave(n_tri, 0)
        ang, dang = jvp(self._angular_terms, (v1.repeat(6, 1), v2.repeat(6, 1)), (t1, t2))
        ang = ang[:n_tri]
        dang = dang.view(6, n_tri, na)
        aev = self._assemble(rad, frame, tri, ang)

        jac = coords.new_zeros(b * n * f * n * 3)
        comp = torch.arange(3, device=coords.device)
        stride_row = n * 3
        # radial: d/dx_j = R'(d) u, d/dx_i = -R'(d) u, for the rows of atom i and of atom j
        unit = vec / dist.unsqueeze(-1)
        jr = (drad.unsqueeze(-1) * unit.unsqueeze(2)).reshape(b, n_pairs, nr * 3)
        feat = torch.arange(nr, device=coords.device)
        frame_off = (torch.arange(b, device=coords.device) * (n * f * stride_row)).view(b, 1, 1)
        for rows in (self.jac_rad_i, self.jac_rad_j):
            base = (rows.view(1, -1, 1) + feat.view(1, 1, -1)) * stride_row + frame_off
            for atoms, sgn in ((self.pair_j, 1.0), (self.pair_i, -1.0)):
                idx = (base.unsqueeze(-1) + (atoms.view(1, -1, 1, 1) * 3 + comp)).reshape(-1)
                jac.index_add_(0, idx, (jr * sgn).reshape(-1))
        # angular: side atoms get dT/dv, the centre gets minus their sum
        d1 = dang[:3].permute(1, 2, 0)
        d2 = dang[3:].permute(1, 2, 0)
        feat = torch.arange(na, device=coords.device)
        base = (self.jac_tri[tri].view(-1, 1) + feat.view(1, -1)) * stride_row
        base = base + (frame * (n * f * stride_row)).view(-1, 1)
        for atoms, val in ((self.tri_a, d1), (self.tri_b, d2), (self.tri_c, -(d1 + d2))):
            idx = (base.unsqueeze(-1) + (atoms[tri].view(-1, 1, 1) * 3 + comp)).reshape(-1)
            jac.index_add_(0, idx, val.reshape(-1))
        return aev, jac.view(b, n * f, n * 3)


class NeighborListAEV(torch.nn.Module):
    """AEVs of a molecule of any size through TorchANI's `AEVComputer` as is (its neighbour
    list), with the interface of `StaticAEV` that the committee uses: ``forward``,
    ``pullback_state`` and ``pullback`` (forces by autograd through TorchANI). No Jacobian:
    training on larger molecules differentiates through the AEV (`ANIModel.batch_loss`).
    """

    def __init__(self, aev_computer: AEVComputer, elem_idxs: Tensor) -> None:
        super().__init__()
        self.computer = aev_computer
        self.n_atoms = int(elem_idxs.shape[0])
        self.register_buffer("elem", elem_idxs.to(torch.long).view(1, -1), persistent=False)

    def forward(self, coords: Tensor) -> Tensor:
        """AEVs, shape (frames, atoms, features), differentiable with respect to coords."""
        species = self.elem.expand(coords.shape[0], -1).contiguous()
        return self.computer(species, coords)

    @torch.jit.export
    def pullback_state(self, coords: Tensor) -> tuple[Tensor, list[Tensor]]:
        """AEVs (B, N, F) of frames (B, N, 3) and what `pullback` needs: the coordinates as
        an autograd leaf and the AEVs with their graph (grad mode must be on)."""
        leaf = coords.detach().requires_grad_(True)
        aev = self.forward(leaf)
        return aev.detach(), [leaf, aev]

    @torch.jit.export
    def pullback(self, state: list[Tensor], grad_aev: Tensor) -> Tensor:
        """dE/dcoords (B, N, 3) from dE/dAEV (B, N, F), for the state of `pullback_state`."""
        grad_outputs: list[Tensor | None] = [grad_aev]
        grad = torch.autograd.grad([state[1]], [state[0]], grad_outputs)[0]
        assert grad is not None
        return grad


def aev_path_for(n_atoms: int, path: str = "auto") -> str:
    """The path (``static`` or ``neighbor_list``) that `path`, one of `AEV_PATHS`, takes for
    a molecule of `n_atoms` atoms: ``auto`` is static up to `MAX_STATIC_ATOMS` atoms."""
    if path not in AEV_PATHS:
        raise ValueError(f"AEV path must be one of {AEV_PATHS}, not {path!r}")
    if path == "auto":
        return "static" if n_atoms <= MAX_STATIC_ATOMS else "neighbor_list"
    return path


def molecule_aev(
    aev_computer: AEVComputer, elem_idxs: Tensor, path: str = "auto"
) -> StaticAEV | NeighborListAEV:
    """The AEV module for one molecule (element indices in atom order) along `path`."""
    if aev_path_for(int(elem_idxs.shape[0]), path) == "static":
        return StaticAEV(aev_computer, elem_idxs)
    return NeighborListAEV(aev_computer, elem_idxs)


class StackedNetworks(torch.nn.Module):
    """Every member's per-element networks for one molecule, as stacked weight tensors.

    Built from the members' TorchANI `AtomicNetwork`s (weights copied, not retrained): each
    layer of all members is one batched product on the shared AEV. Weights are plain tensor
    lists (not parameters) so that TorchScript can index them in a loop.
    """

    def __init__(
        self, member_networks: Sequence[dict[str, AtomicNetwork]], atom_symbols: Sequence[str]
    ) -> None:
        super().__init__()
        self.n_members = len(member_networks)
        symbols = list(dict.fromkeys(atom_symbols))
        first = member_networks[0][atom_symbols[0]]
        # plain tensor lists (see above) do not follow `.to`: made where the weights are
        device = first.final_layer.weight.device
        self.group_index = [
            torch.tensor(
                [i for i, s in enumerate(atom_symbols) if s == sym], dtype=torch.long, device=device
            )
            for sym in symbols
        ]
        self.activation = parse_activation(first.activation)
        self.is_gelu = isinstance(self.activation, torch.nn.GELU)
        self.gelu_approximate = getattr(self.activation, "approximate", "none")
        self.has_bias = bool(first.has_biases)
        self.weights: list[Tensor] = []
        self.biases: list[Tensor] = []
        self.n_layers: list[int] = []
        for sym in symbols:
            layers = [*member_networks[0][sym].layers, member_networks[0][sym].final_layer]
            self.n_layers.append(len(layers))
            for k in range(len(layers)):
                w = torch.stack([self._layer(nets[sym], k).weight.t() for nets in member_networks])
                self.weights.append(w.detach().clone())
                if self.has_bias:
                    b = torch.stack([self._layer(nets[sym], k).bias for nets in member_networks])
                    self.biases.append(b.detach().clone().unsqueeze(1))

    @staticmethod
    def _layer(net: AtomicNetwork, k: int) -> torch.nn.Linear:
        layers = [*net.layers, net.final_layer]
        return layers[k]

    def forward(self, aev: Tensor) -> Tensor:
        """Energies without self energies, shape (members, frames).

        `aev` is (frames, atoms, features), shared by all members, or
        (members, frames, atoms, features), one input per member (for per-member gradients).
        """
        per_member = aev.dim() == 4
        b = aev.shape[-3]
        total = aev.new_zeros(self.n_members, b)
        w_at = 0
        for g, idx in enumerate(self.group_index):
            if per_member:
                x = aev.index_select(2, idx).reshape(aev.shape[0], -1, aev.shape[-1])
            else:
                x = aev.index_select(1, idx).reshape(1, -1, aev.shape[-1])
            n_l = self.n_layers[g]
            for k in range(n_l):
                x = torch.matmul(x, self.weights[w_at + k])
                if self.has_bias:
                    x = x + self.biases[w_at + k]
                if k < n_l - 1:
                    x = self.activation(x)
            w_at += n_l
            total = total + x.view(x.shape[0], b, -1).sum(-1)
        return total

    def _activation_grad(self, grad: Tensor, pre: Tensor) -> Tensor:
        """grad * activation'(pre): ATen's own GELU backward, else autograd on the activation."""
        if self.is_gelu:
            return torch.ops.aten.gelu_backward(grad, pre, approximate=self.gelu_approximate)
        leaf = pre.detach().requires_grad_(True)
        grad_outputs: list[Tensor | None] = [grad]
        result = torch.autograd.grad([self.activation(leaf)], [leaf], grad_outputs)[0]
        assert result is not None
        return result

    def _forward_keeping_preactivations(self, aev: Tensor) -> tuple[Tensor, list[list[Tensor]]]:
        """Every member's energies (members, frames) and, per element group, the hidden
        layers' pre-activations (members, rows, width): what a written-out backward needs.
        No autograd graph: the weights are constants."""
        b = aev.shape[0]
        energies = aev.new_zeros(self.n_members, b)
        groups: list[list[Tensor]] = []
        w_at = 0
        for g, idx in enumerate(self.group_index):
            x = aev.index_select(1, idx)
            rows = x.shape[0] * x.shape[1]
            n_l = self.n_layers[g]
            pre: list[Tensor] = []
            h = x.reshape(1, rows, -1)
            for k in range(n_l):
                w = self.weights[w_at + k]
                if self.has_bias:
                    z = torch.baddbmm(self.biases[w_at + k], h.expand(w.shape[0], -1, -1), w)
                else:
                    z = torch.matmul(h, w)
                if k < n_l - 1:
                    pre.append(z)
                    h = self.activation(z)
                else:
                    energies += z.view(w.shape[0], b, -1).sum(-1)
            groups.append(pre)
            w_at += n_l
        return energies, groups

    @torch.jit.export
    def energies_and_input_grad(self, aev: Tensor, member: int) -> tuple[Tensor, Tensor]:
        """All members' energies (members, frames) and d E_member / d aev (frames, atoms, F).

        One forward pass for every member, then the backward pass of the driving member alone,
        written out layer by layer: the same arithmetic autograd does, without its per-node
        overhead. `aev` is (frames, atoms, features); the frames (one, or a batch of replicas)
        share every product.
        """
        energies, groups = self._forward_keeping_preactivations(aev)
        b = aev.shape[0]
        grad = torch.zeros_like(aev)
        w_at = 0
        for g, idx in enumerate(self.group_index):
            rows = b * idx.shape[0]
            n_l = self.n_layers[g]
            pre = groups[g]
            # backward of the driving member: dE/dh of the last hidden layer is its output weight
            up = self.weights[w_at + n_l - 1][member].t().expand(rows, -1)
            for k in range(n_l - 2, -1, -1):
                up = self._activation_grad(up, pre[k][member]).mm(
                    self.weights[w_at + k][member].t()
                )
            grad.index_add_(1, idx, up.view(b, -1, up.shape[-1]))
            w_at += n_l
        return energies, grad

    @torch.jit.export
    def energies_and_mean_input_grad(self, aev: Tensor) -> tuple[Tensor, Tensor]:
        """All members' energies (members, frames) and d mean_m(E_m) / d aev (frames, atoms, F).

        As `energies_and_input_grad`, with the backward pass of every member at once (batched
        products over the member axis), averaged: the forces of the committee-mean energy.
        """
        energies, groups = self._forward_keeping_preactivations(aev)
        b = aev.shape[0]
        grad = torch.zeros_like(aev)
        w_at = 0
        for g, idx in enumerate(self.group_index):
            rows = b * idx.shape[0]
            n_l = self.n_layers[g]
            pre = groups[g]
            # (members, rows, last hidden): each member's output weight, then back layer by layer
            up = self.weights[w_at + n_l - 1].transpose(1, 2).expand(-1, rows, -1)
            for k in range(n_l - 2, -1, -1):
                up = torch.bmm(
                    self._activation_grad(up, pre[k]), self.weights[w_at + k].transpose(1, 2)
                )
            mean = up.mean(0)
            grad.index_add_(1, idx, mean.view(b, -1, mean.shape[-1]))
            w_at += n_l
        return energies, grad


class ForcePath(torch.nn.Module):
    """The steered-MD force call of a committee, compiled once with TorchScript.

    Every member's energy, the driving member's forces: the AEV's `pullback_state`
    (`StaticAEV`, or `NeighborListAEV` for a larger molecule), the
    driver's graph-free forward and written-out backward, the AEV pullback and, at the same
    time on TorchScript's inter-op pool (a second core), the other members' forward passes.
    TorchScript runs these ~200 small kernels without Python between them, which is most of
    their cost for one 20-atom frame, and `torch.jit.fork` really overlaps (Python threads
    do not: the kernels are too small to outlast the GIL). Both halves are independent, so
    the result does not depend on their timing. Call it with grad mode on (autograd records
    TorchANI's term functions) and, for reproducible runs, under
    ``torch.jit.optimized_execution(False)`` (see `CommitteeEvaluator`).
    """

    def __init__(
        self,
        aev: StaticAEV | NeighborListAEV,
        driver: StackedNetworks,
        others: StackedNetworks | None,
        order: Tensor,
        mean: bool = False,
    ) -> None:
        super().__init__()
        self.aev = aev
        self.driver = driver
        #: the driver stack holds every member and the forces are those of their mean energy
        self.mean = mean
        self.has_others = others is not None
        self.others = others if others is not None else driver
        #: rows of [driver, others...] that give the members in their own order
        self.register_buffer("order", order.to(torch.long), persistent=False)

    def forward(self, coords: Tensor, overlap: bool = True) -> tuple[Tensor, Tensor]:
        """Energies (members, frames) without self energies, driving forces (frames, N, 3).

        ``overlap=False`` runs the other members after the driver, on this thread (when the
        cores are busy with a batch already).
        """
        aev, state = self.aev.pullback_state(coords)
        if self.mean:
            energies, grad = self.driver.energies_and_mean_input_grad(aev)
            return energies.index_select(0, self.order), -self.aev.pullback(state, grad)
        if self.has_others and overlap:
            future = torch.jit.fork(self.others.forward, aev)
            driver_energy, grad = self.driver.energies_and_input_grad(aev, 0)
            forces = -self.aev.pullback(state, grad)
            energies = torch.cat([driver_energy, torch.jit.wait(future)])
        else:
            driver_energy, grad = self.driver.energies_and_input_grad(aev, 0)
            forces = -self.aev.pullback(state, grad)
            energies = driver_energy
            if self.has_others:
                energies = torch.cat([driver_energy, self.others.forward(aev)])
        return energies.index_select(0, self.order), forces
