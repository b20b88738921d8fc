#!/usr/bin/env bash
# Every GPU check in one go, for a machine with a CUDA GPU: the CUDA tests
# (tests/test_devices.py with RARELEARN_TEST_CUDA=1), then benchmarks/device.py (every family
# on the CPU and the GPU, one run). Logs and figures go to $OUT (default: the current folder).
set -o pipefail
out=${OUT:-.}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
RARELEARN_TEST_CUDA=1 timeout "${TEST_TIMEOUT:-150}" python3 -m pytest -q -p no:cacheprovider \
    tests/test_devices.py 2>&1 | tee "$out/pytest_devices.log"
timeout "${BENCH_TIMEOUT:-300}" python3 benchmarks/device.py --json "$out/device.json" 2>&1 \
    | tee "$out/device.log"
