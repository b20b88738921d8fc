"""Recipe x seed table of final Ea errors, and how much of their scatter is the seed's.

    python scripts/seed_effects.py DIR [DIR ...] [--tolerance 4]

Each DIR is a pull set of one campaign's committee against one shared reference (a campaign's
final check, ``RUN/final/NNN``, or ``rarelearn smd --model ... --start REF --out DIR`` named
after its campaign), the campaign named ``RECIPE-seedN`` as a convergence study names it. Prints
the errors (kcal/mol) with each recipe's and each seed's mean, then a two-way analysis of
variance without replication (additive model: error = mean + recipe + seed + residual): does a
seed land high or low whatever the recipe (the draw of initial weights, splits and noise), or
is the scatter between campaigns their own? Every cell is compared with the same reference,
whose sampling error is a common offset, so what the pulls alone add to a cell's scatter is
its NNP side's standard error (``activation_energy_sem_eV``), printed beside the residual.
Last, what that scatter means for the goal's criterion (every seed's whole 95 % interval inside
+- the tolerance): the chance that a recipe without bias, its seeds spread as pooled here
(normal), meets it in every one of as many seeds, at the cells' mean interval.
Needs every recipe measured at every seed.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
from scipy import stats

from rarelearn.final import checked_run
from rarelearn.units import EV_TO_KCAL_MOL

CAMPAIGN = re.compile(r"^(?P<recipe>.+)-seed(?P<seed>\d+)$")


def campaign_of(folder: Path) -> str:
    """The campaign a pull set belongs to: ``RUN`` of ``RUN/final/NNN``, else the folder."""
    run = checked_run(folder)
    return run.name if run else folder.name


def read_cells(folders: list[Path]) -> dict[tuple[str, int], tuple[float, float, float]]:
    """(recipe, seed) -> (error, its 95 % half-width, NNP side's standard error), kcal/mol."""
    cells = {}
    for folder in folders:
        match = CAMPAIGN.match(campaign_of(folder))
        if match is None:
            raise SystemExit(f"{folder}: not named RECIPE-seedN (nor RUN/final/NNN of one)")
        result = json.loads((folder / "smd.json").read_text())
        key = (match["recipe"], int(match["seed"]))
        if key in cells:
            raise SystemExit(f"{folder}: a second pull set of {key[0]}, seed {key[1]}")
        cells[key] = (
            result["ea_error_signed_eV"] * EV_TO_KCAL_MOL,
            result["ea_error_ci95_eV"] * EV_TO_KCAL_MOL,
            result["activation_energy_sem_eV"] * EV_TO_KCAL_MOL,
        )
    return cells


def two_way(errors: np.ndarray) -> dict[str, float]:
    """Additive two-way ANOVA of a recipes x seeds table, one value a cell."""
    rows, columns = errors.shape
    grand = errors.mean()
    recipe = columns * ((errors.mean(axis=1) - grand) ** 2).sum()
    seed = rows * ((errors.mean(axis=0) - grand) ** 2).sum()
    total = ((errors - grand) ** 2).sum()
    residual = total - recipe - seed
    df_recipe, df_seed = rows - 1, columns - 1
    df_residual = df_recipe * df_seed
    mean_square = residual / df_residual
    return {
        "ss_recipe": recipe,
        "ss_seed": seed,
        "ss_residual": residual,
        "ss_total": total,
        "ms_residual": mean_square,
        "f_recipe": (recipe / df_recipe) / mean_square,
        "f_seed": (seed / df_seed) / mean_square,
        "p_recipe": float(stats.f.sf((recipe / df_recipe) / mean_square, df_recipe, df_residual)),
        "p_seed": float(stats.f.sf((seed / df_seed) / mean_square, df_seed, df_residual)),
        "df_recipe": df_recipe,
        "df_seed": df_seed,
        "df_residual": df_residual,
    }


def residual_sd_interval(mean_square: float, df: int) -> tuple[float, float]:
    """95 % interval of the residual standard deviation (chi-squared with ``df`` degrees)."""
    return (
        float(np.sqrt(df * mean_square / stats.chi2.ppf(0.975, df))),
        float(np.sqrt(df * mean_square / stats.chi2.ppf(0.025, df))),
    )


def chance_every_seed_inside(
    spread: float, half_width: float, tolerance: float, n_seeds: int
) -> float:
    """Chance that ``n_seeds`` errors drawn around 0 with standard deviation ``spread`` each
    have their whole interval (+- ``half_width``) inside +- ``tolerance``."""
    room = tolerance - half_width
    if room <= 0:
        return 0.0
    one = stats.norm.cdf(room / spread) - stats.norm.cdf(-room / spread)
    return float(one**n_seeds)


def report(cells: dict[tuple[str, int], tuple[float, float, float]], tolerance: float = 4.0) -> str:
    recipes = sorted({recipe for recipe, _ in cells})
    seeds = sorted({seed for _, seed in cells})
    missing = [(r, s) for r in recipes for s in seeds if (r, s) not in cells]
    if missing:
        raise SystemExit(f"every recipe at every seed is needed; missing: {missing}")
    errors = np.array([[cells[r, s][0] for s in seeds] for r in recipes])
    half_widths = np.array([[cells[r, s][1] for s in seeds] for r in recipes])
    sems = np.array([[cells[r, s][2] for s in seeds] for r in recipes])
    header = ["recipe", *(f"seed {s}" for s in seeds), "mean"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for recipe, row in zip(recipes, errors, strict=True):
        values = [f"{v:+.1f}" for v in row]
        lines.append(f"| {recipe} | " + " | ".join(values) + f" | {row.mean():+.1f} |")
    means = [f"{v:+.1f}" for v in errors.mean(axis=0)]
    lines.append("| mean | " + " | ".join(means) + f" | {errors.mean():+.1f} |")
    result = two_way(errors)
    low, high = residual_sd_interval(result["ms_residual"], result["df_residual"])
    lines += [
        "",
        f"Two-way analysis of variance (kcal/mol^2): recipes F = {result['f_recipe']:.2f} "
        f"(df {result['df_recipe']}, {result['df_residual']}), p = {result['p_recipe']:.3f}; "
        f"seeds F = {result['f_seed']:.2f} (df {result['df_seed']}, {result['df_residual']}), "
        f"p = {result['p_seed']:.3f}. Residual standard deviation "
        f"{result['ms_residual'] ** 0.5:.1f} kcal/mol (95 %: {low:.1f}-{high:.1f}), against "
        f"the pulls' own standard error of a cell {np.sqrt((sems**2).mean()):.1f} (root mean "
        "square of the NNP sides').",
    ]
    pooled = np.sqrt(
        (result["ss_seed"] + result["ss_residual"]) / (len(recipes) * (len(seeds) - 1))
    )
    chance = chance_every_seed_inside(pooled, half_widths.mean(), tolerance, len(seeds))
    lines.append(
        f"Spread between seeds within a recipe, pooled: {pooled:.1f} kcal/mol. A recipe without "
        f"bias so spread has every one of {len(seeds)} seeds' whole interval (+- "
        f"{half_widths.mean():.1f}) inside +-{tolerance:g} with probability {chance:.2f}."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--tolerance", type=float, default=4.0, help="kcal/mol (default 4)")
    args = parser.parse_args()
    print(report(read_cells(args.folders), args.tolerance))


if __name__ == "__main__":
    main()
