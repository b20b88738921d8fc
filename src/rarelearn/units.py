"""Unit conversions. Inside rarelearn: eV, Angstrom, fs, K. kcal/mol and A/ps only at the edges."""

from ase import units as _ase_units

#: 1 eV in kcal/mol (ASE's CODATA value, ~23.06).
EV_TO_KCAL_MOL: float = 1.0 / (_ase_units.kcal / _ase_units.mol)
KCAL_MOL_TO_EV: float = 1.0 / EV_TO_KCAL_MOL


def ev_to_kcal_mol(value_ev: float) -> float:
    """Convert an energy from eV to kcal/mol."""
    return value_ev * EV_TO_KCAL_MOL


def kcal_mol_to_ev(value_kcal_mol: float) -> float:
    """Convert an energy from kcal/mol to eV."""
    return value_kcal_mol * KCAL_MOL_TO_EV


def speed_a_per_ps_to_a_per_fs(speed: float) -> float:
    """Convert a pulling speed from A/ps (config) to A/fs (internal)."""
    return speed / 1000.0
