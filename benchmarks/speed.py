"""Speed of the ANI committee on hexane (C6H14, 20 atoms), fast paths against TorchANI as is.

Usage: python benchmarks/speed.py --json FILE [--threads 1]

Measured in one run, so ratios are like for like on a busy machine (medians of repeats):
- training: E+F mini-batch steps (batch 64) per member, fast path (cached AEV + Jacobian)
  vs baseline (TorchANI AEVComputer + ANINetworks, double backward through the AEV);
- committee training (3, 5, 7 members) on the whole machine, members side by side in threads,
  against the same members one after another (member-configurations per second), and the fit
  of a campaign iteration (warm feature cache, 40 new frames);
- committee inference for one frame: member energies + driving forces + energy-std UQ, fast
  evaluator (AEV once, stacked members) vs baseline (each member's TorchANI call in turn);
- GFN2-xTB (tblite) energy+forces of the same hexane frames (fastest of 1 and 2 threads);
- one steered-MD step through rarelearn.dynamics.run_smd (ASE integrator) on the campaign's
  calculator, `committee.calculator("best", force_uq=False)` (energy-std UQ every step), and the
  same run_smd step on the campaign's GFN2-xTB labeler (single-threaded tblite, wavefunction
  reuse), so that both sides carry the same integrator and spring overhead;
- every model family (ANI, SchNet, MACE, each with its default settings): training
  configurations per second per member (a whole fit: 96 training + 24 validation frames,
  3 epochs) and committee-of-3 E+F+UQ ms per frame through the family's committee evaluator,
  beside GFN2-xTB in the same run (`train_conf_per_s_<family>`, `committee3_ms_<family>`;
  `--only families` measures just these and xTB);
- steered-MD replicas integrated as one batch (`run_smd_replicas` on
  `committee.replica_force_field`, 3 members, torch on both cores): milliseconds per replica
  step, against one xTB step and against xTB's own best use of the two cores (two
  single-threaded processes side by side: half the wall time per frame).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _ani_data import alkane, xtb_md_frames
from rarelearn.committee import Committee
from rarelearn.potentials import ANIModel, ANISettings, families
from rarelearn.potentials.ani.features import FeatureCache, TrainingFeatures
from rarelearn.potentials.ani.training import batch_loss, fit_self_energies
from rarelearn.threads import available_cores, torch_threads


def _median_time(fn, n: int, repeats: int = 5) -> float:
    """Median over `repeats` of the mean seconds per call of `fn` over `n` calls."""
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - t) / n)
    return statistics.median(out)


def bench_training(frames, threads: int) -> dict[str, float]:
    """Steady-state E+F training throughput per member, fast vs baseline."""
    settings = ANISettings()
    model = ANIModel(["H", "C"], settings, seed=0)
    batch = frames[:64]
    with torch_threads(threads):
        TrainingFeatures(model, frames[64:96], with_jacobian=True)  # warm-up: static tables
        t = time.perf_counter()
        fast = TrainingFeatures(model, batch, with_jacobian=True).groups[0]
    feat_ms = (time.perf_counter() - t) / len(batch) * 1e3
    base = TrainingFeatures(model, batch, with_jacobian=False).groups[0]
    fit_self_energies(model, TrainingFeatures(model, batch, with_jacobian=False), list(range(64)))
    opt = torch.optim.AdamW(model.networks.parameters(), lr=1e-4)
    rows = torch.arange(64)

    def step(grp, is_fast):
        def run():
            loss = batch_loss(model, grp, rows, is_fast)
            opt.zero_grad()
            loss.backward()
            opt.step()

        return run

    with torch_threads(threads):
        t_fast = _median_time(step(fast, True), 10)
        t_base = _median_time(step(base, False), 3)
    # end to end: a real fit (features, SAE, epochs, validation, metrics) of 240 frames
    t = time.perf_counter()
    fit = ANIModel.fit(frames[:240], ANISettings(epochs=10, threads=threads), seed=0)
    e2e = 10 * 192 / (time.perf_counter() - t)
    return {
        "train_conf_per_s": 64 / t_fast,
        "train_conf_per_s_baseline": 64 / t_base,
        "train_speedup": t_base / t_fast,
        "train_conf_per_s_end_to_end_fit": e2e,
        "train_fit_best_epoch": fit.history.best_epoch,
        "jacobian_cache_ms_per_frame": feat_ms,
    }


def bench_committee_training(frames, epochs: int = 10) -> dict[str, float]:
    """Committee training throughput in member-configurations per second (members x epochs x
    training frames / wall seconds) on the whole machine, against members one after another.

    Features come from a warm cache, as in a campaign's later iterations, so the figures are
    the members' training (epochs, validation, final metrics). The end-to-end figure is a
    campaign iteration's fit: the cache holds the previous iteration's 200 frames, the 40 new
    ones are computed in the timed call.
    """
    out: dict[str, float] = {"committee_train_epochs": epochs, "cores": available_cores()}
    settings = ANISettings(epochs=epochs)
    cache = FeatureCache()
    Committee.train(frames, 2, ANISettings(epochs=1), seed=0, cache=cache)

    def rate(n_members: int, threads: int | None, data=frames, warm=cache) -> float:
        t = time.perf_counter()
        committee = Committee.train(data, n_members, settings, seed=0, threads=threads, cache=warm)
        wall = time.perf_counter() - t
        return epochs * sum(len(s["train"]) for s in committee.splits) / wall

    for n_members in (3, 5, 7):
        out[f"committee{n_members}_train_conf_per_s"] = rate(n_members, None)
        out[f"committee{n_members}_train_conf_per_s_sequential"] = rate(n_members, 1)
        out[f"committee{n_members}_train_speedup"] = (
            out[f"committee{n_members}_train_conf_per_s"]
            / out[f"committee{n_members}_train_conf_per_s_sequential"]
        )
    out["committee_train_conf_per_s"] = out["committee3_train_conf_per_s"]
    out["committee_train_conf_per_s_sequential"] = out["committee3_train_conf_per_s_sequential"]
    out["committee_train_speedup"] = out["committee3_train_speedup"]
    previous = FeatureCache()
    Committee.train(frames[:200], 2, ANISettings(epochs=1), seed=0, cache=previous)
    out["committee_train_conf_per_s_end_to_end"] = rate(3, None, frames[:240], previous)
    previous = FeatureCache()
    ANIModel.fit(frames[:200], ANISettings(epochs=1), seed=0, cache=previous)
    t = time.perf_counter()
    fit = ANIModel.fit(frames[:240], settings, seed=0, cache=previous)
    wall = time.perf_counter() - t
    out["train_conf_per_s_end_to_end_fit_warm_cache"] = epochs * 192 / wall
    assert fit.history.epochs_run == epochs
    return out


def _baseline_committee_call(members, numbers, positions) -> tuple[np.ndarray, np.ndarray]:
    """TorchANI as is, member after member: AEVComputer + ANINetworks + autograd forces."""
    energies, forces = [], []
    for m in members:
        e, f = m.energies_forces(numbers, torch.tensor(positions[None]), fast=False)
        energies.append(e[0])
        forces.append(f[0])
    e = np.array(energies)
    return e, forces[0]


def bench_inference(committee7: Committee, frame, threads: int) -> dict[str, float]:
    """One frame, E (all members) + driving F + energy-std UQ, for 1, 3 and 7 members."""
    out: dict[str, float] = {}
    numbers, pos = frame.numbers, frame.positions
    for n in (1, 3, 7):
        sub = Committee(
            members=committee7.members[:n],
            splits=committee7.splits[:n],
            metrics=committee7.metrics[:n],
        )
        ev = sub.evaluator(numbers, threads=threads)
        out[f"committee{n}_ms"] = _median_time(lambda ev=ev: ev(pos), 100) * 1e3
        with torch_threads(threads):
            out[f"committee{n}_ms_baseline"] = (
                _median_time(
                    lambda sub=sub: _baseline_committee_call(sub.members, numbers, pos), 20
                )
                * 1e3
            )
        if n == 7:
            out["committee7_allforces_ms"] = (
                _median_time(lambda ev=ev: ev(pos, forces="all"), 50) * 1e3
            )
    out["committee7_speedup"] = out["committee7_ms_baseline"] / out["committee7_ms"]
    return out


def bench_families(frames, threads: int) -> dict[str, float]:
    """Per family (default settings): a whole fit's conf/s per member, committee-3 ms."""
    out: dict[str, float] = {}
    data, frame = frames[:120], frames[250]
    for name in families.FAMILIES:
        if families.missing_packages(name):
            print(f"  {name}: not installed, skipped", flush=True)
            continue
        model_type = families.model_class(name)
        settings = model_type.settings_class.from_dict({"epochs": 3, "threads": threads})
        started = time.perf_counter()
        model_type.fit(data, settings, seed=0, train_idx=range(96), val_idx=range(96, 120))
        out[f"train_conf_per_s_{name}"] = 3 * 96 / (time.perf_counter() - started)
        committee = Committee.train(data, 3, settings, seed=0, family=name, threads=1)
        evaluator = committee.evaluator(frame.numbers, threads=threads)
        evaluator(frame.positions)
        out[f"committee3_ms_{name}"] = (
            _median_time(lambda ev=evaluator: ev(frame.positions), 30) * 1e3
        )
        print(
            f"  {name}: {out[f'train_conf_per_s_{name}']:.1f} conf/s per member, "
            f"committee of 3 {out[f'committee3_ms_{name}']:.2f} ms per frame",
            flush=True,
        )
    return out


