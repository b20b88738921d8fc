"""The ``rarelearn`` command. Every user error ends in one message and exit code 2."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rarelearn.errors import RarelearnError
from rarelearn.study import STUDIES

EXIT_USER_ERROR = 2
#: `rarelearn.config.PRESETS`, repeated so that `--help` does not import torch (tested equal)
PRESETS = ("quick", "long", "paper")


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
        help="pulled atoms: two indices (--pull 0 3), or two comma-separated groups pulled by "
        "their centres of mass (--pull 0,12,13,14 11,27,28,29: two methyl groups); default: the "
        "two ends of the heavy-atom skeleton (an alkane's terminal carbons)",
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
    # Also accepted after the command (`rarelearn run --quiet`); SUPPRESS keeps the top level's.
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument(
        "--quiet", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    commands = parser.add_subparsers(dest="command")

    reference = commands.add_parser(
        "reference",
        parents=[quiet],
        help="reference data: equilibrium MD and the reference steered MD",
    )
    _add_system_arguments(reference, default_chain=6)
    reference.add_argument(
        "--method", default="GFN2-xTB", help="GFN2-xTB, GFN1-xTB, dftb, pyscf or module:Class"
    )
    _add_option_argument(
        reference, "labeler option, repeatable (e.g. --method pyscf --option xc=PBE)"
    )
    _add_smd_arguments(reference)
    reference.add_argument(
        "--equilibrium-frames", type=_positive(int), default=2000, help="frames of 500 K MD"
    )
    reference.add_argument("--relax-steps", type=int, default=2000, help="10 K steps before pull")
    reference.add_argument(
        "--extend",
        type=Path,
        metavar="DIR",
        help="a finished reference (a run folder, a study's shared/ or their reference/): "
        "copy its replicas and pull only the new ones up to --replicas, with its labeler and "
        "settings (give the system it was made from); narrows the Ea interval of "
        "`rarelearn smd --start OUT`",
    )
    reference.add_argument("--out", type=Path, required=True, help="output folder")

    run = commands.add_parser(
        "run",
        parents=[quiet],
        help="the active-learning campaign (default: quick preset, hexane, GFN2-xTB)",
    )
    run.add_argument("--config", type=Path, help="TOML configuration (see examples/)")
    run.add_argument(
        "--preset",
        choices=PRESETS,
        help="start from a preset: quick (default, ~22 min), long (the snap recipe with "
        "150-epoch fits, ~30 min) or paper",
    )
    run.add_argument("--out", type=Path, help="run folder (default: runs/<name>); resumes it")
    run.add_argument("--iterations", type=_positive(int), help="override the iteration count")
    run.add_argument("--seed", type=int, help="override the seed")
    run.add_argument(
        "--final-replicas",
        type=_positive(int),
        metavar="N",
        help="once the loop has ended, pull its last committee from N reference start states, "
        "the reference extended to N (e.g. 64: about +-1.3 kcal/mol); also on a finished run",
    )
    run.add_argument("--no-baselines", action="store_true", help="skip the baseline committees")

    report = commands.add_parser(
        "report", help="rebuild figures and report.html of a run or study folder"
    )
    report.add_argument("run_dir", type=Path)
    report.add_argument(
        "--markdown",
        action="store_true",
        help="print the folder's tables as Markdown (what docs/ embeds) instead",
    )

    export = commands.add_parser(
        "export", help="write a run folder's labeled frames as extended XYZ (with provenance)"
    )
    export.add_argument("run_dir", type=Path)
    export.add_argument("--out", type=Path, required=True, help="the .extxyz file to write")
    export.add_argument(
        "--source",
        action="append",
        choices=("equilibrium", "reference_smd", "active", "augmented"),
        help="only frames of this source (repeatable; default: all)",
    )

    relabel = commands.add_parser(
        "relabel",
        parents=[quiet],
        help="label a run's frames with another method, then train and score a committee on them",
    )
    relabel.add_argument("run_dir", type=Path, help="the campaign run folder (read only)")
    relabel.add_argument(
        "--labeler", required=True, help="GFN2-xTB, GFN1-xTB, dftb, pyscf or module:Class"
    )
    _add_option_argument(
        relabel, "labeler option, repeatable (e.g. --option xc=PBE --option density_fit=true)"
    )
    relabel.add_argument("--out", type=Path, required=True, help="new run folder; resumes it")
    relabel.add_argument(
        "--source",
        action="append",
        choices=("equilibrium", "reference_smd", "active", "augmented"),
        help="only frames of this source (repeatable; default: all)",
    )
    relabel.add_argument(
        "--limit", type=_positive(int), help="at most N frames of each source, evenly spaced"
    )
    relabel.add_argument(
        "--unseen-every",
        type=_positive(int),
        default=1,
        help="every n-th reference-SMD frame (the unseen test set; default: all)",
    )
    relabel.add_argument(
        "--epochs",
        type=_positive(int),
        help="override the epochs of the committee's family (committee.<backend>.epochs)",
    )
    relabel.add_argument(
        "--no-pulls", action="store_true", help="skip the new committee's steered MD"
    )

    validate = commands.add_parser(
        "validate",
        parents=[quiet],
        help="run the reference pulls of a campaign that ran without them; fill in its errors",
    )
    validate.add_argument("run_dir", type=Path, help="the campaign run folder; resumes it")
    validate.add_argument(
        "--replicas",
        type=_positive(int),
        help="pull from the first N start states (default: all the campaign made)",
    )
    validate.add_argument("--labeler", help="reference method (default: the campaign's labeler)")
    _add_option_argument(validate, "option of --labeler, repeatable (e.g. --option xc=PBE)")

    check = commands.add_parser(
        "check", help="read a run folder end to end and say which files are damaged (read-only)"
    )
    check.add_argument("run_dir", type=Path)

    compare = commands.add_parser(
        "compare", help="Ea error and unseen MAE of several run folders side by side"
    )
    compare.add_argument("run_dirs", type=Path, nargs="+")
    compare.add_argument("--labels", nargs="+", help="one label per run folder")
    compare.add_argument("--out", type=Path, default=Path("compare.png"), help="PNG to write")

    study = commands.add_parser(
        "study",
        parents=[quiet],
        help="a study: ensemble, selection, transfer, speeds (the paper's), convergence (seeds)",
    )
    study.add_argument("name", choices=STUDIES)
    study.add_argument(
        "--preset", choices=PRESETS, default="quick", help="quick (default, <= 1 h), long or paper"
    )
    study.add_argument(
        "--config",
        type=Path,
        help="campaign TOML with an optional [study] table (see docs/studies.md)",
    )
    study.add_argument(
        "--model",
        help="transfer and speeds: a trained committee (RUN, RUN/iterations/NNN or its "
        "committee/); default: a campaign of the preset trained in the study folder",
    )
    study.add_argument("--out", type=Path, required=True, help="study folder (resumes it)")

    smd = commands.add_parser("smd", parents=[quiet], help="steered MD with a trained committee")
    smd.add_argument(
        "--model", type=Path, required=True, help="an iteration folder (or its committee/)"
    )
    _add_system_arguments(smd, default_chain=None)
    _add_smd_arguments(smd)
    smd.add_argument("--relax-steps", type=int, default=2000, help="10 K steps before pull")
    smd.add_argument(
        "--start",
        type=Path,
        help="a run folder (or its reference/): pull from every reference replica's start "
        "state with the reference's SMD settings and the run's thermostat seed (--seed: another), "
        "as the campaign does (reproduces its Ea rows); "
        "without it the model relaxes its own start states",
    )
    smd.add_argument(
        "--driver",
        choices=("best", "mean"),
        default="best",
        help="with --start: what drives the pulls, the best member or the committee mean "
        "(as the campaign's committee.driver)",
    )
    smd.add_argument("--out", type=Path, required=True, help="output folder")
    smd.set_defaults(seed=None)  # with --start: the run's own seed; without: 0
    return parser


def _add_option_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--option KEY=VALUE``, repeatable: a labeler option (`labeling.parse_options`)."""
    parser.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help=help_text
    )


