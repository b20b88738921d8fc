"""Reference labelers: picklable specs that build ASE calculators, and failure-tolerant labeling.

A ``LabelerSpec`` is plain data, so it can be pickled to a worker on another machine, which
rebuilds the calculator there with ``spec.build()``. ``label_frames`` labels many frames and
records each failure (exception, SCF not converged, non-finite numbers, atoms overlapping) with
its reason instead of stopping.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import os
import shutil
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator

from rarelearn.errors import LabelingError

#: Below this interatomic distance (A) a geometry is rejected before the reference is called:
#: tblite returns an energy even for a 0.3 A C-C contact (FIELD-NOTES), which would poison training.
DEFAULT_MIN_DISTANCE_A = 0.5

_XTB_METHODS = {"gfn2-xtb": "GFN2-xTB", "gfn1-xtb": "GFN1-xTB", "xtb": "GFN2-xTB"}
_DFTB3_HUBBARD_DERIVATIVES = {"H": -0.1857, "C": -0.1492, "N": -0.1535, "O": -0.1575}
_DFTB3_MAX_ANGULAR_MOMENTUM = {"H": "s", "C": "p", "N": "p", "O": "p"}


@dataclass(frozen=True)
class LabelerSpec:
    """What reference method to run and with which options; ``build()`` makes the calculator."""

    method: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """A short label for provenance, e.g. ``GFN2-xTB`` or ``pyscf:B3LYP/6-31G*``."""
        kind = self.method.lower()
        if kind in _XTB_METHODS:
            return _XTB_METHODS[kind]
        if kind == "dftb":
            return "DFTB3/3ob"
        if kind == "pyscf":
            return f"pyscf:{self.options.get('xc', 'B3LYP')}/{self.options.get('basis', '6-31G*')}"
        return self.method

    def build(self, reuse_wavefunction: bool = False) -> Calculator:
        """Build the ASE calculator.

        ``reuse_wavefunction=False`` makes every frame start its SCF from scratch, so a label does
        not depend on which frame was computed before it (same numbers in any executor or chunk);
        dynamics pass ``True`` for speed, since consecutive MD frames are close.
        """
        kind = self.method.lower()
        if kind in _XTB_METHODS:
            return _build_xtb(_XTB_METHODS[kind], self.options, reuse_wavefunction)
        if kind == "dftb":
            return _build_dftb(self.options)
        if kind == "pyscf":
            from rarelearn.pyscf_calculator import PySCFCalculator

            return PySCFCalculator(**self.options)
        if ":" in self.method:
            return _build_custom(self.method, self.options)
        raise LabelingError(
            f"unknown method {self.method!r}: use GFN2-xTB, GFN1-xTB, dftb, pyscf, "
            "or an ASE calculator class as 'module:Class'"
        )

    def check(self) -> None:
        """Build the calculator once so that an unknown option, a missing program or package
        fails before any work, with one message. PySCF's calculator would pass an unknown
        option on to ASE unnoticed, so its options are checked against its signature."""
        if self.method.lower() == "pyscf":
            from rarelearn.pyscf_calculator import PySCFCalculator

            parameters = inspect.signature(PySCFCalculator.__init__).parameters
            known = {n for n, p in parameters.items() if n != "self" and p.kind != p.VAR_KEYWORD}
            unknown = sorted(set(self.options) - known)
            if unknown:
                raise LabelingError(f"unknown pyscf option(s) {unknown}; allowed: {sorted(known)}")
        try:
            self.build()
        except (TypeError, ValueError) as exc:
            raise LabelingError(
                f"cannot build labeler {self.method!r} with options {self.options}: {exc}"
            ) from exc


def parse_options(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` strings as labeler options; a value is read as TOML (``true``, ``2``,
    ``1e-8``, ``"x"``) and otherwise kept as text (``PBE``, ``6-31G*``)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise LabelingError(f"--option expects key=value, got {item!r}")
        try:
            value = tomllib.loads(f"value = {text.strip()}")["value"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        options[key] = value
    return options


def make_labeler(method: str = "GFN2-xTB", **options: Any) -> LabelerSpec:
    """A labeler spec, validated now (unknown method, missing program) rather than mid-campaign."""
    spec = LabelerSpec(method=method, options=dict(options))
    spec.check()
    return spec


def _build_xtb(method: str, options: dict[str, Any], reuse_wavefunction: bool) -> Calculator:
    try:
        import tblite.ase  # noqa: F401  (fail here, with advice, rather than at the first frame)
    except ImportError as exc:
        raise LabelingError("GFN-xTB needs the tblite package: pip install tblite") from exc
    allowed = {"accuracy", "electronic_temperature", "max_iterations", "charge", "multiplicity"}
    unknown = set(options) - allowed
    if unknown:
        raise LabelingError(f"unknown xTB option(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return _single_threaded_tblite_class()(
        method=method, verbosity=0, cache_api=reuse_wavefunction, **options
    )


@functools.cache
def _single_threaded_tblite_class() -> type[Calculator]:
    """TBLite whose calls run on one OpenMP thread, so that seeded runs are bit-identical.

    With two threads, tblite's reductions vary at round-off level from run to run (positions of
    a seeded propane SMD differed by 3e-14 A after 300 steps), and MD amplifies that. tblite and
    torch share one libgomp, so a process-wide OMP_NUM_THREADS would also slow torch; the limit
    is applied around each call instead (13 us; one thread costs ~20 % of a 20-atom xTB call).
    """
    from tblite.ase import TBLite
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()

    class SingleThreadedTBLite(TBLite):
        def calculate(self, *args: Any, **kwargs: Any) -> None:
            with controller.limit(limits=1, user_api="openmp"):
                super().calculate(*args, **kwargs)

    return SingleThreadedTBLite


def _build_dftb(options: dict[str, Any]) -> Calculator:
    """DFTB3/3ob as in the paper, through ASE's Dftb calculator (needs the dftb+ program)."""
    from ase.calculators.dftb import Dftb

    command = os.environ.get("ASE_DFTB_COMMAND") or shutil.which("dftb+")
    if not command:
        raise LabelingError(
            "method dftb needs the DFTB+ program: install dftb+ (not on PyPI; conda-forge has it) "
            "and put it on PATH, or set ASE_DFTB_COMMAND"
        )
    skf_dir = Path(options.get("slako_dir") or os.environ.get("DFTB_PREFIX", ""))
    elements = options.get("elements", ("C", "H"))
    missing = [
        f"{a}-{b}.skf"
        for a in elements
        for b in elements
        if not (skf_dir / f"{a}-{b}.skf").is_file()
    ]
    if not str(skf_dir) or missing:
        raise LabelingError(
            "method dftb needs the 3ob Slater-Koster files: set DFTB_PREFIX (or option slako_dir) "
            f"to the folder holding them; missing in {str(skf_dir) or '(unset)'}: {missing}"
        )
    parameters: dict[str, Any] = {
        "Hamiltonian_SCC": "Yes",
        "Hamiltonian_SCCTolerance": 1e-7,
        "Hamiltonian_ThirdOrderFull": "Yes",
        "Hamiltonian_HCorrection_": "Damping",
        "Hamiltonian_HCorrection_Exponent": 4.00,
        "Hamiltonian_HubbardDerivs_": "",
        "Hamiltonian_MaxAngularMomentum_": "",
    }
    for element in elements:
        parameters[f"Hamiltonian_HubbardDerivs_{element}"] = _DFTB3_HUBBARD_DERIVATIVES[element]
        parameters[f"Hamiltonian_MaxAngularMomentum_{element}"] = (
            f'"{_DFTB3_MAX_ANGULAR_MOMENTUM[element]}"'
        )
    extra = {k: v for k, v in options.items() if k not in {"slako_dir", "elements"}}
    parameters.update(extra)
    os.environ.setdefault("ASE_DFTB_COMMAND", f"{command} > PREFIX.out")
    os.environ["DFTB_PREFIX"] = str(skf_dir) + os.sep
    return Dftb(**parameters)


