"""Property-based tests of the user-facing inputs: the TOML config, structure files, --pull.

Held for any input: each reader either accepts it or raises `RarelearnError` (the config
loader: `ConfigError`) with a message naming the setting, file or option; no other exception
(KeyError, TypeError, ValueError, UnicodeDecodeError, OverflowError, ASE or numpy errors) leaks
out. What is accepted is usable: a `CampaignConfig` whose resolved TOML reloads to the same
configuration, a molecule of at least two real atoms with finite coordinates, pulled groups
that are in range, free of repeats and disjoint. The explicit examples are bugs these
properties found.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w
from ase import Atoms
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from rarelearn.cli import _parse_group, resolve_system
from rarelearn.config import CampaignConfig, load_config
from rarelearn.dynamics import SMDSettings, Thermostat
from rarelearn.errors import ConfigError, RarelearnError
from rarelearn.molecules import PulledAtoms, build_alkane, read_structure
from rarelearn.potentials.ani import ANISettings
from rarelearn.potentials.mace import MACESettings
from rarelearn.potentials.schnet import SchNetSettings
from rarelearn.reference import EquilibriumSettings
from rarelearn.selection import SelectionSettings

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------------------------------------
# Values of any TOML type: the config loader sees only these.

SCALARS = st.one_of(
    st.integers(-(2**64), 2**64),
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308]),
    st.sampled_from([10**400, -(10**400)]),
    st.text(max_size=8),
    st.booleans(),
)
ANY_VALUE = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(min_size=1, max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def _plain(value: Any) -> Any:
    """A dataclass default as TOML writes it (tuples as lists)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _near(default: Any) -> st.SearchStrategy[Any]:
    """Values of the default's type around it, so that valid documents are common too."""
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(-2, 2 * default + 3)
    if isinstance(default, float):
        return st.floats(-1.0, 2.0 * default + 1.0)
    if isinstance(default, str):
        return st.sampled_from([default, "", " ", "other"])
    if isinstance(default, list | tuple):
        return st.lists(st.integers(-1, 200), max_size=4)
    if isinstance(default, dict):
        return st.dictionaries(
            st.sampled_from(["C", "H", "O"]), st.lists(st.integers(-1, 64), max_size=3)
        )
    return st.integers(-2, 8)  # settings that default to unset (None)


def _defaults(cls: type) -> dict[str, Any]:
    out = {}
    for f in fields(cls):
        if not f.init:
            continue
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def _section(cls: type, skip: tuple[str, ...] = (), extra: dict | None = None) -> st.SearchStrategy:
    """A table of some of ``cls``'s settings (plus, rarely, an unknown one) with random values."""
    defaults = {k: v for k, v in _defaults(cls).items() if k not in skip}
    choices = {
        name: st.one_of(_near(d), ANY_VALUE)
        if d is None
        else st.one_of(st.just(_plain(d)), _near(d), ANY_VALUE)
        for name, d in defaults.items()
    }
    choices.update(extra or {})
    choices["not_a_setting"] = ANY_VALUE
    names = sorted(choices)
    keys = st.lists(st.sampled_from(names), unique=True, max_size=4)
    table = keys.flatmap(lambda ks: st.fixed_dictionaries({k: choices[k] for k in ks}))
    return st.one_of(table, table, table, ANY_VALUE)


THERMOSTAT = _section(Thermostat)
SMD = _section(SMDSettings, skip=("thermostat",), extra={"thermostat": THERMOSTAT})
REFERENCE = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "equilibrium": _section(EquilibriumSettings),
            "smd": SMD,
            "replicas": st.one_of(st.integers(-1, 3), ANY_VALUE),
            "relax_geometry": st.one_of(st.booleans(), ANY_VALUE),
        },
    ),
    ANY_VALUE,
)


def _config_section(name: str) -> st.SearchStrategy:
    from rarelearn import config as module

    classes = {
        "system": module.SystemConfig,
        "labeler": module.LabelerConfig,
        "selection": SelectionSettings,
        "executor": module.ExecutorConfig,
        "store": module.StoreConfig,
        "stop": module.StopConfig,
    }
    if name == "committee":
        families = {"ani": ANISettings, "schnet": SchNetSettings, "mace": MACESettings}
        return _section(
            module.CommitteeConfig,
            skip=tuple(families),
            extra={name: _section(cls) for name, cls in families.items()},
        )
    return _section(classes[name])