def _parse_group(text: str, name: str) -> tuple[int, ...]:
    """Comma-separated plain non-negative integers ("0,12,13"): Python's int() would also read
    "1_0" as 10, " 1", "+1" and other scripts' digits, none of which a user means."""
    parts = text.split(",")
    try:
        if not all(part.isascii() and part.isdigit() for part in parts):
            raise ValueError(text)
        return tuple(int(part) for part in parts)
    except ValueError:  # also a number beyond int()'s digit limit
        raise RarelearnError(
            f"{name}: {text!r} is not an atom index or comma-separated list of them "
            "(plain non-negative integers, e.g. 0 or 0,12,13)"
        ) from None


def resolve_system(chain: int | None, structure: Path | None, pull: Sequence[str] | None):
    """The molecule and pulled atoms from the command line, validated."""
    from rarelearn.molecules import (
        PulledAtoms,
        build_alkane,
        check_structure,
        default_pulled_atoms,
        read_structure,
    )

    if structure is not None:
        atoms = read_structure(structure)
    else:
        atoms = build_alkane(6 if chain is None else chain)
    check_structure(atoms)
    if pull and len(pull) != 2:
        raise RarelearnError(
            f"--pull needs two atom groups A B (e.g. --pull 0 5 or --pull 0,1 5), got {list(pull)}"
        )
    if pull:
        pulled = PulledAtoms(_parse_group(pull[0], "--pull"), _parse_group(pull[1], "--pull"))
    else:
        pulled = default_pulled_atoms(atoms)
    pulled.validate(len(atoms))
    return atoms, pulled