def _build_custom(target: str, options: dict[str, Any]) -> Calculator:
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LabelingError(
            f"cannot import module {module_name!r} for method {target!r}: {exc}"
        ) from exc
    calculator_class = getattr(module, class_name, None)
    if calculator_class is None:
        raise LabelingError(f"module {module_name!r} has no class {class_name!r}")
    try:
        return calculator_class(**options)
    except TypeError as exc:
        raise LabelingError(f"cannot build {target} with options {options}: {exc}") from exc


@dataclass
class LabelResult:
    """Energy (eV) and forces (eV/A) of one frame, or the reason it failed."""

    index: int
    energy: float | None = None
    forces: np.ndarray | None = None
    error: str | None = None
    #: what the reference method says about the label (`LABEL_METADATA`, e.g. the spin state
    #: of a PySCF label); stored with it
    metadata: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _overlap_error(atoms: Atoms, min_distance_A: float) -> str | None:
    if len(atoms) < 2:
        return None
    distances = atoms.get_all_distances()
    np.fill_diagonal(distances, np.inf)
    closest = float(distances.min())
    if closest < min_distance_A:
        i, j = np.unravel_index(int(np.argmin(distances)), distances.shape)
        return f"atoms {i} and {j} overlap ({closest:.3f} A < {min_distance_A} A)"
    return None


