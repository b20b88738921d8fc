"""The ``rarelearn`` command. Every user error ends in one message and exit code 2."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rarelearn.errors import RarelearnError

EXIT_USER_ERROR = 2


def _positive(kind: type) -> Callable[[str], float | int]:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _add_system_arguments(parser: argparse.ArgumentParser, default_chain: int | None) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--chain", type=int, default=default_chain, help="n-alkane CnH2n+2 with this many carbons"
    )
    group.add_argument("--structure", type=Path, help="any ASE-readable structure file")
    parser.add_argument(
        "--pull",
        nargs=2,
        metavar=("A", "B"),
        help="pulled atoms: two indices, or two comma-separated groups pulled by their centres "
        "(default: the two terminal carbons)",
    )


def _add_smd_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pull-speed", type=_positive(float), default=1.0, help="A/ps")
    parser.add_argument("--spring-constant", type=_positive(float), default=10.0, help="eV/A^2")
    parser.add_argument("--temperature", type=_positive(float), default=10.0, help="K")
    parser.add_argument("--steps", type=_positive(int), default=6500, help="pull steps")
    parser.add_argument(
        "--until-broken",
        action="store_true",
        help="keep pulling past --steps until a bond breaks (long chains), then 1000 steps more",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replicas", type=_positive(int), default=1, help="independent starts")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rarelearn",
        description="Teach neural network potentials rare events: active learning with steered MD.",
    )
    parser.add_argument("--quiet", action="store_true", help="log lines instead of live progress")
    commands = parser.add_subparsers(dest="command")

    reference = commands.add_parser(
        "reference", help="reference data: equilibrium MD and the reference steered MD"
    )
    _add_system_arguments(reference, default_chain=6)
    reference.add_argument(
        "--method", default="GFN2-xTB", help="GFN2-xTB, GFN1-xTB, dftb, pyscf or module:Class"
    )
    _add_smd_arguments(reference)
    reference.add_argument(
        "--equilibrium-frames", type=_positive(int), default=2000, help="frames of 500 K MD"
    )
    reference.add_argument("--relax-steps", type=int, default=2000, help="10 K steps before pull")
    reference.add_argument("--out", type=Path, required=True, help="output folder")
    return parser


def _parse_group(text: str, name: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise RarelearnError(
            f"{name}: {text!r} is not an atom index or comma-separated list"
        ) from None


def resolve_system(chain: int | None, structure: Path | None, pull: Sequence[str] | None):
    """The molecule and pulled atoms from the command line, validated."""
    from rarelearn.molecules import PulledAtoms, build_alkane, default_pulled_atoms, read_structure

    atoms = read_structure(structure) if structure is not None else build_alkane(chain or 6)
    if pull:
        pulled = PulledAtoms(_parse_group(pull[0], "--pull"), _parse_group(pull[1], "--pull"))
    else:
        pulled = default_pulled_atoms(atoms)
    pulled.validate(len(atoms))
    return atoms, pulled


def _refuse_existing(out: Path, marker: str) -> None:
    if (out / marker).exists():
        raise RarelearnError(f"{out / marker} already exists; choose another --out folder")


def command_reference(args: argparse.Namespace) -> int:
    from rarelearn.dynamics import SMDSettings, Thermostat
    from rarelearn.labeling import make_labeler
    from rarelearn.progress import StageProgress
    from rarelearn.reference import EquilibriumSettings, ReferenceSettings, run_reference
    from rarelearn.store import CampaignStore

    atoms, pulled = resolve_system(args.chain, args.structure, args.pull)
    spec = make_labeler(args.method)
    if args.relax_steps < 0:
        raise RarelearnError("--relax-steps must be >= 0")
    settings = ReferenceSettings(
        equilibrium=EquilibriumSettings(n_frames=args.equilibrium_frames),
        smd=SMDSettings(
            spring_constant_eV_per_A2=args.spring_constant,
            pull_speed_A_per_ps=args.pull_speed,
            n_steps=args.steps,
            relax_steps=args.relax_steps,
            thermostat=Thermostat("berendsen", args.temperature),
            until_broken=args.until_broken,
        ),
        replicas=args.replicas,
        seed=args.seed,
    )
    settings.validate()
    _refuse_existing(args.out, "reference/reference.json")
    store = CampaignStore(args.out / "data.db")
    with StageProgress(quiet=args.quiet) as progress:
        summary = run_reference(atoms, pulled, spec, settings, args.out, store, progress)
    _print_reference(summary, args.out)
    return 0


def _print_reference(summary: dict, out: Path) -> None:
    from rich.console import Console

    console = Console()
    ea = summary["activation_energy_eV"]
    line = f"Ea = {ea:.3f} eV"
    if "activation_energy_mean_eV" in summary:
        line += (
            f" (replicas: {summary['activation_energy_mean_eV']:.3f} "
            f"+- {summary['activation_energy_std_eV']:.3f} eV)"
        )
    bond = summary["broken_bond"]
    distance = summary["breaking_distance_A"]
    if bond is None:
        line += "; no bond broke within the pull"
    else:
        line += f"; {bond['label']} broke at d = {distance:.2f} A"
    console.print(line)
    console.print(f"written: {out / 'reference' / 'reference.json'}, {out / 'data.db'}")


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"reference": command_reference}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rarelearn`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    command = args.command or "run"
    if command not in COMMANDS:
        parser.error(f"command {command!r} is not available")
    try:
        return COMMANDS[command](args)
    except RarelearnError as exc:
        print(f"rarelearn: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("rarelearn: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