def _refuse_existing(out: Path, marker: str) -> None:
    if (out / marker).exists():
        raise RarelearnError(f"{out / marker} already exists; choose another --out folder")


def _refuse_given(
    args: argparse.Namespace, minimal: list[str], names: Sequence[str], flag: str, why: str
) -> None:
    """One message if any option of ``names`` differs from its default (the parse of the
    ``minimal`` command line) beside ``flag``, which sets it instead: ``why``."""
    defaults = vars(build_parser().parse_args(minimal))
    given = [name for name in names if getattr(args, name) != defaults[name]]
    if given:
        option = "--" + given[0].replace("_", "-")
        raise RarelearnError(f"{option} cannot be combined with {flag}: {why}")


#: `rarelearn reference` options that --extend takes from the reference it extends.
_SET_BY_EXTEND = (
    "method",
    "option",
    "pull_speed",
    "spring_constant",
    "temperature",
    "steps",
    "until_broken",
    "seed",
    "equilibrium_frames",
    "relax_steps",
)


def command_reference(args: argparse.Namespace) -> int:
    if args.extend is not None:
        return _extend_reference(args)
    from rarelearn.dynamics import SMDSettings, Thermostat
    from rarelearn.executors import make_executor
    from rarelearn.labeling import LabelerSpec, parse_options
    from rarelearn.lock import CampaignLock
    from rarelearn.progress import StageProgress
    from rarelearn.reference import EquilibriumSettings, ReferenceSettings, run_reference
    from rarelearn.store import CampaignStore

    atoms, pulled = resolve_system(args.chain, args.structure, args.pull)
    spec = LabelerSpec(args.method, parse_options(args.option))
    spec.check()
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
    lock = CampaignLock(args.out).acquire()
    store = CampaignStore(args.out / "data.db")
    # replicas are independent jobs: side by side on local worker processes
    executor = make_executor("local") if args.replicas > 1 else None
    try:
        with StageProgress(quiet=args.quiet) as progress:
            summary = run_reference(
                atoms, pulled, spec, settings, args.out, store, progress, executor
            )
    finally:
        if executor is not None:
            executor.close()
        lock.release()
    _print_reference(summary, args.out)
    return 0


def _extend_reference(args: argparse.Namespace) -> int:
    import shutil

    from rarelearn.executors import make_executor
    from rarelearn.lock import CampaignLock
    from rarelearn.model_smd import reference_folder
    from rarelearn.progress import StageProgress
    from rarelearn.reference import check_extension, extend_reference

    _refuse_given(
        args,
        ["reference", "--out", "o"],
        _SET_BY_EXTEND,
        "--extend",
        "the labeler and settings come from the reference it extends",
    )
    if not args.extend.exists():
        raise RarelearnError(f"--extend: {args.extend} not found")
    source = reference_folder(args.extend)
    atoms, pulled = resolve_system(args.chain, args.structure, args.pull)
    check_extension(source, atoms, pulled, args.replicas, args.out)
    fresh = not args.out.exists()
    refused = False
    lock = CampaignLock(args.out).acquire()
    executor = make_executor("local")
    try:
        with StageProgress(quiet=args.quiet) as progress:
            summary = extend_reference(
                source, atoms, pulled, args.replicas, args.out, progress, executor
            )
    except RarelearnError:
        # refused before a replica was copied (replica 0's start state did not match)
        refused = fresh and not (args.out / "reference").exists()
        raise
    finally:
        executor.close()
        lock.release()
        if refused:  # leave no folder behind that the user did not have
            shutil.rmtree(args.out, ignore_errors=True)
    _print_reference(summary, args.out)
    return 0


