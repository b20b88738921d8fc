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
