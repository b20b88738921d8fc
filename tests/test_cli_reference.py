"""`rarelearn reference`: bad input is one message and exit 2 with nothing written; a tiny run."""

import json

import pytest

from rarelearn.cli import main


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--chain", "1"], "unknown chain length"),
        (["--chain", "500"], "unknown chain length"),
        (["--structure", "{tmp}/missing.xyz"], "not found"),
        (["--structure", "{tmp}/garbage.xyz"], "cannot read"),
        (["--pull", "0", "99"], "out of range"),
        (["--pull", "0", "x"], "not an atom index"),
        (["--pull", "0", "1_0"], "not an atom index"),
        (["--method", "pyscf", "--option", "grid=3"], "unknown pyscf option(s) ['grid']"),
        (["--option", "foo=1"], "unknown xTB option"),
        (["--option", "accuracy"], "expects key=value"),
        (["--method", "B3LYP-magic"], "unknown method"),
        (["--pull-speed", "0"], "must be positive"),
        (["--pull-speed", "-1"], "must be positive"),
        (["--spring-constant", "0"], "must be positive"),
        (["--spring-constant", "-10"], "must be positive"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, arguments, message):
    (tmp_path / "garbage.xyz").write_text("not\na structure\n")
    out = tmp_path / "out"
    arguments = [a.replace("{tmp}", str(tmp_path)) for a in arguments]
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(["reference", *arguments, "--out", str(out)]))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_tiny_reference_run_writes_the_contract(tmp_path):
    out = tmp_path / "ref"
    code = main(
        [
            "--quiet",
            "reference",
            "--chain",
            "2",
            "--steps",
            "400",
            "--relax-steps",
            "50",
            "--equilibrium-frames",
            "30",
            "--pull-speed",
            "10",
            "--replicas",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    summary = json.loads((out / "reference" / "reference.json").read_text())
    for key in [
        "activation_energy_eV",
        "breaking_distance_A",
        "broken_bond",
        "n_frames",
        "labeler",
        "pull_speed_A_per_ps",
        "spring_constant_eV_per_A2",
        "temperature_K",
        "seed",
        "activation_energy_replicas_eV",
        "activation_energy_mean_eV",
        "activation_energy_std_eV",
    ]:
        assert key in summary, key
    assert summary["n_frames"] == 401 and summary["labeler"] == "GFN2-xTB"
    assert summary["broken_bond"]["atoms"] == [0, 1]
    assert len(summary["activation_energy_replicas_eV"]) == 2
    assert (out / "reference" / "start_state.traj").is_file()
    assert main(["reference", "--chain", "2", "--out", str(out)]) == 2  # never overwrites


TINY = ["--chain", "2", "--steps", "400", "--relax-steps", "50", "--pull-speed", "10"]


def _tiny_reference(out, replicas):
    arguments = [*TINY, "--equilibrium-frames", "30", "--replicas", str(replicas)]
    assert main(["--quiet", "reference", *arguments, "--out", str(out)]) == 0
    return json.loads((out / "reference" / "reference.json").read_text())


def test_an_extended_reference_is_the_fresh_one_with_more_replicas(tmp_path):
    small = tmp_path / "two"
    _tiny_reference(small, 2)
    extended_out = tmp_path / "extended"
    extend = ["--quiet", "reference", "--chain", "2", "--extend", str(small), "--replicas", "3"]
    assert main([*extend, "--out", str(extended_out)]) == 0
    extended = json.loads((extended_out / "reference" / "reference.json").read_text())
    fresh = _tiny_reference(tmp_path / "three", 3)
    # replica r is seeded seed + r whatever the count: the copied two and the new one are the
    # fresh reference's, number for number
    keys = ["activation_energy_replicas_eV", "rupture_force_replicas_eV_A", "broken_bonds"]
    assert all(extended[key] == fresh[key] for key in keys)
    assert len(extended["activation_energy_replicas_eV"]) == 3
    assert extended["extended_from"]["replicas"] == 2
    assert not (extended_out / "data.db").exists()

    # the source is left as it was; a second extension into the same folder is refused
    assert json.loads((small / "reference" / "reference.json").read_text())["replicas"] == 2
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main([*extend, "--out", str(extended_out)]))
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--replicas", "2"], "does not extend the 2 replicas"),
        (["--replicas", "3", "--steps", "500"], "--steps cannot be combined with --extend"),
        (["--replicas", "3", "--method", "GFN1-xTB"], "--method cannot be combined"),
        (["--replicas", "3", "--chain", "3"], "not the one"),
        (["--replicas", "3", "--chain", "2", "--pull", "1", "0"], "are not those of"),
    ],
)
def test_extending_a_reference_refuses_what_would_change_it(tmp_path, capsys, arguments, message):
    small = tmp_path / "two"
    _tiny_reference(small, 2)
    out = tmp_path / "extended"
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(["reference", "--extend", str(small), *arguments, "--out", str(out)]))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_extending_from_another_geometry_is_caught_by_the_remade_start_state(tmp_path, capsys):
    small = tmp_path / "two"
    _tiny_reference(small, 2)
    start = small / "reference" / "start_state.traj"
    from ase.io import read, write

    structure = tmp_path / "moved.xyz"
    moved = read(start)
    moved.positions[0] += 0.05
    write(structure, moved)
    arguments = ["--structure", str(structure), "--pull", "0", "1", "--replicas", "3"]
    out = tmp_path / "extended"
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(["reference", "--extend", str(small), *arguments, "--out", str(out)]))
    assert exit_info.value.code == 2
    assert "start state made again lies" in capsys.readouterr().err
    assert not out.exists()
