"""Test-session set-up: the suite runs on the CPU, also on a machine with a GPU.

Its reproducibility checks (same seed, same bits; a resumed campaign equal to an uninterrupted
one) hold for the CPU's deterministic kernels, and ``device = "auto"`` would otherwise move
every model onto the GPU. ``RARELEARN_TEST_CUDA=1`` lets torch see the GPU, for the CUDA
checks of tests/test_devices.py: ``RARELEARN_TEST_CUDA=1 python -m pytest tests/test_devices.py``.
Set before torch initialises CUDA, so the test processes and their children see no GPU.

`finished_run` is one uninterrupted tiny campaign shared by the modules that read it or damage
copies of it (test_campaign, test_damaged): run once per session, it is the suite's most
expensive fixture. `load_script` imports a file of scripts/ by name, for the tests of those
measurement scripts.
"""

import importlib.util
import os
from pathlib import Path

import pytest

if os.environ.get("RARELEARN_TEST_CUDA") != "1":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """One uninterrupted tiny campaign (propane, 3 iterations), run as a user would."""
    from test_campaign import _run_cli, _write_config

    folder = tmp_path_factory.mktemp("campaign")
    process = _run_cli(
        ["run", "--config", str(_write_config(folder)), "--out", str(folder / "run")]
    )
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    return folder / "run"


@pytest.fixture(scope="session")
def load_script():
    """``load_script("snap_split")``: scripts/snap_split.py as a module (scripts/ is no package)."""

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
