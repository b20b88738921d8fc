"""The table of `screen_training.sh`: Ea error +- 95 % (kcal/mol) per campaign and variant."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from rarelearn.units import EV_TO_KCAL_MOL

VARIANTS = {
    "c60": "the campaign's committee",
    "r60": "same frames, another training seed",
    "e150": "same frames, 150 warm epochs",
}


def main() -> None:
    out = Path(sys.argv[1])
    columns = [(tag, driver) for driver in ("best", "mean") for tag in VARIANTS]
    header = [f"{VARIANTS[tag]}, {driver} drives" for tag, driver in columns]
    print("| campaign | " + " | ".join(header) + " |")
    print("| --- " * (len(columns) + 1) + "|")
    errors: dict[tuple[str, str], list[float]] = {column: [] for column in columns}
    for folder in sorted(path for path in out.iterdir() if path.is_dir()):
        cells = []
        for tag, driver in columns:
            path = folder / f"pulls-{tag}-{driver}" / "smd.json"
            if not path.is_file():
                cells.append("-")
                continue
            result = json.loads(path.read_text())
            error = result["ea_error_signed_eV"] * EV_TO_KCAL_MOL
            errors[tag, driver].append(error)
            cells.append(f"{error:+.1f} +- {result['ea_error_ci95_eV'] * EV_TO_KCAL_MOL:.1f}")
        print(f"| {folder.name} | " + " | ".join(cells) + " |")
    summaries = {
        "mean": statistics.mean,
        "mean abs(error)": lambda values: statistics.mean(abs(v) for v in values),
        "spread between seeds (std)": statistics.stdev,
    }
    for name, summary in summaries.items():
        cells = [
            format(summary(errors[column]), "+.1f" if name == "mean" else ".1f")
            if len(errors[column]) > 1
            else "-"
            for column in columns
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
