#!/usr/bin/env bash
# The kill/resume test N times in one pytest session beside a CPU hog on the other core
# (issue 25's check for a race under load; the shared uninterrupted campaign is run once).
#
#   scripts/stress_resume.sh [N]      default 20; the log is stress_resume.log here
set -uo pipefail
count=${1:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
python -c "while True: pass" &
hog=$!
trap 'kill $hog' EXIT
PYTHONPATH="$root/scripts${PYTHONPATH:+:$PYTHONPATH}" python -m pytest -n 0 -p repeat_plugin \
    --repeat "$count" -q -rA \
    "$root/tests/test_campaign.py::test_resume_after_kill_at_every_stage_gives_the_same_summary" \
    2>&1 | tee stress_resume.log
