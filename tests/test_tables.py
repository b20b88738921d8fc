"""The tables of a campaign and a study: the closing table at 80 columns, Markdown for docs/."""

import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from rarelearn.cli import _print_summary, main
from rarelearn.report.tables import (
    FOREIGN_BOND_MARK,
    TERMINAL_WIDTH,
    closing_table,
    folder_markdown,
    foreign_bonds,
    majority_bond,
)

KCAL = 23.060548  # kcal/mol per eV, written out here so the test does not reuse the code's


def _row(iteration, **overrides):
    row = {
        "iteration": iteration,
        "n_labels": 12345,
        "ea_nnp_eV": 12.345,
        "ea_error_signed_eV": -131.23 / KCAL,
        "ea_error_ci95_eV": 12.34 / KCAL,
        "broke": [True] * 15 + [False],
        "broken_bonds_nnp": {"C10-C11": 10, "C2-C3": 5, "none": 1},
        "mae_unseen_kcal_mol": 123.45,
        "n_selected": 150,
    }
    row.update(overrides)
    return row


def _wide_summary():
    """A summary with the widest cells a campaign gives (labels, errors, bonds, baselines)."""
    return {
        "ea_ref_eV": 11.568,
        "ea_ref_sem_eV": 0.066,
        "ea_ref_replicas_eV": [11.5] * 16,
        "broken_bonds_ref": {"C10-C11": 12, "C0-C1": 4},
        "iterations": [
            _row(0),
            _row(1, broken_bonds_nnp={"C5-C6": 16}),
            _row(2, ea_error_signed_eV=9.1 / KCAL, broken_bonds_nnp={"C0-C1": 16}),
        ],
        "baselines": {
            "equilibrium_only": {**_row(0), "note": "the iteration-0 committee"},
            "smd_only": _row(-1, broke=[False] * 16, broken_bonds_nnp={"none": 16}),
        },
    }


def _render(summary, width=TERMINAL_WIDTH):
    console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(closing_table(summary))
    return console.export_text()


def test_bonds_as_majority_and_foreign_bonds_by_hand():
    assert majority_bond({"S1-S2": 7, "S2-C3": 6, "C0-S1": 3}) == "S1-S2 7/16"
    assert majority_bond({"none": 3}) == "none 3/3"
    assert majority_bond(None) == "-"
    reference = {"C0-C1": 12, "C4-C5": 4}
    assert foreign_bonds({"C0-C1": 9, "none": 7}, reference) == []
    assert foreign_bonds({"C2-C3": 1, "C0-C1": 15}, reference) == ["C2-C3"]
    assert foreign_bonds({"C2-C3": 16}, None) == []


def test_closing_table_fits_80_columns_without_cutting_or_wrapping():
    text = _render(_wide_summary())
    lines = text.splitlines()
    assert "…" not in text
    assert max(len(line.rstrip()) for line in lines) <= TERMINAL_WIDTH
    body = [line.split() for line in lines]
    rows = {cells[0]: cells for cells in body if cells and cells[0] in ("0", "1", "2", "smd_only")}
    assert set(rows) == {"0", "1", "2", "smd_only"}
    # every number whole, on the row's one line
    for name in ("0", "1", "2"):
        assert rows[name][1:4] == ["12345", "12.345", "-131.2" if name != "2" else "+9.1"]
        assert rows[name][4:6] == ["12.3", "15/16"]
        assert rows[name][-2:] == ["123.45", "150"]
    assert rows["0"][6:8] == ["C10-C11", "10/16"]
    # the baseline that is iteration 0 again is not repeated
    assert "equilibrium_only" not in text


def test_closing_table_marks_rows_whose_pulls_break_a_bond_the_reference_never_breaks():
    lines = _render(_wide_summary()).splitlines()
    rows = {line.split()[0]: line.rstrip() for line in lines if line.split()[:1]}
    assert rows["0"].endswith("C10-C11 10/16 " + FOREIGN_BOND_MARK + "  123.45  150")  # C2-C3
    assert "C5-C6 16/16 " + FOREIGN_BOND_MARK in rows["1"]  # every pull: an inner bond
    assert FOREIGN_BOND_MARK not in rows["2"]  # the reference's own bond
    assert FOREIGN_BOND_MARK not in rows["smd_only"]  # no bond broke


