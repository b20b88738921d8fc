"""A deliberately unreliable ASE calculator for labeling-failure tests (used as module:Class)."""

import numpy as np
from ase.calculators.calculator import Calculator, all_changes


class FlakyCalculator(Calculator):
    """Harmonic pair energy that raises when atom 0 has x > 5 and returns NaN when its y > 5."""

    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        x, y, _ = self.atoms.positions[0]
        if x > 5.0:
            raise RuntimeError("reference program crashed")
        energy = 0.5 * float(np.sum(self.atoms.positions**2))
        if y > 5.0:
            energy = float("nan")
        self.results = {"energy": energy, "forces": -self.atoms.positions.copy()}


def SlowStartXTB(**options):
    """GFN2-xTB whose construction takes RARELEARN_TEST_LABEL_DELAY seconds.

    Labeling builds one calculator per frame and MD one per run, so this slows labeling alone:
    enough for a test to kill a campaign in the middle of a labeling batch.
    """
    import os
    import time

    from rarelearn.labeling import LabelerSpec

    time.sleep(float(os.environ.get("RARELEARN_TEST_LABEL_DELAY", "0")))
    return LabelerSpec("GFN2-xTB", options).build()