#: Calculator results recorded with each label besides energy and forces.
LABEL_METADATA = ("spin_state", "s_squared")


def label_one(
    calculator: Calculator, atoms: Atoms, index: int, min_distance_A: float
) -> LabelResult:
    """Label one frame; any failure becomes a LabelResult with its reason."""
    overlap = _overlap_error(atoms, min_distance_A)
    if overlap:
        return LabelResult(index, error=overlap)
    frame = atoms.copy()
    frame.calc = calculator
    try:
        energy = float(frame.get_potential_energy())
        forces = np.array(frame.get_forces(), dtype=float)
    except Exception as exc:  # any reference program failure is a per-frame failure
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return LabelResult(index, error=f"{type(exc).__name__}: {message}"[:500])
    converged = calculator.results.get("converged")
    if converged is False:
        return LabelResult(index, error="SCF not converged")
    if not math.isfinite(energy) or not np.all(np.isfinite(forces)):
        return LabelResult(index, error="non-finite energy or forces")
    metadata = {k: calculator.results[k] for k in LABEL_METADATA if k in calculator.results}
    return LabelResult(index, energy=energy, forces=forces, metadata=metadata or None)


def label_frames(
    spec: LabelerSpec,
    frames: Sequence[Atoms],
    indices: Sequence[int] | None = None,
    min_distance_A: float = DEFAULT_MIN_DISTANCE_A,
) -> list[LabelResult]:
    """Label frames in order; failures are recorded, never raised.

    Each frame gets a freshly built calculator: tblite keeps state between calls even with its
    cache off, which made a label differ in the 10th digit with the frame computed before it.
    A fresh build costs ~0.3 ms and makes labels identical in any executor, order or chunking.
    """
    if indices is None:
        indices = range(len(frames))
    if len(indices) != len(frames):
        raise ValueError("indices and frames differ in length")
    return [
        label_one(spec.build(), atoms, int(index), min_distance_A)
        for atoms, index in zip(frames, indices, strict=True)
    ]


def attach_label(atoms: Atoms, result: LabelResult) -> Atoms:
    """A copy of ``atoms`` carrying the label as a SinglePointCalculator (ASE's labeled frame)."""
    if not result.ok:
        raise ValueError(f"frame {result.index} has no label: {result.error}")
    labeled = atoms.copy()
    labeled.calc = SinglePointCalculator(labeled, energy=result.energy, forces=result.forces)
    return labeled
