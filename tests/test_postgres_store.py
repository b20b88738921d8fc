"""The campaign store on a real PostgreSQL server (started by scripts/ci_postgres.sh).

The server runs on loopback with password auth; the password reaches clients only through
PGPASSWORD, never through the URL. Labels are computed on worker processes and written by this
(the coordinating) process. Skips with the reason when no server can be installed or started;
set RARELEARN_REQUIRE_POSTGRES=1 (CI) to turn such a skip into a failure, or
RARELEARN_TEST_PG_URL to use a server you started yourself.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pytest
from ase import Atoms

from rarelearn.errors import RarelearnError
from rarelearn.executors import LocalProcessExecutor, label_parallel
from rarelearn.labeling import attach_label, label_frames, make_labeler
from rarelearn.molecules import build_alkane

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ci_postgres.sh"


def _unavailable(reason: str) -> None:
    if os.environ.get("RARELEARN_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required here (RARELEARN_REQUIRE_POSTGRES=1): {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """URL of a PostgreSQL server (no password in it); PGPASSWORD is set while it runs."""
    for module in ("psycopg2", "ase_db_backends.postgresql"):
        try:
            __import__(module)
        except ImportError:
            _unavailable(f"{module} is not installed (pip install 'rarelearn[postgres]')")
    given = os.environ.get("RARELEARN_TEST_PG_URL")
    if given:
        yield given
        return
    folder = tempfile.mkdtemp(prefix="rarelearn-pg-test.")
    password = secrets.token_hex(12)
    env = {**os.environ, "RARELEARN_PG_PASSWORD": password}
    try:
        started = subprocess.run(
            ["bash", str(SCRIPT), "start", folder],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"cannot run {SCRIPT.name}: {exc}")
    if started.returncode != 0:
        _unavailable(f"{SCRIPT.name} could not start PostgreSQL: {started.stderr.strip()[-800:]}")
    old_password = os.environ.get("PGPASSWORD")
    os.environ["PGPASSWORD"] = password
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        if old_password is None:
            os.environ.pop("PGPASSWORD", None)
        else:
            os.environ["PGPASSWORD"] = old_password
        subprocess.run(["bash", str(SCRIPT), "stop", folder], capture_output=True, timeout=120)


@pytest.fixture
def db_url(server_url: str) -> Iterator[str]:
    """A fresh, empty database on the server for one test, dropped afterwards."""
    import psycopg2

    name = f"rl_test_{secrets.token_hex(6)}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(server_url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def _frames(n: int) -> list[Atoms]:
    rng = np.random.default_rng(7)
    frames = []
    for i in range(n):
        atoms = build_alkane(2 + i % 2)
        atoms.positions += rng.normal(scale=0.04, size=atoms.positions.shape)
        frames.append(atoms)
    bad = build_alkane(2)
    bad.positions[1] = bad.positions[0] + [0.1, 0.0, 0.0]
    frames.append(bad)
    return frames


def test_server_needs_the_password_from_the_environment(server_url: str) -> None:
    import psycopg2

    if os.environ.get("RARELEARN_TEST_PG_URL"):
        pytest.skip("external server: its authentication is not ours to check")
    assert "PGPASSWORD" in os.environ and os.environ["PGPASSWORD"] not in server_url
    saved = os.environ.pop("PGPASSWORD")
    try:
        with pytest.raises(psycopg2.OperationalError, match="password"):
            psycopg2.connect(server_url)
    finally:
        os.environ["PGPASSWORD"] = saved


def test_parallel_labels_round_trip_through_ase_db(db_url: str) -> None:
    """Workers label, the coordinator alone writes; rows read back equal the labels."""
    import ase.db

    spec = make_labeler("GFN2-xTB")
    frames = _frames(6)
    with LocalProcessExecutor(2) as executor:
        results = label_parallel(spec, frames, executor, chunk_size=2)
    assert [r.ok for r in results] == [True] * 6 + [False]

    db = ase.db.connect(db_url)
    for atoms, result in zip(frames, results, strict=True):
        if result.ok:
            db.write(attach_label(atoms, result), source="active", frame=result.index, failed=False)
        else:
            db.write(atoms, source="active", frame=result.index, failed=True, error=result.error)

    reread = ase.db.connect(db_url)
    assert reread.count() == 7
    assert reread.count(failed=True) == 1
    rows = sorted(reread.select(source="active", failed=False), key=lambda row: row.frame)
    assert [row.frame for row in rows] == list(range(6))
    reference = label_frames(spec, frames[:6])
    for row, want in zip(rows, reference, strict=True):
        assert row.energy == pytest.approx(want.energy, abs=1e-9)
        np.testing.assert_allclose(row.forces, want.forces, atol=1e-9)
    (failed,) = list(reread.select(failed=True))
    assert "overlap" in failed.error


def test_campaign_store_on_postgres(db_url: str) -> None:
    store_module = pytest.importorskip("rarelearn.store", reason="rarelearn.store not written yet")
    spec = make_labeler("GFN2-xTB")
    frames = _frames(4)
    results = label_frames(spec, frames)
    provenance = {"source": "equilibrium", "iteration": 0, "labeler": spec.name}

    store = store_module.CampaignStore(db_url)
    ids = store.add_labeled(frames, results, provenance)
    assert len(ids) == len(frames)
    assert len(set(ids)) == len(ids)

    labeled = store_module.CampaignStore(db_url).labeled()
    assert len(labeled) == 4
    energies = sorted(atoms.get_potential_energy() for atoms in labeled)
    assert energies == pytest.approx(sorted(r.energy for r in results[:4]), abs=1e-9)
    assert all(atoms.info["source"] == "equilibrium" for atoms in labeled)
    assert store.count() == 5


def test_campaign_store_takes_the_password_from_the_environment_only(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_module = pytest.importorskip("rarelearn.store", reason="rarelearn.store not written yet")
    if os.environ.get("RARELEARN_TEST_PG_URL"):
        pytest.skip("external server: its authentication is not ours to check")
    password = os.environ["PGPASSWORD"]
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.delenv("RARELEARN_DB_PASSWORD", raising=False)
    with pytest.raises(RarelearnError, match="cannot open the database"):
        store_module.CampaignStore(db_url)
    monkeypatch.setenv("RARELEARN_DB_PASSWORD", password)
    store = store_module.CampaignStore(db_url)
    assert store.count() == 0
    assert password not in store.url


def test_tiny_campaign_on_postgres(db_url: str, tmp_path: Path) -> None:
    """A whole (tiny) campaign with its store on PostgreSQL and labels on 2 worker processes."""
    campaign = pytest.importorskip("rarelearn.campaign", reason="rarelearn.campaign missing")
    from rarelearn.config import from_dict
    from rarelearn.store import CampaignStore

    run_dir = tmp_path / "run"
    config = from_dict(
        {
            "name": "tiny-pg",
            "out": str(run_dir),
            "seed": 1,
            "iterations": 2,
            "baselines": False,
            "system": {"chain": 2},
            "reference": {
                "replicas": 3,
                "equilibrium": {"n_frames": 40, "equilibration_steps": 10},
                "smd": {
                    "n_steps": 300,
                    "relax_steps": 20,
                    "pull_speed_A_per_ps": 10.0,
                    "post_break_steps": 50,
                },
            },
            "committee": {
                "n_members": 2,
                "ani": {
                    "epochs": 2,
                    "layers": {"H": [16], "C": [16]},
                    "default_layers": [16],
                    "batch_size": 16,
                },
            },
            # Select generously so that iteration 0 labels frames through the executor.
            "selection": {
                "n_reference_steps": 50,
                "n_sigma": 0.0,
                "min_energy_kcal_mol": 0.0,
                "max_selected": 6,
                "n_copies": 1,
            },
            "executor": {"kind": "local", "workers": 2, "chunk_size": 4},
            "store": {"url": db_url},
        }
    )
    summary = campaign.run_campaign(config, quiet=True)

    rows = summary["iterations"]
    assert [row["iteration"] for row in rows] == [0, 1]
    store = CampaignStore(db_url, campaign="tiny-pg")
    assert store.count(source="equilibrium") == 40
    assert store.count(source="reference_smd") > 0
    n_active = rows[0]["n_selected"] + rows[0]["n_augmented"]
    assert rows[0]["n_selected"] > 0, rows[0]
    assert store.count(source="active") + store.count(source="augmented") == n_active
    assert rows[1]["n_labels"] == rows[0]["n_labels"] + n_active - rows[0]["n_label_failures"]
    assert not (run_dir / "data.db").exists()
    password = os.environ.get("PGPASSWORD", "")
    for path in run_dir.rglob("*"):
        if path.is_file() and password:
            assert password.encode() not in path.read_bytes(), path


HOLD_STORE = """
import sys, time
from rarelearn.store import CampaignStore
lock = CampaignStore(sys.argv[1], campaign=sys.argv[2]).writer_lock()
print("locked", flush=True)
time.sleep(600)
"""


def test_one_coordinator_per_campaign_in_a_shared_store(db_url: str) -> None:
    """A second coordinator (another process, as on another host) is refused with the holder
    named; another campaign in the same database is not; a killed holder leaves no lock."""
    import signal
    import socket
    import sys
    import time

    from rarelearn.store import CampaignStore, StoreLockedError

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_STORE, db_url, "hexane"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        store = CampaignStore(db_url, campaign="hexane")
        expected = f"rarelearn {socket.gethostname()} pid {holder.pid}"
        with pytest.raises(StoreLockedError, match=expected):
            store.writer_lock()
        other = CampaignStore(db_url, campaign="octane").writer_lock()
        assert other is not None
        other.release()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    deadline = time.monotonic() + 30
    while True:  # the server ends the dead client's session within moments
        try:
            lock = store.writer_lock()
            break
        except StoreLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert lock is not None
    lock.release()