def _print_reference(summary: dict, out: Path) -> None:
    from rich.console import Console

    from rarelearn.pulls import bond_counts_text

    console = Console()
    ea = summary["activation_energy_eV"]
    line = f"Ea = {ea:.3f} eV"
    if summary.get("activation_energy_sem_eV") is not None:
        line = (
            f"Ea = {summary['activation_energy_mean_eV']:.3f} +- "
            f"{summary['activation_energy_sem_eV']:.3f} eV (mean +- standard error of "
            f"{summary['n_replicas']} replicas, standard deviation "
            f"{summary['activation_energy_std_eV']:.3f} eV); replica 0: " + line
        )
    bond = summary["broken_bond"]
    distance = summary["breaking_distance_A"]
    if bond is None:
        line += "; no bond broke within the pull"
    else:
        line += f"; {bond['label']} broke at d = {distance:.2f} A"
    if summary.get("pulled"):
        line += "; pulled: " + " <-> ".join(summary["pulled"])
    if summary.get("broken_bonds") and summary.get("n_replicas", 1) > 1:
        line += f"; bonds broken over the replicas: {bond_counts_text(summary['broken_bonds'])}"
    console.print(line)
    from rarelearn.dynamics.smd import stopped_early

    if stopped_early(summary["stopped_reason"]):
        console.print(
            f"[bold red]warning:[/] the reference SMD stopped early: "
            f"{summary['stopped_reason']}; its frames are kept"
        )
    written = [out / "reference" / "reference.json", out / "data.db"]
    console.print("written: " + ", ".join(str(path) for path in written if path.exists()))


def command_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from rarelearn.campaign import run_campaign
    from rarelearn.config import FinalConfig, load_config, load_resolved, validate

    overrides: dict = {}
    if args.iterations is not None:
        overrides["iterations"] = args.iterations
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.no_baselines:
        overrides["baselines"] = False
    if args.out is not None:
        overrides["out"] = str(args.out)
    config = load_config(args.config, args.preset, overrides)
    run_dir = config.run_dir
    if (run_dir / "config.toml").is_file():
        stored = load_resolved(run_dir)
        asked = args.config or args.preset or overrides.keys() - {"out", "iterations"}
        if asked and _comparable(stored) != _comparable(config):
            raise RarelearnError(
                f"{run_dir} holds a campaign started with another configuration "
                f"(see {run_dir / 'config.toml'}); resume it without settings (or with only "
                "--iterations to extend it, --final-replicas to check it), or use another --out"
            )
        resumed = stored.with_out(str(run_dir))
        if (asked or args.iterations is not None) and config.iterations != stored.iterations:
            resumed = _extend(run_dir, resumed, config.iterations)
        if asked and config.final != stored.final:
            resumed = replace(resumed, final=config.final)
        config = resumed
        print(f"resuming the campaign in {run_dir}", file=sys.stderr)
    if args.final_replicas is not None:
        # checked against the campaign's own settings, stored or new
        config = replace(config, final=FinalConfig(args.final_replicas))
        validate(config)
    summary = run_campaign(config, quiet=args.quiet)
    _print_summary(summary, run_dir)
    return 0


def _comparable(config) -> dict:
    """The settings that must match to resume: all but the folder, the iteration count and
    the final check."""
    values = config.to_dict()
    values.pop("out")
    values.pop("iterations")
    values.pop("final")
    return values


def _extend(run_dir: Path, config, iterations: int):
    """The campaign with more iterations (the paper added three to its 7-member runs); the
    campaign records the new count in config.toml under its lock, and its formerly last
    iteration then selects and labels. Fewer is refused: finished iterations stay."""
    from dataclasses import replace

    done = sorted(
        int(p.parent.name) for p in run_dir.glob("iterations/[0-9][0-9][0-9]/metrics.json")
    )
    if iterations < config.iterations:
        have = f"; {len(done)} of them finished" if done else ""
        raise RarelearnError(
            f"{run_dir} was started for {config.iterations} iterations{have}; --iterations can "
            f"extend a campaign but not shorten it (asked for {iterations})"
        )
    extended = replace(config, iterations=iterations)
    print(
        f"extending the campaign in {run_dir} from {config.iterations} to {iterations} iterations",
        file=sys.stderr,
    )
    return extended


