"""The NNP families rarelearn can train, by the name `committee.backend` takes.

Each entry names the module holding the family's `Potential` subclass and settings
dataclass (the TOML section ``committee.<name>``), and the optional packages it needs with
the command that installs them. Modules are imported only when a family is used, so a missing
optional package costs nothing until then, and then one clear message (`require_family`).
Adding a family: one module, one entry here.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

from rarelearn.errors import RarelearnError


class MissingPackageError(RarelearnError):
    """A family's optional library is not installed (the message gives the install command)."""


@dataclass(frozen=True)
class Family:
    """Where a family lives and what it needs."""

    module: str
    model_class: str
    settings_class: str
    packages: tuple[str, ...] = ()
    install: str = ""


FAMILIES: dict[str, Family] = {
    "ani": Family("rarelearn.potentials.ani", "ANIModel", "ANISettings"),
    "schnet": Family(
        "rarelearn.potentials.schnet",
        "SchNetModel",
        "SchNetSettings",
        packages=("torch_geometric",),
        install='pip install -e ".[schnet]"  (torch-geometric)',
    ),
    "mace": Family(
        "rarelearn.potentials.mace",
        "MACEModel",
        "MACESettings",
        packages=("mace", "e3nn"),
        install='pip install -e ".[mace]"  (mace-torch==0.3.16)',
    ),
}


def missing_packages(name: str) -> list[str]:
    """The optional packages family `name` needs that are not installed."""
    return [p for p in family_entry(name).packages if importlib.util.find_spec(p) is None]


def family_entry(name: str) -> Family:
    """The registry entry of family `name`; an error naming the families otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise RarelearnError(
            f"unknown model family {name!r}; choose one of {', '.join(FAMILIES)}"
        ) from None


def require_family(name: str) -> None:
    """MissingPackageError with the install command when family `name` cannot be imported."""
    missing = missing_packages(name)
    if missing:
        raise MissingPackageError(
            f"committee.backend = {name!r} needs the package(s) {', '.join(missing)}, which "
            f"are not installed; install with: {family_entry(name).install}"
        )


def model_class(name: str) -> Any:
    """The `Potential` subclass of family `name` (imports its module)."""
    require_family(name)
    entry = family_entry(name)
    return getattr(importlib.import_module(entry.module), entry.model_class)


def settings_class(name: str) -> Any:
    """The settings dataclass of family `name` (its module imports no optional package)."""
    entry = family_entry(name)
    return getattr(importlib.import_module(entry.module), entry.settings_class)


def family_of_settings(settings: Any) -> str:
    """The family whose settings dataclass `settings` is an instance of."""
    for name in FAMILIES:
        if type(settings) is settings_class(name):
            return name
    raise RarelearnError(f"{type(settings).__name__} is not the settings of a model family")