_XTB_CODE = """
import sys, time, statistics, numpy as np
from ase.io import read
from tblite.ase import TBLite
frames = read(sys.argv[1], ':')
atoms = frames[0].copy()
atoms.calc = TBLite(method='GFN2-xTB', verbosity=0)
atoms.get_forces()
runs = []
for r in range(3):
    t = time.perf_counter()
    for f in frames[1:21]:
        atoms.positions = f.positions
        atoms.get_forces()
    runs.append((time.perf_counter() - t) / 20)
print(statistics.median(runs) * 1e3)
"""


def bench_xtb(frames, tmp: Path) -> dict[str, float]:
    """GFN2-xTB energy+forces per frame (child process; fastest of 1 and 2 OpenMP threads)."""
    from ase.io import write

    path = tmp / "xtb_frames.extxyz"
    write(path, frames[:21])
    out = {}
    for n in (1, 2):
        env = dict(os.environ, OMP_NUM_THREADS=str(n), MKL_NUM_THREADS=str(n))
        res = subprocess.run(
            [sys.executable, "-c", _XTB_CODE, str(path)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        out[f"xtb_ms_{n}threads"] = float(res.stdout.strip().splitlines()[-1])
    out["xtb_ms"] = min(out["xtb_ms_1threads"], out["xtb_ms_2threads"])
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    t = time.perf_counter()
    pair = [
        subprocess.Popen(
            [sys.executable, "-c", _XTB_CODE, str(path)], env=env, stdout=subprocess.PIPE
        )
        for _ in range(2)
    ]
    per_process = [float(proc.communicate()[0].decode().split()[-1]) for proc in pair]
    # both processes ran side by side: two frames per per-process frame time
    out["xtb_ms_per_frame_2_processes"] = max(per_process) / 2
    out["xtb_2_processes_wall_s"] = time.perf_counter() - t
    return out


def bench_smd(committee: Committee, frame, n_steps: int, force_uq: bool) -> tuple[float, str]:
    """Milliseconds per steered-MD step on the CommitteeCalculator (UQ every step)."""
    calc = committee.calculator("best", force_uq=force_uq)
    atoms = frame.copy()
    try:
        from rarelearn.dynamics import SMDSettings, StartState, draw_velocities, run_smd
        from rarelearn.molecules import default_pulled_atoms
    except ImportError:
        return _bench_ase_md(atoms, calc, n_steps), "ase.VelocityVerlet"
    draw_velocities(atoms, SMDSettings().thermostat.temperature_K, seed=0)
    start = StartState(atoms=atoms, pulled=default_pulled_atoms(atoms))
    settings = SMDSettings(n_steps=n_steps, relax_steps=0)
    run_smd(start, calc, SMDSettings(n_steps=5, relax_steps=0))
    t = time.perf_counter()
    trace = run_smd(start, calc, settings)
    dt = (time.perf_counter() - t) / max(len(trace.time_fs) - 1, 1)
    assert trace.uq_eV is not None
    return dt * 1e3, "rarelearn.dynamics.run_smd"


def bench_xtb_smd(frame, n_steps: int) -> float:
    """Milliseconds per run_smd step on GFN2-xTB as the campaign's reference SMD runs it."""
    from rarelearn.dynamics import SMDSettings, StartState, draw_velocities, run_smd
    from rarelearn.labeling import make_labeler
    from rarelearn.molecules import default_pulled_atoms

    atoms = frame.copy()
    draw_velocities(atoms, SMDSettings().thermostat.temperature_K, seed=0)
    start = StartState(atoms=atoms, pulled=default_pulled_atoms(atoms))
    calc = make_labeler("GFN2-xTB").build(reuse_wavefunction=True)
    run_smd(start, calc, SMDSettings(n_steps=5, relax_steps=0))
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        trace = run_smd(start, calc, SMDSettings(n_steps=n_steps, relax_steps=0))
        runs.append((time.perf_counter() - t) / max(len(trace.time_fs) - 1, 1))
    return statistics.median(runs) * 1e3


def bench_smd_replicas(committee: Committee, frame, n_steps: int, n_replicas: int) -> float:
    """Milliseconds per replica step of `run_smd_replicas` (all replicas in one force call)."""
    from rarelearn.dynamics import SMDSettings, StartState, draw_velocities, run_smd_replicas
    from rarelearn.molecules import default_pulled_atoms

    starts = []
    for seed in range(n_replicas):
        atoms = frame.copy()
        draw_velocities(atoms, SMDSettings().thermostat.temperature_K, seed=seed)
        starts.append(StartState(atoms=atoms, pulled=default_pulled_atoms(atoms)))
    force_field = committee.replica_force_field(frame.numbers, threads=None)
    run_smd_replicas(starts, force_field, SMDSettings(n_steps=5, relax_steps=0))
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        traces = run_smd_replicas(starts, force_field, SMDSettings(n_steps=n_steps, relax_steps=0))
        steps = sum(tr.n_frames - 1 for tr in traces)
        assert all(tr.uq_eV is not None for tr in traces)
        runs.append((time.perf_counter() - t) / steps)
    return statistics.median(runs) * 1e3


def _bench_ase_md(atoms, calc, n_steps: int) -> float:
    from ase import units
    from ase.md.verlet import VelocityVerlet

    atoms.calc = calc
    dyn = VelocityVerlet(atoms, 0.5 * units.fs)
    dyn.run(5)
    t = time.perf_counter()
    dyn.run(n_steps)
    return (time.perf_counter() - t) / n_steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True, help="where to write the figures")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--smd-steps", type=int, default=300)
    parser.add_argument(
        "--only", choices=["families"], help="measure only the model families and xTB"
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    print("generating GFN2-xTB hexane frames ...", flush=True)
    frames = xtb_md_frames(6, 260, temperature_K=500.0, stride=2, seed=0)
    assert len(frames[0]) == 20 and alkane(6).get_chemical_formula() == "C6H14"
    res: dict[str, float | str] = {"threads": args.threads, "molecule": "C6H14"}
    res.update(bench_xtb(frames, args.json.parent if args.json.parent.exists() else Path(".")))
    if args.only == "families":
        print("model families: a fit and a committee of 3 each ...", flush=True)
        res.update(bench_families(frames, args.threads))
        _print_families(res)
        res["wall_s"] = time.perf_counter() - t0
        args.json.write_text(json.dumps(res, indent=1))
        return
    res.update(bench_training(frames, args.threads))
    print("committee training, side by side and one after another ...", flush=True)
    res.update(bench_committee_training(frames[:240]))
    print("training committee of 7 for the inference and SMD figures ...", flush=True)
    committee7 = Committee.train(
        frames[:240], 7, ANISettings(epochs=30, threads=args.threads), seed=0
    )
    res.update(bench_inference(committee7, frames[250], args.threads))
    committee3 = Committee(
        members=committee7.members[:3], splits=committee7.splits[:3], metrics=committee7.metrics[:3]
    )
    runs = [bench_smd(committee3, frames[250], args.smd_steps, force_uq=False) for _ in range(3)]
    smd3, driver = statistics.median(r[0] for r in runs), runs[0][1]
    xtb_smd = bench_xtb_smd(frames[250], 100)
    smd7, _ = bench_smd(committee7, frames[250], args.smd_steps, force_uq=False)
    smd7_fuq, _ = bench_smd(committee7, frames[250], args.smd_steps, force_uq=True)
    replica_ms = {n: bench_smd_replicas(committee3, frames[250], 100, n) for n in (1, 4, 8, 16)}
    best_batch = min(replica_ms, key=replica_ms.get)
    res.update(
        {
            **{f"smd_replicas{n}_ms_per_replica_step": v for n, v in replica_ms.items()},
            "smd_replicas_best_batch": best_batch,
            "smd_replicas_ms_per_replica_step": replica_ms[best_batch],
            "smd_replicas_speedup_vs_xtb": float(res["xtb_ms"]) / replica_ms[best_batch],
            "smd_replicas_speedup_vs_xtb_2_processes": float(res["xtb_ms_per_frame_2_processes"])
            / replica_ms[best_batch],
        }
    )
    res.update(
        {
            "smd_driver": driver,
            "smd_step_ms": smd3,
            "smd_overhead_ms": smd3 - float(res["committee3_ms"]),
            "xtb_smd_step_ms": xtb_smd,
            "smd_speedup_vs_xtb_smd": xtb_smd / smd3,
            "smd_step_ms_7members": smd7,
            "smd_step_ms_7members_force_uq": smd7_fuq,
            "smd_speedup_vs_xtb": float(res["xtb_ms"]) / smd3,
            "smd_speedup_vs_xtb_7members": float(res["xtb_ms"]) / smd7,
        }
    )
    # last: measured before the ANI figures, SchNet's and MACE's fits left them slower in one
    # back-to-back run against the code before them (committee3_ms +6-16 %, smd_step_ms
    # +7-23 %; within this shared machine's noise, but free to avoid), so ANI comes first
    print("model families: a fit and a committee of 3 each ...", flush=True)
    res.update(bench_families(frames, args.threads))
    res["wall_s"] = time.perf_counter() - t0
    lines = [
        ("train_conf_per_s", "train_conf_per_s_baseline", "E+F training conf/s per member"),
        ("committee1_ms", "committee1_ms_baseline", "1 member E+F+UQ ms"),
        ("committee3_ms", "committee3_ms_baseline", "3 members E+F+UQ ms"),
        ("committee7_ms", "committee7_ms_baseline", "7 members E+F+UQ ms"),
    ]
    for key, base, label in lines:
        val, ref, xtb = float(res[key]), float(res[base]), float(res["xtb_ms"])
        versus_xtb = "" if key.startswith("train") else f"  vs xTB {val / xtb:6.3f}"
        print(f"{label:34s} {val:9.2f}  baseline {ref:9.2f}  ratio {val / ref:6.3f}{versus_xtb}")
    print(
        f"{'E+F training conf/s, end-to-end fit':34s} "
        f"{res['train_conf_per_s_end_to_end_fit']:9.2f}  (one member, features computed)"
    )
    print(
        f"{'E+F training conf/s, iteration fit':34s} "
        f"{res['train_conf_per_s_end_to_end_fit_warm_cache']:9.2f}  "
        "(one member, 40 new frames' features)"
    )
    for n in (3, 5, 7):
        print(
            f"{f'committee of {n}: member-conf/s':34s} "
            f"{res[f'committee{n}_train_conf_per_s']:9.2f}  one after another "
            f"{res[f'committee{n}_train_conf_per_s_sequential']:9.2f}  ratio "
            f"{res[f'committee{n}_train_speedup']:6.3f}  ({res['cores']} cores)"
        )
    print(
        f"{'committee of 3, iteration fit':34s} "
        f"{res['committee_train_conf_per_s_end_to_end']:9.2f}  (40 new frames' features)"
    )
    print(f"{'7 members, all forces (force UQ) ms':34s} {res['committee7_allforces_ms']:9.2f}")
    print(f"{'GFN2-xTB E+F ms':34s} {res['xtb_ms']:9.2f}")
    print(
        f"{'SMD step ms (3 members, UQ)':34s} {res['smd_step_ms']:9.2f}  "
        f"speed-up vs xTB {res['smd_speedup_vs_xtb']:.1f}x ({driver})"
    )
    print(
        f"{'xTB SMD step ms (run_smd)':34s} {res['xtb_smd_step_ms']:9.2f}  "
        f"NNP SMD speed-up vs it {res['smd_speedup_vs_xtb_smd']:.1f}x"
    )
    print(
        f"{'SMD step ms (7 members, UQ)':34s} {res['smd_step_ms_7members']:9.2f}  "
        f"speed-up vs xTB {res['smd_speedup_vs_xtb_7members']:.1f}x"
    )
    for n in (1, 4, 8, 16):
        print(
            f"{f'SMD replicas x{n}, ms per replica step':34s} "
            f"{res[f'smd_replicas{n}_ms_per_replica_step']:9.2f}  speed-up vs xTB "
            f"{float(res['xtb_ms']) / float(res[f'smd_replicas{n}_ms_per_replica_step']):.1f}x"
        )
    print(
        f"{'xTB, 2 processes, ms per frame':34s} {res['xtb_ms_per_frame_2_processes']:9.2f}  "
        f"batched NNP replicas vs it {res['smd_replicas_speedup_vs_xtb_2_processes']:.1f}x"
    )
    _print_families(res)
    print(f"wall {res['wall_s']:.0f} s")
    args.json.write_text(json.dumps(res, indent=1))


def _print_families(res: dict) -> None:
    xtb = float(res["xtb_ms"])
    print(f"{'GFN2-xTB E+F ms (same run)':34s} {xtb:9.2f}")
    for name in families.FAMILIES:
        if f"train_conf_per_s_{name}" not in res:
            continue
        ms = float(res[f"committee3_ms_{name}"])
        print(
            f"{name + ': train conf/s per member':34s} {res[f'train_conf_per_s_{name}']:9.2f}  "
            f"committee of 3 E+F+UQ ms {ms:8.2f}  vs xTB {ms / xtb:6.3f}"
        )


if __name__ == "__main__":
    main()