TOP_LEVEL = {
    "name": st.one_of(st.just("run"), ANY_VALUE),
    "out": st.one_of(st.just("runs/x"), ANY_VALUE),
    "seed": st.one_of(st.integers(-2, 5), ANY_VALUE),
    "iterations": st.one_of(st.integers(-1, 5), ANY_VALUE),
    "baselines": st.one_of(st.booleans(), ANY_VALUE),
    "baseline_smd_every": st.one_of(st.integers(-1, 5), ANY_VALUE),
    "reference": REFERENCE,
    **{
        name: _config_section(name)
        for name in ("system", "labeler", "committee", "selection", "executor", "store", "stop")
    },
    "not_a_section": ANY_VALUE,
}
DOCUMENTS = st.lists(st.sampled_from(sorted(TOP_LEVEL)), unique=True, max_size=4).flatmap(
    lambda ks: st.fixed_dictionaries({k: TOP_LEVEL[k] for k in ks})
)


def _names(document: Any) -> set[str]:
    """Every key of a nested document: one of them is the setting an error must name."""
    if isinstance(document, dict):
        return set(document) | {n for v in document.values() for n in _names(v)}
    if isinstance(document, list):
        return {n for v in document for n in _names(v)}
    return set()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the files of every example (hypothesis forbids function-scoped tmp_path)."""
    return tmp_path_factory.mktemp("properties")


def _load_twice(path: Path) -> CampaignConfig | RarelearnError:
    """Load ``path`` twice: the outcome (config or error message) must not change."""
    outcomes = []
    for _ in range(2):
        try:
            outcomes.append(load_config(path))
        except RarelearnError as exc:
            outcomes.append(exc)
    first, second = outcomes
    event(f"config: {type(first).__name__}")
    if isinstance(first, RarelearnError):
        assert type(second) is type(first) and str(second) == str(first)
    else:
        assert isinstance(first, CampaignConfig) and first.to_toml() == second.to_toml()
    return first


@SETTINGS
@given(document=DOCUMENTS)
@example(document={"selection": {"min_energy_kcal_mol": 10**400}})
@example(document={"reference": {"equilibrium": {"temperature_K": "hot"}}})
@example(document={"reference": {"smd": {"thermostat": {"temperature_K": "cold"}}}})
@example(document={"reference": []})
@example(document={"reference": {"smd": 1}})
@example(document={"committee": 1})
@example(document={"committee": {"ani": {"layers": {"C": 5}}}})
@example(document={"committee": {"ani": {"layers": [1]}}})
@example(document={"committee": {"ani": {"default_layers": 3}}})
@example(document={"committee": {"ani": {"lr": "fast"}}})
@example(document={"store": {"url": 5}})
@example(document={"labeler": {"options": 0}})
@example(document={"out": 5})
@example(document={"seed": -1})
@example(document={"system": {"pull": [1, 2]}})
@example(document={"reference": {"relax_geometry": "yes"}})
@example(document={"reference": {"replicas": True}})
@example(document={"stop": {"tolerance_kcal_mol": math.inf}})
@example(document={"committee": {"ani": {"weight_decay": -1e-5}}})
@example(document={"committee": {"ani": {"min_lr": -1.0}}})
@example(document={"committee": {"ani": {"jacobian_cache_mb": -1.0}}})
@example(document={"committee": {"ani": {"activation": "relu"}}})
@example(document={"reference": {"smd": {"break_factor": 1.0}}})
@example(document={"reference": {"smd": {"min_distance_A": 4.0}}})
@example(document={"reference": {"seed": 3}})
@example(document={"selection": {"noise_amplitude_A": 0.0}})
def test_config_document_is_accepted_or_names_the_setting(
    folder: Path, document: dict[str, Any]
) -> None:
    """Any TOML document of known (and unknown) settings loads or fails with a ConfigError."""
    path = folder / "document.toml"
    path.write_text(tomli_w.dumps(document))
    outcome = _load_twice(path)
    if isinstance(outcome, RarelearnError):
        assert isinstance(outcome, ConfigError)
        assert any(name in str(outcome) for name in _names(document)), outcome
        return
    _assert_meaningful(outcome)
    # The resolved configuration a run folder keeps must reload to the same configuration.
    resolved = folder / "resolved.toml"
    resolved.write_text(outcome.to_toml())
    assert load_config(resolved, preset_name="paper").to_toml() == outcome.to_toml()


def _assert_meaningful(config: CampaignConfig) -> None:
    """What an accepted configuration means: signs, ranges, known names, consistent pairs."""
    ani = config.committee.ani
    assert ani.weight_decay >= 0 and ani.jacobian_cache_mb >= 0
    assert 0 <= ani.min_lr <= ani.lr
    assert ani.activation in ("gelu", "celu")
    assert 0 < ani.plateau_factor < 1
    smd = config.reference.smd
    assert smd.break_factor > 1 and 0 < smd.min_distance_A < smd.isolated_atom_A
    assert config.reference.seed == config.seed >= 0
    selection = config.selection
    assert selection.n_copies == 0 or selection.noise_amplitude_A > 0


@SETTINGS
@given(content=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
@example(content=b"\xff")
@example(content=b'name = "\xc3"')
def test_config_file_of_any_bytes_is_accepted_or_rejected(folder: Path, content: bytes) -> None:
    """Arbitrary bytes in a .toml file: a config or a RarelearnError naming file or setting."""
    path = folder / "bytes.toml"
    path.write_bytes(content)
    outcome = _load_twice(path)
    if isinstance(outcome, RarelearnError) and str(path) not in str(outcome):
        # Not about the file, so it parsed: the message names one of its settings.
        assert any(name in str(outcome) for name in _names(tomllib.loads(content.decode())))


# ---------------------------------------------------------------------------------------------
# Structure files.

EXTENSIONS = ["xyz", "extxyz", "pdb", "traj", "cif", "json", "sdf", ""]


def _check_structure(path: Path) -> None:
    """Read ``path`` twice: a usable molecule both times, or a RarelearnError naming the file."""
    outcomes = []
    for _ in range(2):
        try:
            outcomes.append(read_structure(path))
        except RarelearnError as exc:
            assert str(path) in str(exc), exc
            outcomes.append(str(exc))
    first, second = outcomes
    event(f"structure: {'read' if isinstance(first, Atoms) else 'rejected'}")
    if isinstance(first, Atoms):
        assert len(first) >= 2
        assert np.isfinite(first.positions).all()
        assert (first.numbers > 0).all()
        assert isinstance(second, Atoms) and np.array_equal(first.positions, second.positions)
    else:
        assert first == second


@SETTINGS
@given(extension=st.sampled_from(EXTENSIONS), content=st.binary(max_size=300))
def test_structure_file_of_any_bytes(folder: Path, extension: str, content: bytes) -> None:
    """Arbitrary bytes under any structure extension (or none)."""
    path = folder / (f"structure.{extension}" if extension else "structure")
    path.write_bytes(content)
    _check_structure(path)


SDF_ETHANE = """ethane
  rarelearn

  2  1  0  0  0  0  0  0  0  0999 V2000
    0.0000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
    1.5300    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
  1  2  1  0  0  0  0
