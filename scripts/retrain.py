"""Retrain one iteration's committee of a run folder with other training settings.

For measuring training levers on the data a campaign selected: the same frames, splits rule
and seed as iteration N of the campaign, with the ANI settings changed on the command line.
Pull the result as the campaign would with
``rarelearn smd --model OUT --start RUN --out OUT/pulls``.

    python scripts/retrain.py runs/quick --iteration 4 --epochs 60 --lr-schedule cosine \
        --out /tmp/iter4_cosine
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from rarelearn.campaign import TRAINING_SOURCES, open_store, training_frames, training_seed
from rarelearn.committee import Committee
from rarelearn.config import load_resolved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--iteration", type=int, required=True)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--lr-schedule", choices=("plateau", "cosine"))
    parser.add_argument("--force-weight", type=float, help="alpha in the loss")
    parser.add_argument("--warm-start", choices=("yes", "no"), help="default: the campaign's")
    parser.add_argument(
        "--redraw",
        type=int,
        default=0,
        help="added to the campaign's training seed of this iteration (default 0: its own "
        "draw; another gives a fresh draw of the same training, the control for a setting's "
        "effect)",
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    config = load_resolved(args.run_dir).with_out(str(args.run_dir))
    changes = {
        name: value
        for name, value in (
            ("epochs", args.epochs),
            ("lr", args.lr),
            ("lr_schedule", args.lr_schedule),
            ("force_weight", args.force_weight),
        )
        if value is not None
    }
    settings = dataclasses.replace(config.committee.ani, **changes)
    warm = config.committee.warm_start if args.warm_start is None else args.warm_start == "yes"
    store = open_store(config, args.run_dir)
    frames = training_frames(store, TRAINING_SOURCES, max_iteration=args.iteration - 1)
    previous = None
    if args.iteration > 0:
        previous = Committee.load(
            args.run_dir / "iterations" / f"{args.iteration - 1:03d}" / "committee"
        )
    started = time.perf_counter()
    committee = Committee.train(
        frames,
        n_members=config.committee.n_members,
        settings=settings,
        strategy=config.committee.strategy,
        previous=previous,
        seed=training_seed(config.seed, args.iteration) + args.redraw,
        warm_start=warm,
    )
    elapsed = time.perf_counter() - started
    committee.save(args.out / "committee")
    val = [m["val_force_mae_eV_A"] for m in committee.metrics]
    print(
        f"{len(frames)} frames, {settings.epochs} epochs ({settings.lr_schedule}, force weight "
        f"{settings.force_weight}, warm start {warm}), {elapsed:.0f} s; validation force MAE "
        "per member (eV/A): " + ", ".join(f"{v:.4f}" for v in val)
    )


if __name__ == "__main__":
    main()