def _print_summary(summary: dict, run_dir: Path) -> None:
    from rich.console import Console

    from rarelearn.pulls import bond_counts_text
    from rarelearn.report.tables import closing_table, final_line, unvalidated_line, validated

    table = closing_table(summary)
    console = Console()
    if not validated(summary):
        console.print(unvalidated_line(summary), markup=False)
    system = summary.get("system")
    if system:
        line = f"{system['formula']} ({system['n_atoms']} atoms), pulled: " + " <-> ".join(
            system["pulled"]
        )
        if summary.get("broken_bonds_ref"):
            line += f"; the reference broke {bond_counts_text(summary['broken_bonds_ref'])} pulls"
        model = summary.get("model")
        if model:
            line += f"; committee of {model['n_members']} {model['backend']} members"
        console.print(line)
    console.print(table)
    reason = summary.get("stop_reason")
    if reason == "converged":
        console.print(f"converged at iteration {summary['converged_iteration']}")
    elif reason == "self-consistent" and summary.get("validated"):
        console.print(f"stopped as self-consistent from iteration {summary['converged_iteration']}")
    elif reason == "self-consistent":
        console.print(
            f"self-consistent from iteration {summary['converged_iteration']} (the stop rule "
            "needs no reference: validate it with `rarelearn validate`)"
        )
    elif reason is not None:
        console.print(f"stopped: {reason} (not converged)")
    resolution = summary.get("resolution") or {}
    final = final_line(summary)
    if final is not None:
        console.print(final, markup=False)
    elif resolution.get("replicas_needed") and not resolution.get("resolvable", True):
        needed = resolution["replicas_needed"]
        console.print(
            f"the 95 % interval is wider than the +-{resolution['tolerance_kcal_mol']:g} "
            f"kcal/mol tolerance; about {needed} replicas per side would resolve it: "
            f"`rarelearn run --out {run_dir} --final-replicas {needed}` checks the last "
            "committee at as many",
            markup=False,
        )
    console.print(f"report: {run_dir / 'report.html'}")


def command_study(args: argparse.Namespace) -> int:
    from rarelearn.study.run import run_study

    result = run_study(args.name, args.out, args.preset, args.config, args.model, args.quiet)
    if "recipes" in result:
        from rarelearn.report.study_figures import convergence_sentences

        for sentence in convergence_sentences(result["recipes"]):
            print(sentence)
    print(
        f"{len(result['rows'])} rows in {args.out / 'study.json'}; report: "
        f"{args.out / 'report.html'}"
    )
    return 0


def command_check(args: argparse.Namespace) -> int:
    from rarelearn.check import run_check
    from rarelearn.runfolder import refuse_relabel_folder

    refuse_relabel_folder(args.run_dir, "check")
    return 0 if run_check(args.run_dir) else EXIT_USER_ERROR


def command_report(args: argparse.Namespace) -> int:
    from rarelearn.runfolder import refuse_relabel_folder

    if not args.run_dir.is_dir():
        raise RarelearnError(f"run folder not found: {args.run_dir}")
    refuse_relabel_folder(args.run_dir, "report")
    if args.markdown:
        from rarelearn.report.tables import folder_markdown

        print(folder_markdown(args.run_dir), end="")
        return 0
    if (args.run_dir / "study.json").is_file():
        from rarelearn.report.study_figures import build_study_report

        print(build_study_report(args.run_dir))
        return 0
    from rarelearn.report import build_report

    print(build_report(args.run_dir))
    return 0


def command_export(args: argparse.Namespace) -> int:
    from rarelearn.export import export_frames

    if not args.run_dir.is_dir():
        raise RarelearnError(f"run folder not found: {args.run_dir}")
    count = export_frames(args.run_dir, args.out, args.source)
    print(f"{count} labeled frames -> {args.out}")
    return 0


def command_relabel(args: argparse.Namespace) -> int:
    from rarelearn.relabel import parse_options, print_summary, run_relabel

    summary = run_relabel(
        args.run_dir,
        args.out,
        args.labeler,
        parse_options(args.option),
        sources=args.source,
        limit=args.limit,
        unseen_every=args.unseen_every,
        epochs=args.epochs,
        pulls=not args.no_pulls,
        quiet=args.quiet,
    )
    print_summary(summary)
    return 0


