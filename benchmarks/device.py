"""Speed of every model family on the CPU and on a CUDA GPU, measured in one run.

Usage: python benchmarks/device.py --json FILE [--epochs 5]

The campaign's work on hexane (C6H14, 20 atoms, GFN2-xTB-labelled MD frames), per family
(default settings, `device` set to ``cpu`` and, when torch sees a GPU, ``cuda``):

- one member's fit: training configurations per second over a whole fit (240 frames, 192 of
  them trained on, `--epochs` epochs; features, validation and final metrics included);
- a committee of 3 on one frame: every member's energy, the driving forces and the
  energy-std UQ (the steered-MD step's force call), milliseconds per frame;
- the same committee on a batch of replicas (`evaluator.batch`, the path of
  `run_smd_replicas`): milliseconds per replica step for 1, 16, 64 and 256 replicas.

The CPU runs with one torch thread per member (what the campaign's members use) unless
`--cpu-threads` says otherwise. On a machine without a GPU only the CPU rows are printed.
Ratios (`cuda_speedup_*`) compare the two devices in this run only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _ani_data import xtb_md_frames
from rarelearn.committee import Committee
from rarelearn.potentials import families
from rarelearn.threads import torch_threads

REPLICAS = (1, 16, 64, 256)


def _median_ms(fn, n: int, repeats: int = 5) -> float:
    """Median over `repeats` of the mean milliseconds per call of `fn` over `n` calls."""
    fn()
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t) / n)
    return statistics.median(runs) * 1e3


def bench_family(name: str, device: str, frames, epochs: int, threads: int | None) -> dict:
    """Fit throughput, committee-of-3 ms per frame and per replica step on one device."""
    settings_class = families.settings_class(name)
    settings = settings_class.from_dict({"epochs": epochs, "threads": threads, "device": device})
    model_type = families.model_class(name)
    data = frames[:240]
    out: dict[str, float] = {}
    model_type.fit(data[:24], settings_class.from_dict({**settings.to_dict(), "epochs": 1}))
    t = time.perf_counter()
    model_type.fit(data, settings, seed=0, train_idx=range(192), val_idx=range(192, 240))
    out["train_conf_per_s"] = epochs * 192 / (time.perf_counter() - t)
    committee = Committee.train(data[:120], 3, settings, seed=0, family=name, threads=1)
    frame = frames[250]
    evaluator = committee.evaluator(frame.numbers, threads=threads)
    out["committee3_ms"] = _median_ms(lambda: evaluator(frame.positions), 30)
    rng = np.random.default_rng(0)
    for n in REPLICAS:
        batch = frame.positions + rng.normal(0.0, 0.02, size=(n, len(frame), 3))
        with torch_threads(threads):
            ms = _median_ms(lambda b=batch: evaluator.batch(b), 10 if n < 64 else 2, 3)
        out[f"replicas{n}_ms_per_replica_step"] = ms / n
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True, help="where to write the figures")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--cpu-threads", type=int, default=1, help="torch threads on the CPU")
    parser.add_argument(
        "--families", nargs="+", choices=list(families.FAMILIES), default=list(families.FAMILIES)
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    res: dict[str, float | str] = {
        "molecule": "C6H14",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "torch": torch.__version__,
        "cpu_threads": args.cpu_threads,
        "epochs": args.epochs,
    }
    print(f"GPU: {res['gpu']}; generating GFN2-xTB hexane frames ...", flush=True)
    frames = xtb_md_frames(6, 260, temperature_K=500.0, stride=2, seed=0)
    for name in args.families:
        if families.missing_packages(name):
            print(f"{name}: not installed, skipped", flush=True)
            continue
        for device in devices:
            threads = args.cpu_threads if device == "cpu" else 1
            figures = bench_family(name, device, frames, args.epochs, threads)
            res.update({f"{name}_{device}_{k}": v for k, v in figures.items()})
            print(f"{name} on {device}: " + json.dumps(figures), flush=True)
        if "cuda" in devices:
            for key in figures:
                cpu, gpu = float(res[f"{name}_cpu_{key}"]), float(res[f"{name}_cuda_{key}"])
                speedup = gpu / cpu if key.startswith("train") else cpu / gpu
                res[f"{name}_cuda_speedup_{key}"] = speedup
    res["wall_s"] = time.perf_counter() - t0
    _print_table(res, devices)
    args.json.write_text(json.dumps(res, indent=1))


def _print_table(res: dict, devices: list[str]) -> None:
    keys = ["train_conf_per_s", "committee3_ms"] + [
        f"replicas{n}_ms_per_replica_step" for n in REPLICAS
    ]
    print(f"\n{'family / figure':44s}" + "".join(f"{d:>12s}" for d in devices) + "   ratio")
    for name in families.FAMILIES:
        for key in keys:
            if f"{name}_cpu_{key}" not in res:
                continue
            row = "".join(f"{float(res[f'{name}_{d}_{key}']):12.3f}" for d in devices)
            speedup = res.get(f"{name}_cuda_speedup_{key}")
            ratio = f"  {float(speedup):6.2f}x" if speedup is not None else ""
            print(f"{name + ' ' + key:44s}{row}{ratio}")
    print(f"wall {res['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
