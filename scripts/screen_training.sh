#!/usr/bin/env bash
# Screen training levers on the frames a campaign's loop selected, per seed (docs/convergence.md,
# "Training draws"): each campaign's last committee is retrained on the same frames with another
# training seed (r60) and with 150 warm epochs (e150), and every committee, the campaign's own
# (c60) included, is pulled as the campaign pulls, driven by its best member and by the
# committee mean. Resumes: a finished pull set is kept. Prints the table at the end.
#
#   scripts/screen_training.sh OUT CAMPAIGN...      e.g. OUT studies/recipes/campaigns/snap-seed*
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1
shift
mkdir -p "$out"
for run in "$@"; do
  name=$(basename "$run")
  last=$(ls -d "$run"/iterations/[0-9][0-9][0-9] | tail -1)
  iteration=$((10#$(basename "$last")))
  for tag in r60 e150; do
    model=$out/$name/$tag
    [ -f "$model/committee/committee.json" ] && continue
    if [ $tag = r60 ]; then lever=(--epochs 60 --redraw 500); else lever=(--epochs 150); fi
    python "$here/retrain.py" "$run" --iteration "$iteration" "${lever[@]}" --out "$model"
  done
  for tag in c60 r60 e150; do
    model=$out/$name/$tag
    [ $tag = c60 ] && model=$last
    for driver in best mean; do
      pulls=$out/$name/pulls-$tag-$driver
      [ -f "$pulls/smd.json" ] && continue
      rarelearn --quiet smd --model "$model" --start "$run" --driver $driver --out "$pulls"
    done
  done
done
python "$here/screen_table.py" "$out"