def command_validate(args: argparse.Namespace) -> int:
    from rarelearn.labeling import LabelerSpec, parse_options
    from rarelearn.validate import validate_run

    if args.option and args.labeler is None:
        raise RarelearnError("--option needs --labeler (the campaign's labeler keeps its own)")
    spec = None
    if args.labeler is not None:
        spec = LabelerSpec(args.labeler, parse_options(args.option))
    summary = validate_run(args.run_dir, args.replicas, spec, quiet=args.quiet)
    _print_summary(summary, args.run_dir)
    from rarelearn.config import load_resolved
    from rarelearn.consistency import converged_iteration

    config = load_resolved(args.run_dir)
    would = converged_iteration(summary["iterations"], config.stop, "reference")
    print(
        "against the reference stop rule: "
        + ("not converged" if would is None else f"converged from iteration {would}")
    )
    return 0


def command_compare(args: argparse.Namespace) -> int:
    from rarelearn.report import compare_runs

    for run_dir in args.run_dirs:
        if not (run_dir / "summary.json").is_file():
            raise RarelearnError(f"{run_dir} is not a run folder (no summary.json)")
    if args.labels and len(args.labels) != len(args.run_dirs):
        raise RarelearnError("--labels needs one label per run folder")
    print(compare_runs(args.run_dirs, args.out, labels=args.labels))
    return 0


#: `rarelearn smd` options that --start takes from the reference run instead.
_SET_BY_START = (
    "chain",
    "structure",
    "pull",
    "pull_speed",
    "spring_constant",
    "temperature",
    "steps",
    "until_broken",
    "replicas",
    "relax_steps",
)


def command_smd(args: argparse.Namespace) -> int:
    from rarelearn.model_smd import run_model_smd, run_model_smd_from_reference

    if not args.model.exists():
        raise RarelearnError(f"model folder not found: {args.model}")
    if args.start is not None:
        _refuse_given(
            args,
            ["smd", "--model", "m", "--out", "o"],
            _SET_BY_START,
            "--start",
            "the molecule, start states and SMD settings come from the reference run",
        )
        result = run_model_smd_from_reference(
            args.model, args.start, args.out, args.quiet, args.driver, args.seed
        )
        _print_model_pulls(result, args.out)
        return 0
    if args.relax_steps < 0:
        raise RarelearnError("--relax-steps must be >= 0")
    atoms, pulled = resolve_system(args.chain, args.structure, args.pull)
    result = run_model_smd(
        model=args.model,
        atoms=atoms,
        pulled=pulled,
        pull_speed=args.pull_speed,
        spring_constant=args.spring_constant,
        temperature=args.temperature,
        steps=args.steps,
        relax_steps=args.relax_steps,
        until_broken=args.until_broken,
        seed=0 if args.seed is None else args.seed,
        replicas=args.replicas,
        out=args.out,
        quiet=args.quiet,
    )
    _print_model_pulls(result, args.out)
    return 0


def _print_model_pulls(result: dict, out: Path) -> None:
    from rarelearn.units import EV_TO_KCAL_MOL

    n = result["n_replicas"]
    distance = result["breaking_distance_A"]
    broke = f"breaks at d = {distance:.2f} A" if distance is not None else "no bond broke"
    line = f"Ea = {result['activation_energy_eV']:.3f} eV, {broke}"
    if n > 1:
        sem = result["activation_energy_sem_eV"]
        line = (
            f"Ea = {result['activation_energy_mean_eV']:.3f} +- {sem:.3f} eV (mean +- standard "
            f"error of {n} pulls; {sum(result['broke'])} broke a bond); replica 0: " + line
        )
    print(line)
    if result.get("ea_error_signed_eV") is not None:
        half_width = result["ea_error_ci95_eV"]
        interval = "" if half_width is None else f" +- {half_width * EV_TO_KCAL_MOL:.2f}"
        print(
            f"error against the reference mean {result['ea_ref_eV']:.3f} eV: "
            f"{result['ea_error_signed_eV'] * EV_TO_KCAL_MOL:+.2f}{interval} kcal/mol (95 %)"
        )
    print(f"written {out / 'smd.json'}")


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "reference": command_reference,
    "run": command_run,
    "report": command_report,
    "check": command_check,
    "export": command_export,
    "compare": command_compare,
    "smd": command_smd,
    "relabel": command_relabel,
    "validate": command_validate,
    "study": command_study,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rarelearn`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    command = args.command or "run"
    if args.command is None:
        given = list(argv) if argv is not None else sys.argv[1:]
        args = parser.parse_args([*given, "run"])
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