def test_run_prints_its_closing_table_within_80_columns(finished_run, capsys):
    summary = json.loads((finished_run / "summary.json").read_text())
    _print_summary(summary, finished_run)
    out = capsys.readouterr().out
    assert "…" not in out
    table = [line for line in out.splitlines() if line.split()[:1] in (["0"], ["1"], ["2"])]
    assert len(table) == len(summary["iterations"]) == 3
    for line, row in zip(table, summary["iterations"], strict=True):
        assert len(line.rstrip()) <= TERMINAL_WIDTH
        assert line.split()[1:3] == [str(row["n_labels"]), f"{row['ea_nnp_eV']:.3f}"]


def test_report_markdown_prints_the_campaign_table(finished_run, capsys):
    assert main(["report", str(finished_run), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out == folder_markdown(finished_run)
    summary = json.loads((finished_run / "summary.json").read_text())
    table = [line for line in out.splitlines() if line.startswith("| ")]
    header, rows = table[0], table[2:]
    assert "error +- 95 % (kcal/mol)" in header
    for line, row in zip(rows, summary["iterations"], strict=False):
        cells = [c.strip() for c in line.strip("|").split("|")]
        error = row["ea_error_signed_eV"] * KCAL
        half = row["ea_error_ci95_eV"] * KCAL
        assert cells[:4] == [
            str(row["iteration"]),
            str(row["n_labels"]),
            f"{row['ea_nnp_eV']:.3f}",
            f"{error:+.1f} +- {half:.1f}",
        ]
    assert len(rows) == len(summary["iterations"]) + 1  # smd_only; equilibrium_only is row 0
    assert f"{summary['ea_ref_eV']:.3f} eV" in out


def test_report_markdown_prints_a_study_table(tmp_path, capsys):
    rows = [
        {"campaign": c, "iteration": i, "n_labels": 500 + 10 * i, "ea_error_eV": e / KCAL,
         "ea_error_ci95_eV": 4.0 / KCAL, "mae_unseen_kcal_mol": 2.0 + i}
        for c, errors in (("3-random", (-135.9, -60.1)), ("7-random", (-138.7, 3.1)))
        for i, e in enumerate(errors)
    ]  # fmt: skip
    (tmp_path / "study.json").write_text(json.dumps({"study": "ensemble", "rows": rows}))
    assert main(["report", str(tmp_path), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| campaign | iteration 0 | iteration 1 | labels at last | unseen MAE at last |" in out
    assert "| 3-random | -135.9 +- 4.0 | -60.1 +- 4.0 | 510 | 3.00 |" in out
    assert "| 7-random | -138.7 +- 4.0 | +3.1 +- 4.0 | 510 | 3.00 |" in out


def test_report_markdown_of_a_pull_study(tmp_path, capsys):
    row = {
        "chain": 6,
        "ea_ref_mean_eV": 7.692,
        "ea_ref_sem_eV": 0.106,
        "ea_nnp_mean_eV": 7.922,
        "ea_nnp_sem_eV": 0.033,
        "ea_error_eV": 5.3 / KCAL,
        "ea_error_ci95_eV": 7.5 / KCAL,
        "breaking_distance_ref_A": 8.6,
        "breaking_distance_nnp_A": 8.66,
        "broken_bonds_ref": {"C0-C1": 4},
        "broken_bonds_nnp": {"C4-C5": 4},
        "agree": True,
    }
    (tmp_path / "study.json").write_text(json.dumps({"study": "transfer", "rows": [row]}))
    assert main(["report", str(tmp_path), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert (
        "| C6 | 7.692 +- 0.106 | 7.922 +- 0.033 | +5.3 +- 7.5 | 8.60 / 8.66 | "
        "C0-C1 4/4 / C4-C5 4/4 | yes |"
    ) in out


def test_report_markdown_refuses_a_folder_without_tables(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--markdown"]) == 2
    assert "neither summary.json" in capsys.readouterr().err


def test_report_rebuilds_a_study_folder_page(tmp_path, capsys):
    rows = [
        {"campaign": f"{n}-random", "n_members": n, "strategy": "random", "iteration": i,
         "n_labels": 500 + 50 * i, "ea_error_eV": e / KCAL, "ea_error_ci95_eV": 4.0 / KCAL,
         "ea_nnp_mean_eV": 7.0, "ea_ref_mean_eV": 7.5, "mae_unseen_kcal_mol": 3.0,
         "n_selected": 20, "wall_s": 1.0}
        for n, errors in ((3, (-135.9, -60.1)), (7, (-138.7, 3.1)))
        for i, e in enumerate(errors)
    ]  # fmt: skip
    (tmp_path / "study.json").write_text(
        json.dumps({"study": "ensemble", "config": {}, "rows": rows})
    )
    assert main(["report", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "report.html")
    assert "7-random" in (tmp_path / "report.html").read_text()
    assert list((tmp_path / "figures").glob("*.png"))


def test_report_markdown_of_a_convergence_study_gives_each_recipe_over_seeds(tmp_path, capsys):
    rows = [
        {"campaign": f"protocol-seed{s}", "recipe": "protocol", "seed": s, "iteration": 0,
         "n_labels": 1000, "ea_error_eV": e / KCAL, "ea_error_ci95_eV": 2.5 / KCAL,
         "mae_unseen_kcal_mol": 2.0, "reference_bond_share": share,
         "broken_bonds_nnp": bonds, "rupture_force_error_eV_A": 0.194,
         "rupture_force_error_ci95_eV_A": 0.027, "ea_at_snap_error_eV": (e - 4) / KCAL,
         "ea_at_snap_error_ci95_eV": 2.6 / KCAL, "work_after_snap_nnp_eV": 0.31,
         "work_after_snap_ref_eV": 0.08}
        for s, e, share, bonds in (
            (0, -8.3, 1.0, {"C4-C5": 9, "C0-C1": 7}),
            (1, 9.1, 0.0, {"C2-C3": 16}),
        )
    ]  # fmt: skip
    recipes = {
        "protocol": {
            "seeds": [0, 1],
            "final_error_kcal_mol": [-8.3, 9.1],
            "mean_error_kcal_mol": 0.4,
            "spread_between_seeds_kcal_mol": 12.3,
            "seeds_meeting_goal": 0,
            "goal_met": False,
        }
    }
    study = {"study": "convergence", "rows": rows, "recipes": recipes}
    (tmp_path / "study.json").write_text(json.dumps(study))
    assert main(["report", str(tmp_path), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| protocol-seed1 | +9.1 +- 2.5 | 1000 | 2.00 |" in out
    assert "| protocol | 0, 1 | -8.3 / 9.1 | +0.4 | 12.3 | 0/2 | no |" in out
    assert (
        "| protocol | 1 | 0 | 1000 | +9.1 +- 2.5 | 0% | C2-C3 16/16 | +0.194 +- 0.027 "
        "| +5.1 +- 2.6 | 0.31 / 0.08 |" in out
    )
    assert "| protocol | 0 | 0 | 1000 | -8.3 +- 2.5 | 100% | C4-C5 9/16 |" in out


def test_study_tables_show_the_0K_check_only_where_it_ran(tmp_path, capsys):
    """A column for the 0 K barrier error in the last-row table and its relation to the 10 K
    error in the self-consistency table, where rows carry it; none where they do not."""
    from rarelearn.config import load_config
    from rarelearn.study.convergence import self_consistency_summary

    def row(seed, iteration, error, cold):
        return {
            "campaign": f"snap-seed{seed}", "recipe": "snap", "seed": seed,
            "iteration": iteration, "n_labels": 1000 + 300 * iteration,
            "ea_error_eV": error / KCAL, "ea_error_ci95_eV": 2.5 / KCAL,
            "ea_change_eV": None, "ea_change_ci95_eV": None,
            "cogef_ea_ref_eV": None if cold is None else 6.93,
            "cogef_ea_error_eV": None if cold is None else cold / KCAL,
        }  # fmt: skip

    for checked in (True, False):
        rows = [
            row(0, 0, -120.6, -109.6 if checked else None),
            row(0, 1, -34.6, -43.0 if checked else None),
            row(0, 2, -2.4, -0.8 if checked else None),
        ]
        study = {
            "study": "convergence",
            "rows": rows,
            "recipes": {},
            "self_consistency": self_consistency_summary(rows, load_config().stop),
        }
        (tmp_path / "study.json").write_text(json.dumps(study))
        assert main(["report", str(tmp_path), "--markdown"]) == 0
        out = capsys.readouterr().out
        assert ("0 K barrier error (kcal/mol)" in out) is checked
        if checked:
            assert "| - / - | -0.8 |" in out  # the last row of seed 0
            assert ", 7.0 (3 iterations) |" in out  # mean |10 K - 0 K|: (11 + 8.4 + 1.6) / 3
        else:
            assert "0 K barrier error vs error" not in out


def test_the_pulls_table_judges_the_whole_interval(tmp_path, load_script):
    """scripts/pulls_table.py: kcal/mol from eV, and an interval is inside the tolerance only
    when |error| + half-width is."""
    pulls_table = load_script("pulls_table")
    result = {
        "n_replicas": 64,
        "ea_error_signed_eV": -2.8 / KCAL,
        "ea_error_ci95_eV": 1.4 / KCAL,
        "ea_error_paired_eV": -2.8 / KCAL,
        "ea_error_paired_ci95_eV": 1.3 / KCAL,
        "ea_at_snap_error_eV": -4.3 / KCAL,
        "ea_at_snap_error_ci95_eV": 1.3 / KCAL,
        "work_after_snap_nnp_eV": 0.14,
        "work_after_snap_ref_eV": 0.08,
        "rupture_force_error_eV_A": 0.027,
        "rupture_force_error_ci95_eV_A": 0.014,
        "reference_bond_share": 1.0,
        "broken_bonds": {"C4-C5": 34, "C0-C1": 30},
    }
    folder = tmp_path / "seed1"
    folder.mkdir()
    (folder / "smd.json").write_text(json.dumps(result))
    cells = [cell.strip() for cell in pulls_table.row(folder, 4.0).strip("|").split("|")]
    assert cells[:5] == ["seed1", "64", "-2.8 +- 1.4", "-2.8 +- 1.3", "no (4.2)"]
    assert cells[5:] == [
        "-4.3 +- 1.3",
        "0.14 / 0.08",
        "+0.027 +- 0.014",
        "100% (C0-C1 30, C4-C5 34)",
    ]
    assert pulls_table.row(folder, 4.25).split("|")[5].strip() == "yes"
    check = tmp_path / "lean-seed1" / "final" / "004"
    assert pulls_table.name(check) == "lean-seed1, iteration 4"


def test_seed_effects_decompose_the_scatter_as_a_least_squares_fit(tmp_path, load_script):
    """scripts/seed_effects.py: its sums of squares are those of a least-squares fit of
    recipe and seed effects (an independent computation), a seed that lands high whatever the
    recipe is found, and a table with a recipe missing a seed is refused."""
    seed_effects = load_script("seed_effects")
    rng = np.random.default_rng(3)
    recipes, seeds = 4, 5
    errors = (
        rng.normal(size=(recipes, 1)) + 3.0 * np.arange(seeds) + rng.normal(size=(recipes, seeds))
    )
    result = seed_effects.two_way(errors)
    design = np.zeros((recipes * seeds, 1 + (recipes - 1) + (seeds - 1)))
    design[:, 0] = 1.0
    for r in range(recipes):
        for s in range(seeds):
            row = design[r * seeds + s]
            if r:
                row[r] = 1.0
            if s:
                row[recipes - 1 + s] = 1.0
    fit, *_ = np.linalg.lstsq(design, errors.ravel(), rcond=None)
    residual = ((errors.ravel() - design @ fit) ** 2).sum()
    assert result["ss_residual"] == pytest.approx(residual, rel=1e-10)
    assert result["ss_total"] == pytest.approx(((errors - errors.mean()) ** 2).sum())
    assert result["df_residual"] == 12 and result["p_seed"] < 1e-6
    low, high = seed_effects.residual_sd_interval(result["ms_residual"], 12)
    assert low < result["ms_residual"] ** 0.5 < high
    # room for 1.96 standard deviations either side: 95 % a seed, 0.95 ** 4 for four
    assert seed_effects.chance_every_seed_inside(1.0, 1.04, 3.0, 4) == pytest.approx(
        0.95**4, abs=1e-4
    )
    assert seed_effects.chance_every_seed_inside(1.0, 4.0, 4.0, 4) == 0.0

    def pull_set(name: str, error_kcal: float) -> Path:
        folder = tmp_path / name / "final" / "004"
        folder.mkdir(parents=True)
        result = {
            "ea_error_signed_eV": error_kcal / KCAL,
            "ea_error_ci95_eV": 0.05,
            "activation_energy_sem_eV": 0.01,
        }
        (folder / "smd.json").write_text(json.dumps(result))
        return folder

    table = {("a", 0): 1.0, ("a", 1): 1.5, ("b", 0): -1.0, ("b", 1): 0.2}
    folders = [pull_set(f"{r}-seed{s}", e) for (r, s), e in table.items()]
    cells = seed_effects.read_cells(folders)
    assert cells["a", 1] == pytest.approx((1.5, 0.05 * KCAL, 0.01 * KCAL))
    assert "| a | +1.0 | +1.5 | +1.3 |" in seed_effects.report(cells)
    with pytest.raises(SystemExit, match="missing"):
        seed_effects.report(seed_effects.read_cells(folders[:3]))
