"""Test-session set-up: the suite runs on the CPU, also on a machine with a GPU.

Its reproducibility checks (same seed, same bits; a resumed campaign equal to an uninterrupted
one) hold for the CPU's deterministic kernels, and ``device = "auto"`` would otherwise move
every model onto the GPU. ``RARELEARN_TEST_CUDA=1`` lets torch see the GPU, for the CUDA
checks of tests/test_devices.py: ``RARELEARN_TEST_CUDA=1 python -m pytest tests/test_devices.py``.
Set before torch initialises CUDA, so the test processes and their children see no GPU.
"""

import os

if os.environ.get("RARELEARN_TEST_CUDA") != "1":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