M  END
$$$$
"""


@pytest.fixture(scope="module")
def valid_files(folder: Path) -> dict[str, bytes]:
    """Ethane in every structure format: the files that the damage below starts from."""
    from ase.io import write

    contents = {"sdf": SDF_ETHANE.encode()}
    for extension in ("xyz", "extxyz", "pdb", "traj", "cif", "json"):
        path = folder / f"ethane.{extension}"
        write(path, build_alkane(2))
        contents[extension] = path.read_bytes()
    return contents


@pytest.mark.filterwarnings("ignore::UserWarning")  # ASE warns about some damaged files
@SETTINGS
@given(
    extension=st.sampled_from(EXTENSIONS[:-1]),
    cut=st.floats(0.0, 1.0),
    damage=st.lists(st.tuples(st.floats(0.0, 1.0), st.binary(min_size=1, max_size=3)), max_size=3),
)
def test_damaged_structure_file(
    folder: Path,
    valid_files: dict[str, bytes],
    extension: str,
    cut: float,
    damage: list[tuple[float, bytes]],
) -> None:
    """A valid ethane file cut short and with a few bytes overwritten: read or rejected."""
    content = bytearray(valid_files[extension])
    for where, replacement in damage:
        start = int(where * len(content))
        content[start : start + len(replacement)] = replacement
    content = content[: max(1, int(cut * len(content)))] if cut < 1.0 else content
    path = folder / f"damaged.{extension}"
    path.write_bytes(bytes(content))
    _check_structure(path)


GOOD_COORDINATE = st.floats(-10, 10)
COORDINATE = st.one_of(GOOD_COORDINATE, st.sampled_from(["nan", "inf", "-inf", "1e999", "x", ""]))
GOOD_SYMBOL = st.sampled_from(["C", "H", "O"])
SYMBOL = st.one_of(GOOD_SYMBOL, st.sampled_from(["c", "X", "Xx", "Uuo", "0", "6", "", "é"]))
# Clean atom lines (so that some files are read) or lines with anything in them.
ATOM_LINES = st.one_of(
    st.lists(st.tuples(GOOD_SYMBOL, *[GOOD_COORDINATE] * 3), min_size=2, max_size=6),
    st.lists(st.tuples(SYMBOL, COORDINATE, COORDINATE, COORDINATE), max_size=6),
)


@st.composite
def xyz_files(draw: st.DrawFn) -> str:
    """An xyz(-like) file: a (possibly wrong) atom count, a comment, atom lines, maybe cut."""
    atoms = draw(ATOM_LINES)
    exact = st.just(str(len(atoms)))
    count = draw(st.one_of(exact, exact, st.integers(-1, 8).map(str), st.text(max_size=3)))
    comment = draw(st.sampled_from(["", "molecule", 'Properties=species:S:1:pos:R:3 pbc="F F F"']))
    lines = [count, comment, *(" ".join(map(str, atom)) for atom in atoms)]
    text = "\n".join(lines) + "\n"
    cut = draw(st.integers(0, len(text)))
    return draw(st.one_of(st.just(text), st.just(text[:cut])))


@SETTINGS
@given(extension=st.sampled_from(["xyz", "extxyz"]), text=xyz_files())
@example(extension="xyz", text="2\n\nC 0 0 nan\nC 0 0 1.5\n")
@example(extension="xyz", text="2\n\nC 0 0 inf\nC 0 0 1.5\n")
@example(extension="xyz", text="2\n\nX 0 0 0\nC 0 0 1.5\n")
def test_structured_xyz_file(folder: Path, extension: str, text: str) -> None:
    """Xyz files with random counts, symbols (valid or not), coordinates (incl. nan/inf), cuts."""
    path = folder / f"molecule.{extension}"
    path.write_text(text)
    _check_structure(path)


# ---------------------------------------------------------------------------------------------
# Pulled atoms (--pull and system.pull).

INDEX_TEXT = st.one_of(
    st.integers(-3, 30).map(str),
    st.sampled_from(["", " ", " 1", "2 ", "+3", "1_0", "٣", "0x1", "1.0", "9" * 5000]),
    st.text(max_size=6),
)
GROUP_TEXT = st.one_of(
    st.lists(st.integers(0, 19).map(str), min_size=1, max_size=3).map(",".join),
    st.lists(INDEX_TEXT, max_size=4).map(",".join),
    st.text(max_size=10),
)


@SETTINGS
@given(text=GROUP_TEXT)
@example(text="1_0")
@example(text="0, 1")
@example(text="+3")
def test_parse_group(text: str) -> None:
    """A --pull group is a tuple of ints or a RarelearnError naming the option and the text."""
    try:
        group = _parse_group(text, "--pull")
    except RarelearnError as exc:
        assert "--pull" in str(exc)
        event("group: rejected")
        return
    event("group: parsed")
    assert group and all(isinstance(i, int) and i >= 0 for i in group)
    # plain ASCII digits only: int() would also read "1_0" as 10, " 1", "+1" or "٣" as 3
    assert all(set(part) <= set("0123456789") and part for part in text.split(","))


@SETTINGS
@given(
    chain=st.one_of(st.none(), st.integers(2, 12), st.integers(-2, 1), st.integers(101, 10**6)),
    pull=st.one_of(
        st.none(),
        st.lists(GROUP_TEXT, min_size=2, max_size=2),
        st.lists(GROUP_TEXT, max_size=3),
    ),
)
@example(chain=0, pull=None)
@example(chain=None, pull=["0", "0,1"])
@example(chain=None, pull=["0,0", "5"])
@example(chain=None, pull=["0"])
@example(chain=None, pull=["0", "5", "7"])
def test_resolve_system(chain: int | None, pull: list[str] | None) -> None:
    """Any chain length and --pull texts: a molecule with valid pulled groups, or an error."""
    try:
        atoms, pulled = resolve_system(chain, None, pull)
    except RarelearnError:
        event("system: rejected")
        return
    event("system: resolved")
    if chain is not None:
        assert (atoms.numbers == 6).sum() == chain
    _assert_valid(pulled, len(atoms))


def _assert_valid(pulled: PulledAtoms, n_atoms: int) -> None:
    groups = (pulled.group_a, pulled.group_b)
    assert all(groups) and not set(pulled.group_a) & set(pulled.group_b)
    assert all(len(set(g)) == len(g) and all(0 <= i < n_atoms for i in g) for g in groups)


INDEX_LIST = st.lists(st.one_of(st.integers(-3, 12), st.integers(-(2**70), 2**70)), max_size=4)


@SETTINGS
@given(
    groups=st.one_of(
        st.lists(st.lists(st.integers(0, 11), min_size=1, max_size=3), min_size=2, max_size=2),
        st.lists(INDEX_LIST, max_size=3),
    ),
    n_atoms=st.one_of(st.just(12), st.integers(0, 12)),
)
@example(groups=[[1, 1], [2]], n_atoms=5)
@example(groups=[[1]], n_atoms=5)
def test_pulled_atoms_from_integer_lists(groups: list[list[int]], n_atoms: int) -> None:
    """Integer lists as system.pull holds them: valid groups or a RarelearnError."""
    try:
        pulled = PulledAtoms.from_list(groups)
        pulled.validate(n_atoms)
    except RarelearnError:
        event("groups: rejected")
        return
    event("groups: valid")
    _assert_valid(pulled, n_atoms)
